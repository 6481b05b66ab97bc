"""Fast Land-Shore-Sea loss (EDRNet eqs. 8-10; docs/models.md#lss): no Python loop over videos or patches.

Every distance of the loss is the norm of a fixed linear combination of a video's segment features ``F``
``[T, D]``, and the combinations depend only on which segments are foreground. So the labels become three
blocks of coefficient rows per video (`lss_coefficients`, row ``r`` belongs to segment ``r``):

* ``H`` (halves): nonzero when a patch (land or sea) of length ``n >= 2`` starts at ``r``: ``+1/h`` on its first
  ``h = n // 2`` segments, ``−1/h`` on its last ``h``, so ``(H F)_r = mean(first) − mean(second)``;
* ``P`` (positives): nonzero when ``r`` is a counted shore: ``e_r − (the other segments of its land)/(n − 1)``,
  so ``(P F)_r = anchor − positive``;
* ``N`` (negatives): for the same rows, ``e_r − (its adjacent sea)/length``, so ``(N F)_r = anchor − negative``;

and ``loss = mean_b [Σ_H w_r ‖(H F)_r‖ + Σ_P w_r · relu(‖(P F)_r‖ − ‖(N F)_r‖ + margin)]`` with
``w = 1/#lands`` on land rows, ``1/#seas`` on sea rows, ``1/#shores`` on shore rows (a video with nothing to
average gets 0, docs/models.md#lss). The ``torch`` backend (`LandShoreSea`) computes all rows of the batch as one
batched product; the Triton kernel of `avel_fast.kernels.lss` builds the same rows inside one program per video.

Gradient of a norm at 0: 0 on every backend, as `torch.linalg.vector_norm`'s backward (the reference) gives.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from avel_fast.backend import select_backend
from avel_fast.constants import BACKGROUND
from avel_fast.reference import lss as reference


def lss_coefficients(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients ``[B, 3T, T]`` (blocks ``H``, ``P``, ``N`` of T rows) and signed row weights ``[B, 3T]``.

    Weights: ``1/#lands`` (``1/#seas``) on the H rows of counted lands (seas), ``1/#shores`` on the P rows of
    counted shores and minus that on their N rows; 0 on unused rows, whose coefficients are 0 too.
    """
    segments = labels.shape[1]
    t = torch.arange(segments, device=labels.device)
    foreground = labels != BACKGROUND
    change = torch.ones_like(foreground)
    change[:, 1:] = foreground[:, 1:] != foreground[:, :-1]
    run = change.cumsum(1)  # [B, T] patch index of each segment
    same = run.unsqueeze(2) == run.unsqueeze(1)  # [B, T, T] same patch
    length = same.sum(2)
    pos = t - torch.where(same, t, segments).amin(2)  # position of each segment in its patch
    half = length // 2

    counted = (pos == 0) & (length >= 2)  # the first segment stands for its patch
    column_pos = pos.unsqueeze(1)
    halves = (same & (column_pos < half.unsqueeze(2))).to(dtype) - (
        same & (column_pos >= (length - half).unsqueeze(2))
    ).to(dtype)
    halves = halves * (counted / half.clamp(min=1)).unsqueeze(2)

    shore = foreground & (length >= 2) & (((pos == 0) & (t > 0)) | ((pos == length - 1) & (t < segments - 1)))
    eye = torch.eye(segments, dtype=dtype, device=labels.device)
    positives = eye - (same & (eye == 0)).to(dtype) / (length - 1).clamp(min=1).unsqueeze(2)
    sea = run.unsqueeze(1) == (run + torch.where(pos == 0, -1, 1)).unsqueeze(2)  # the sea next to each shore
    negatives = eye - sea.to(dtype) / sea.sum(2, keepdim=True).clamp(min=1)
    shore_rows = shore.unsqueeze(2)
    coefficients = torch.cat([halves, positives * shore_rows, negatives * shore_rows], dim=1)

    def averaging(mask: torch.Tensor) -> torch.Tensor:
        return mask / mask.sum(1, keepdim=True).clamp(min=1)

    shore_weights = averaging(shore)
    weights = torch.cat(
        [averaging(counted & foreground) + averaging(counted & ~foreground), shore_weights, -shore_weights], dim=1
    )
    return coefficients, weights.to(dtype)


TABLE_MAX_SEGMENTS = 12


class PatternTable(NamedTuple):
    """`lss_coefficients` of all ``2**T`` foreground patterns (pattern ``Σ_t fg_t 2^t`` at that index), laid
    out as `LandShoreSea` takes them, so a lookup is its operand without a copy: ``coefficients``
    ``[2**T, 3R, T]``, row ``3i + k`` = the i-th used row of block k (H, P, N), and its weight at
    ``weights[:, i, k]`` (zeros past the used rows); R = the most rows any pattern uses in one block (6 for
    T = 10), so the rows of a batch have a shape that does not depend on its labels."""

    coefficients: torch.Tensor
    weights: torch.Tensor  # [2**T, R, 3]
    powers: torch.Tensor  # [T]: 2^t


