"""TemporalConv + Swish on CUDA (DPNet eqs. 5-6; docs/fast-path.md#kernels): one batched GEMM and a fused epilogue.

Forward: the k taps of both modalities' convolutions in one `torch.bmm` (cuBLAS), ``Y_m = x_m [W_m,0; …]ᵀ``
(`avel_fast.conv_gemm.modality_operands`), then one kernel sums the shifted taps, adds the bias, applies SiLU
and writes the output straight into the ``[B, 2, T, O]`` layout, with the pre-activation ``z`` for backward.
Backward: one kernel computes ``dz = dout ⊙ SiLU'(z)`` and scatters it into the taps' gradient
``dY[s, j] = dz[s − j + p]`` (zeros where the source segment is outside the video), then the GEMMs of the
``torch`` path (`avel_fast.conv_gemm.modality_gemm_grads`), on operands rebuilt from the forward's inputs.
Both directions are PyTorch custom operators (`avel_fast::temporal_conv_forward` / `_backward`, with fake
implementations and registered autograd), so `torch.compile` captures them without a graph break.

`tap_sum` / `tap_spread` are shared with `avel_fast.kernels.gated_fusion`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from avel_fast.conv_gemm import modality_gemm_grads, modality_operands

MAX_BLOCK = 1024


def column_block(dim: int) -> int:
    """Columns per program: the feature width rounded up to a power of two, at most `MAX_BLOCK`."""
    return min(MAX_BLOCK, triton.next_power_of_2(dim))


@triton.jit
def tap_sum(taps_ptr, row, t, cols, mask, segments, dim, KERNEL_SIZE: tl.constexpr, BLOCK: tl.constexpr):
    """``Σ_j taps[row + j − p, j, cols]`` (fp32) over the taps whose source segment ``t + j − p`` is in the video.

    `taps_ptr`: contiguous ``[rows, KERNEL_SIZE, dim]``, consecutive rows = consecutive segments of a video.
    Row conditions enter the masks through `tl.where` (Triton's interpreter rejects ``block_mask & scalar``).
    """
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for j in tl.static_range(KERNEL_SIZE):
        shift = j - KERNEL_SIZE // 2
        inside = (t + shift >= 0) & (t + shift < segments)
        offsets = (row + shift) * (KERNEL_SIZE * dim) + j * dim + cols
        acc += tl.load(taps_ptr + offsets, mask=tl.where(inside, mask, False), other=0.0).to(tl.float32)
    return acc


@triton.jit
def tap_spread(grad_taps_ptr, row, t, cols, mask, value, segments, dim, KERNEL_SIZE: tl.constexpr):
    """The adjoint of `tap_sum` for one row: ``grad_taps[row + j − p, j] = value`` where that segment is in the
    video, and ``grad_taps[row, j] = 0`` where its source ``t − j + p`` is not (so every entry is written once)."""
    for j in tl.static_range(KERNEL_SIZE):
        shift = j - KERNEL_SIZE // 2
        target_inside = (t + shift >= 0) & (t + shift < segments)
        target = (row + shift) * (KERNEL_SIZE * dim) + j * dim + cols
        tl.store(grad_taps_ptr + target, value, mask=tl.where(target_inside, mask, False))
        source_outside = (t - shift < 0) | (t - shift >= segments)
        tl.store(grad_taps_ptr + row * (KERNEL_SIZE * dim) + j * dim + cols, tl.zeros_like(value),
                 mask=tl.where(source_outside, mask, False))


@triton.jit
def _program_row(rows_per_modality, segments, dim, BLOCK: tl.constexpr):
    """This program's modality-major row of ``Y``, its column block and mask, segment, modality and video, and
    the offsets of that row's columns in the ``[B, 2, T, O]`` layout."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < dim
    t = row % segments
    modality = row // rows_per_modality
    video = (row % rows_per_modality) // segments
    offsets = ((video * 2 + modality) * segments + t) * dim + cols
    return row, cols, mask, t, modality, offsets


@triton.jit
def temporal_conv_swish_forward_kernel(
    taps_ptr, bias_ptr, out_ptr, pre_ptr, rows_per_modality, segments, dim,
    KERNEL_SIZE: tl.constexpr, BLOCK: tl.constexpr,
):
    """One program per (modality-major row of ``Y``, column block): ``z = b_m + Σ taps``, ``out = z σ(z)``."""
    row, cols, mask, t, modality, offsets = _program_row(rows_per_modality, segments, dim, BLOCK)
    pre = tap_sum(taps_ptr, row, t, cols, mask, segments, dim, KERNEL_SIZE, BLOCK)
    pre += tl.load(bias_ptr + modality * dim + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(pre_ptr + offsets, pre.to(pre_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + offsets, (pre * tl.sigmoid(pre)).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def temporal_conv_swish_backward_kernel(
    grad_ptr, pre_ptr, grad_taps_ptr, rows_per_modality, segments, dim,
    KERNEL_SIZE: tl.constexpr, BLOCK: tl.constexpr,
):
    """``dz = dout ⊙ σ(z)(1 + z(1 − σ(z)))`` for one row and column block, spread into ``dY``."""
    row, cols, mask, t, _, offsets = _program_row(rows_per_modality, segments, dim, BLOCK)
    pre = tl.load(pre_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    grad = tl.load(grad_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    gate = tl.sigmoid(pre)
    grad_pre = grad * gate * (1.0 + pre * (1.0 - gate))
    tap_spread(grad_taps_ptr, row, t, cols, mask, grad_pre.to(grad_taps_ptr.dtype.element_ty), segments, dim,
               KERNEL_SIZE)


@torch.library.custom_op("avel_fast::temporal_conv_forward", mutates_args=())
def temporal_conv_forward(
    x: torch.Tensor, audio_weight: torch.Tensor, visual_weight: torch.Tensor, audio_bias: torch.Tensor,
    visual_bias: torch.Tensor, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Swish(z), z)`` ``[B, 2, T, O]`` of both modalities' ``z = Conv1d_k(x_m)`` on ``[B, 2, T, I]``, the GEMM
    in `dtype`."""
    rows, taps_weight, biases = modality_operands(x, (audio_weight, visual_weight, audio_bias, visual_bias), dtype)
    batch, _, segments, _ = x.shape
    out_dim, kernel_size = audio_weight.shape[0], audio_weight.shape[-1]
    taps = torch.bmm(rows, taps_weight.transpose(1, 2))  # [2, B·T, k·O]
    out = taps.new_empty(batch, 2, segments, out_dim)
    pre = torch.empty_like(out)
    block = column_block(out_dim)
    grid = (2 * batch * segments, triton.cdiv(out_dim, block))
    temporal_conv_swish_forward_kernel[grid](
        taps, biases, out, pre, batch * segments, segments, out_dim, KERNEL_SIZE=kernel_size, BLOCK=block
    )
    return out, pre


@temporal_conv_forward.register_fake
def _(x, audio_weight, visual_weight, audio_bias, visual_bias, dtype):
    out = x.new_empty(*x.shape[:3], audio_weight.shape[0], dtype=dtype)
    return out, torch.empty_like(out)


@torch.library.custom_op("avel_fast::temporal_conv_backward", mutates_args=())
def temporal_conv_backward(
    grad: torch.Tensor, x: torch.Tensor, audio_weight: torch.Tensor, visual_weight: torch.Tensor,
    audio_bias: torch.Tensor, visual_bias: torch.Tensor, pre: torch.Tensor, grad_x: bool, grad_weights: bool,
) -> list[torch.Tensor]:
    """The requested gradients, in order: ``dx`` (with `grad_x`), then (with `grad_weights`) the audio and visual
    weights' stacked ``[2, O, I, k]`` and biases' ``[2, O]``; the GEMM operands are rebuilt from the forward's
    inputs."""
    weights = (audio_weight, visual_weight, audio_bias, visual_bias)
    rows, taps_weight, _ = modality_operands(x, weights, pre.dtype)
    batch, _, segments, out_dim = pre.shape
    kernel_size = audio_weight.shape[-1]
    grad_taps = pre.new_empty(2, batch, segments, kernel_size, out_dim)
    block = column_block(out_dim)
    grid = (2 * batch * segments, triton.cdiv(out_dim, block))
    temporal_conv_swish_backward_kernel[grid](
        grad.contiguous(), pre, grad_taps, batch * segments, segments, out_dim,
        KERNEL_SIZE=kernel_size, BLOCK=block,
    )
    grads = modality_gemm_grads(grad_taps, rows, taps_weight, x, audio_weight, grad_x, grad_weights)
    return [tensor.contiguous() for tensor in grads if tensor is not None]


@temporal_conv_backward.register_fake
def _(grad, x, audio_weight, visual_weight, audio_bias, visual_bias, pre, grad_x, grad_weights):
    weights = [torch.stack((audio_weight, visual_weight)), torch.stack((audio_bias, visual_bias))]
    return ([torch.empty_like(x)] if grad_x else []) + ([torch.empty_like(w) for w in weights] if grad_weights else [])


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*inputs[:5], output[1])


def _backward(ctx, grad, _):
    needs = ctx.needs_input_grad
    grads = temporal_conv_backward(grad, *ctx.saved_tensors, needs[0], any(needs[1:5]))
    grad_x = grads.pop(0) if needs[0] else None
    grad_weights, grad_biases = grads or ((None, None), (None, None))
    return grad_x, *grad_weights, *grad_biases, None


temporal_conv_forward.register_autograd(_backward, setup_context=_setup_context)


def temporal_conv_swish(
    x: torch.Tensor, audio_weight: torch.Tensor, visual_weight: torch.Tensor, audio_bias: torch.Tensor,
    visual_bias: torch.Tensor, dtype: torch.dtype,
) -> torch.Tensor:
    """``Swish(Conv1d_k(x_m))`` of both modalities on ``[B, 2, T, I]`` (the ``triton`` backend), GEMM and output
    in `dtype`."""
    return temporal_conv_forward(x, audio_weight, visual_weight, audio_bias, visual_bias, dtype)[0]
