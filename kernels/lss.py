"""Land-Shore-Sea loss on CUDA (EDRNet eqs. 8-10; docs/fast-path.md#kernels): one program per video over its
``[T, D]`` tile.

Each program rebuilds the video's coefficient blocks ``H``, ``P``, ``N`` (``[T, T]``, T padded to a power of
two >= 16; see `avel_fast.nn.lss` for their meaning) from its labels in registers: runs from a cumulative sum
of the FG/BG changes, halves, shores and adjacent seas from comparisons of run indices. The forward streams
the features in column blocks, accumulates the squared norms of ``H F``, ``P F``, ``N F`` (``tl.dot`` in IEEE
fp32) and writes the video's loss and its row norms. The backward rebuilds the blocks, turns the saved norms
into ``c_r = (d loss / d‖row_r‖) / ‖row_r‖`` (0 where the norm is 0, the subgradient the reference's
`torch.linalg.vector_norm` takes; 0 where the shore hinge is inactive, as `F.relu`) and writes
``dF = (Σ_blocks Cᵀ diag(c) C) F`` block by block. All arithmetic in fp32.

Both directions are PyTorch custom operators (``avel_fast::lss_forward`` / ``avel_fast::lss_backward``, with fake
implementations and a registered autograd formula), so `torch.compile` captures the loss whole.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from avel_fast.constants import BACKGROUND


@triton.jit
def lss_rows(labels_ptr, label_stride, segments, BACKGROUND_LABEL: tl.constexpr, BLOCK_T: tl.constexpr):
    """One video's ``H``, ``P``, ``N`` (``[BLOCK_T, BLOCK_T]`` fp32) and the weights of its H and shore rows."""
    r = tl.arange(0, BLOCK_T)
    valid = r < segments
    labels = tl.load(labels_ptr + r * label_stride, mask=valid, other=BACKGROUND_LABEL)
    previous = tl.load(labels_ptr + (r - 1) * label_stride, mask=valid & (r > 0), other=BACKGROUND_LABEL)
    foreground = (labels != BACKGROUND_LABEL) & valid
    change = (r == 0) | (foreground != (previous != BACKGROUND_LABEL))
    run = tl.cumsum(change.to(tl.int32), axis=0)  # patch index of each segment

    same = (run[:, None] == run[None, :]) & valid[:, None] & valid[None, :]
    length = tl.sum(same.to(tl.int32), axis=1)
    pos = r - tl.min(tl.where(same, r[None, :], BLOCK_T), axis=1)  # position in its patch
    half = length // 2
    counted = (pos == 0) & (length >= 2) & valid
    first = same & (pos[None, :] < half[:, None])
    second = same & (pos[None, :] >= (length - half)[:, None])
    inverse_half = 1.0 / tl.maximum(half, 1).to(tl.float32)
    halves = (first.to(tl.float32) - second.to(tl.float32)) * inverse_half[:, None]
    halves = tl.where(counted[:, None], halves, 0.0)

    shore = foreground & (length >= 2) & (((pos == 0) & (r > 0)) | ((pos == length - 1) & (r < segments - 1)))
    eye = (r[:, None] == r[None, :]).to(tl.float32)
    others = same & (r[:, None] != r[None, :])
    positives = eye - others.to(tl.float32) / tl.maximum(length - 1, 1).to(tl.float32)[:, None]
    sea = (run[None, :] == (run + tl.where(pos == 0, -1, 1))[:, None]) & valid[None, :]  # sea next to each shore
    negatives = eye - sea.to(tl.float32) / tl.maximum(tl.sum(sea.to(tl.int32), axis=1), 1).to(tl.float32)[:, None]
    positives = tl.where(shore[:, None], positives, 0.0)
    negatives = tl.where(shore[:, None], negatives, 0.0)

    lands = tl.sum((counted & foreground).to(tl.float32), axis=0)
    seas = tl.sum((counted & ~foreground).to(tl.float32), axis=0)
    shores = tl.sum(shore.to(tl.float32), axis=0)
    half_weights = tl.where(counted & foreground, 1.0 / tl.maximum(lands, 1.0), 0.0)
    half_weights = tl.where(counted & ~foreground, 1.0 / tl.maximum(seas, 1.0), half_weights)
    shore_weights = tl.where(shore, 1.0 / tl.maximum(shores, 1.0), 0.0)
    return halves, positives, negatives, half_weights, shore_weights