def by_row(coefficients: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 3T, T]``, ``[B, 3T]`` (blocks H, P, N) -> ``[B, T, 3, T]``, ``[B, T, 3]`` (row i of each block)."""
    batch, rows, segments = coefficients.shape
    return coefficients.view(batch, 3, -1, segments).transpose(1, 2), weights.view(batch, 3, -1).transpose(1, 2)


def most_rows(segments: int) -> int:
    """The most rows a foreground pattern of `segments` segments uses in one block (H: patches of length >= 2;
    P, N: the shores of lands of length >= 2), counted on the host: building `pattern_table` reads nothing back."""
    most = 0
    for code in range(2**segments):
        runs = reference.patches([(code >> t) & 1 == 1 for t in range(segments)])
        halves = sum(stop - start >= 2 for start, stop, _ in runs)
        shores = sum((index > 0) + (index + 1 < len(runs)) for index, (start, stop, land) in enumerate(runs)
                     if land and stop - start >= 2)
        most = max(most, halves, shores)
    return most


@functools.lru_cache(maxsize=8)
def pattern_table(segments: int, device: torch.device, dtype: torch.dtype) -> PatternTable:
    """The `PatternTable` for `segments` segments, built once per device and dtype."""
    powers = 1 << torch.arange(segments, device=device)
    bits = (torch.arange(2**segments, device=device).unsqueeze(1) & powers) != 0
    coefficients, weights = by_row(*lss_coefficients(torch.where(bits, 0, BACKGROUND), dtype))
    order = torch.argsort(weights == 0, dim=1, stable=True)[:, : most_rows(segments)]  # used rows first, per block
    coefficients = coefficients.gather(1, order.unsqueeze(3).expand(-1, -1, -1, segments))
    return PatternTable(coefficients.flatten(1, 2).contiguous(), weights.gather(1, order).contiguous(), powers)


def row_coefficients(labels: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """`lss_coefficients` by row: ``[B, 3R, T]`` (row ``3i + k`` = row i of block k) and ``[B, R, 3]`` (no value
    read back, no shape that depends on the labels).

    Eagerly and for ``T <= 12`` by lookup in `pattern_table` (at most 4096 patterns, R = its row count);
    otherwise computed with R = T, which is also what `torch.compile` traces (no cached table).
    """
    segments = labels.shape[1]
    if segments > TABLE_MAX_SEGMENTS or torch.compiler.is_compiling():
        coefficients, weights = by_row(*lss_coefficients(labels, dtype))
        return coefficients.flatten(1, 2), weights
    table = pattern_table(segments, labels.device, dtype)
    codes = ((labels != BACKGROUND) * table.powers).sum(1)
    return table.coefficients.index_select(0, codes), table.weights.index_select(0, codes)


class LandShoreSea(torch.autograd.Function):
    """Batch-mean LSS from features ``[B, T, D]`` and labels ``[B, T]`` (the ``torch`` backend).

    With the rows' norms ``ν = ‖C F‖`` (`row_coefficients`) and slopes ``s = d loss / dν`` (the row weight,
    times ``relu'`` of its shore term on P and N rows; ``relu'(0) = 0`` as in `F.relu`), the hinge is linear
    where it is active, so ``loss = Σ_r s_r ν_r + margin Σ_{P rows} s_r``. Backward in one product per video:
    ``d loss / dF = Cᵀ diag(s / ν) C F`` (``s / ν := 0`` where ``ν = 0``), a ``[T, T]`` matrix times ``F``.
    """

    @staticmethod
    def forward(ctx, features, labels, margin):
        coefficients, weights = row_coefficients(labels, features.dtype)
        batch = len(weights)
        norms = torch.linalg.vector_norm(torch.bmm(coefficients, features), dim=2).view_as(weights)
        slopes = weights / batch  # of the batch mean
        slopes[..., 1:] *= (norms[..., 1] - norms[..., 2] > -margin).unsqueeze(2)
        ctx.save_for_backward(features, coefficients, torch.where(norms > 0, slopes / norms, 0).view(batch, -1, 1))
        return torch.dot(slopes.flatten(), norms.flatten()).add_(slopes[..., 1].sum(), alpha=margin)

    @staticmethod
    def backward(ctx, grad):
        features, coefficients, scale = ctx.saved_tensors
        scaled = (scale * grad) * coefficients
        return torch.bmm(torch.bmm(coefficients.transpose(1, 2), scaled), features), None, None


def lss_torch(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The batch-mean LSS on the ``torch`` backend (inputs already checked), in fp32 or the features' wider
    dtype with autocast off (a loss; the Triton kernel computes in fp32 too)."""
    features = features.to(torch.promote_types(features.dtype, torch.float32))
    if torch.is_autocast_enabled(features.device.type):
        with torch.autocast(features.device.type, enabled=False):
            return LandShoreSea.apply(features, labels, margin)
    return LandShoreSea.apply(features, labels, margin)


class LSSLoss(reference.LSSLoss):
    """Drop-in `avel_fast.reference.LSSLoss` (same constructor and value), vectorised over the batch.

    Backend (docs/fast-path.md#backends, `avel_fast.backend.select_backend`): the Triton kernel on CUDA, the
    batched PyTorch path on CPU, the reference loop with ``AVEL_FAST_BACKEND=reference``. Shapes and dtypes are
    checked on every call; the label range (reading it is a device sync on CUDA) only on the module's first
    call with ``check_labels=True`` (where the data enters), never with ``check_labels=False`` (labels checked
    when they were loaded). After that first call a step reads nothing back and traces whole under
    `torch.compile`.
    """

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`features` ``[B, T, D]`` (the gated features), `labels` ``[B, T]`` in ``0..28`` -> scalar loss."""
        backend = select_backend(features)
        if backend == "reference":
            return super().forward(features, labels)
        first_check = self.check_labels and not getattr(self, "labels_checked", False)
        reference.check_lss_input(features, labels, values=first_check)
        if first_check:
            self.labels_checked = True
        labels = labels.to(features.device)
        if backend == "triton":
            from avel_fast.kernels.lss import lss_triton

            return lss_triton(features, labels, self.margin)
        return lss_torch(features, labels, self.margin)