@triton.jit
def feature_block(features_ptr, feature_stride_t, feature_stride_d, segments, dim, start,
                  BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """Columns ``start : start + BLOCK_D`` of one video's features as fp32 ``[BLOCK_T, BLOCK_D]`` (0 padded)."""
    r = tl.arange(0, BLOCK_T)
    cols = start + tl.arange(0, BLOCK_D)
    mask = (r[:, None] < segments) & (cols[None, :] < dim)
    offsets = r[:, None] * feature_stride_t + cols[None, :] * feature_stride_d
    return tl.load(features_ptr + offsets, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def lss_forward_kernel(
    features_ptr, labels_ptr, losses_ptr, norms_ptr, segments, dim, margin,
    feature_stride_b, feature_stride_t, feature_stride_d, label_stride_b, label_stride_t,
    BACKGROUND_LABEL: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One program per video: its loss ``L_land + L_sea + L_shore`` and its row norms ``[3, BLOCK_T]``."""
    video = tl.program_id(0).to(tl.int64)
    halves, positives, negatives, half_weights, shore_weights = lss_rows(
        labels_ptr + video * label_stride_b, label_stride_t, segments, BACKGROUND_LABEL, BLOCK_T
    )
    features_ptr += video * feature_stride_b
    half_squares = tl.zeros([BLOCK_T], dtype=tl.float32)
    positive_squares = tl.zeros([BLOCK_T], dtype=tl.float32)
    negative_squares = tl.zeros([BLOCK_T], dtype=tl.float32)
    for start in range(0, dim, BLOCK_D):
        block = feature_block(features_ptr, feature_stride_t, feature_stride_d, segments, dim, start,
                              BLOCK_T, BLOCK_D)
        difference = tl.dot(halves, block, input_precision="ieee")
        half_squares += tl.sum(difference * difference, axis=1)
        difference = tl.dot(positives, block, input_precision="ieee")
        positive_squares += tl.sum(difference * difference, axis=1)
        difference = tl.dot(negatives, block, input_precision="ieee")
        negative_squares += tl.sum(difference * difference, axis=1)
    half_norms, positive_norms, negative_norms = tl.sqrt(half_squares), tl.sqrt(positive_squares), tl.sqrt(
        negative_squares)
    hinge = tl.maximum(positive_norms - negative_norms + margin, 0.0)
    loss = tl.sum(half_weights * half_norms, axis=0) + tl.sum(shore_weights * hinge, axis=0)
    tl.store(losses_ptr + video, loss)
    r = tl.arange(0, BLOCK_T)
    norms_ptr += video * 3 * BLOCK_T + r
    tl.store(norms_ptr, half_norms)
    tl.store(norms_ptr + BLOCK_T, positive_norms)
    tl.store(norms_ptr + 2 * BLOCK_T, negative_norms)


@triton.jit
def scaled_gram(rows, slopes, norms):
    """``rowsᵀ diag(slopes / norms) rows`` with ``slopes / 0 := 0``."""
    scale = tl.where(norms > 0, slopes / tl.where(norms > 0, norms, 1.0), 0.0)
    return tl.dot(tl.trans(rows), rows * scale[:, None], input_precision="ieee")


@triton.jit
def lss_backward_kernel(
    features_ptr, labels_ptr, norms_ptr, grad_losses_ptr, grad_features_ptr, segments, dim, margin,
    feature_stride_b, feature_stride_t, feature_stride_d, label_stride_b, label_stride_t,
    BACKGROUND_LABEL: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One program per video: ``dF = (Σ Cᵀ diag(c) C) F`` into the contiguous ``[B, T, D]`` gradient."""
    video = tl.program_id(0).to(tl.int64)
    halves, positives, negatives, half_weights, shore_weights = lss_rows(
        labels_ptr + video * label_stride_b, label_stride_t, segments, BACKGROUND_LABEL, BLOCK_T
    )
    r = tl.arange(0, BLOCK_T)
    norms_ptr += video * 3 * BLOCK_T + r
    half_norms = tl.load(norms_ptr)
    positive_norms = tl.load(norms_ptr + BLOCK_T)
    negative_norms = tl.load(norms_ptr + 2 * BLOCK_T)
    grad = tl.load(grad_losses_ptr + video).to(tl.float32)
    shore_slopes = tl.where(positive_norms - negative_norms + margin > 0, grad * shore_weights, 0.0)
    gram = scaled_gram(halves, grad * half_weights, half_norms)
    gram += scaled_gram(positives, shore_slopes, positive_norms)
    gram += scaled_gram(negatives, -shore_slopes, negative_norms)

    features_ptr += video * feature_stride_b
    grad_features_ptr += video * segments * dim
    for start in range(0, dim, BLOCK_D):
        block = feature_block(features_ptr, feature_stride_t, feature_stride_d, segments, dim, start,
                              BLOCK_T, BLOCK_D)
        cols = start + tl.arange(0, BLOCK_D)
        mask = (r[:, None] < segments) & (cols[None, :] < dim)
        grad_block = tl.dot(gram, block, input_precision="ieee")
        tl.store(grad_features_ptr + r[:, None] * dim + cols[None, :],
                 grad_block.to(grad_features_ptr.dtype.element_ty), mask=mask)


def blocks(segments: int, dim: int) -> dict[str, int]:
    """Tile sizes: T padded to a power of two >= 16 (``tl.dot``), 16..64 feature columns per step."""
    return {
        "BLOCK_T": max(16, triton.next_power_of_2(segments)),
        "BLOCK_D": min(64, max(16, triton.next_power_of_2(dim))),
    }


@torch.library.custom_op("avel_fast::lss_forward", mutates_args=())
def lss_forward(features: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video LSS ``[B]`` (fp32) of features ``[B, T, D]`` and labels ``[B, T]``, and the row norms
    ``[B, 3, BLOCK_T]`` its backward reads: `lss_forward_kernel`, one program per video, grid ``(B,)``."""
    batch, segments, dim = features.shape
    sizes = blocks(segments, dim)
    losses = features.new_empty(batch, dtype=torch.float32)
    norms = features.new_empty(batch, 3, sizes["BLOCK_T"], dtype=torch.float32)
    lss_forward_kernel[(batch,)](
        features, labels, losses, norms, segments, dim, margin, *features.stride(), *labels.stride(),
        BACKGROUND_LABEL=BACKGROUND, **sizes,
    )
    return losses, norms


@lss_forward.register_fake
def _(features, labels, margin):
    batch, segments, dim = features.shape
    return (features.new_empty(batch, dtype=torch.float32),
            features.new_empty(batch, 3, blocks(segments, dim)["BLOCK_T"], dtype=torch.float32))


@torch.library.custom_op("avel_fast::lss_backward", mutates_args=())
def lss_backward(grad_losses: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor,
                 margin: float) -> torch.Tensor:
    """The gradient ``[B, T, D]`` (contiguous, the dtype of `features`) of ``Σ_b grad_losses[b] · loss_b``:
    `lss_backward_kernel`, one program per video, grid ``(B,)``."""
    batch, segments, dim = features.shape
    grad_features = torch.empty(features.shape, device=features.device, dtype=features.dtype)
    lss_backward_kernel[(batch,)](
        features, labels, norms, grad_losses.contiguous(), grad_features, segments, dim, margin,
        *features.stride(), *labels.stride(), BACKGROUND_LABEL=BACKGROUND, **blocks(segments, dim),
    )
    return grad_features


@lss_backward.register_fake
def _(grad_losses, features, labels, norms, margin):
    return torch.empty(features.shape, device=features.device, dtype=features.dtype)


def _setup_context(ctx, inputs, output):
    features, labels, margin = inputs
    ctx.save_for_backward(features, labels, output[1])
    ctx.margin = margin
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_losses, _):
    features, labels, norms = ctx.saved_tensors
    return torch.ops.avel_fast.lss_backward(grad_losses, features, labels, norms, ctx.margin), None, None


torch.library.register_autograd("avel_fast::lss_forward", _backward, setup_context=_setup_context)


def lss_triton(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The batch-mean LSS on the ``triton`` backend (inputs already checked), in fp32 or the features' wider dtype."""
    loss = torch.ops.avel_fast.lss_forward(features, labels, float(margin))[0].mean()
    return loss.to(torch.promote_types(features.dtype, torch.float32))
