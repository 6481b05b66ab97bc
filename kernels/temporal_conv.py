"""TemporalConv + Swish on CUDA (DPNet eqs. 5-6; docs/fast-path.md#kernels): one batched GEMM and a fused epilogue.

Forward: the k taps of both modalities' convolutions in one `torch.bmm` (cuBLAS), ``Y_m = x_m [W_m,0; …]ᵀ``
(`avel_fast.nn.dpnet.modality_operands`), then one kernel sums the shifted taps, adds the bias, applies SiLU
and writes the output straight into the ``[B, 2, T, O]`` layout, with the pre-activation ``z`` for backward.
Backward: one kernel computes ``dz = dout ⊙ SiLU'(z)`` and scatters it into the taps' gradient
``dY[s, j] = dz[s − j + p]`` (zeros where the source segment is outside the video), then the GEMMs of the
``torch`` path (`avel_fast.nn.dpnet.modality_gemm_grads`).

`tap_sum` / `tap_spread` are shared with `avel_fast.kernels.gated_fusion`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from avel_fast.nn.dpnet import modality_gemm_grads, modality_operands

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


class TritonTemporalConvSwish(torch.autograd.Function):
    """``Swish(Conv1d_k(x_m))`` of both modalities on ``[B, 2, T, I]`` (the ``triton`` backend)."""

    @staticmethod
    def forward(ctx, x, audio_weight, visual_weight, audio_bias, visual_bias):
        rows, taps_weight, biases = modality_operands(x, (audio_weight, visual_weight, audio_bias, visual_bias))
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
        ctx.save_for_backward(x, audio_weight, rows, taps_weight, pre)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, audio_weight, rows, taps_weight, pre = ctx.saved_tensors
        batch, _, segments, out_dim = pre.shape
        kernel_size = audio_weight.shape[-1]
        grad_taps = pre.new_empty(2, batch, segments, kernel_size, out_dim)
        block = column_block(out_dim)
        grid = (2 * batch * segments, triton.cdiv(out_dim, block))
        temporal_conv_swish_backward_kernel[grid](
            grad.contiguous(), pre, grad_taps, batch * segments, segments, out_dim,
            KERNEL_SIZE=kernel_size, BLOCK=block,
        )
        return modality_gemm_grads(ctx.needs_input_grad, grad_taps, rows, taps_weight, x, audio_weight)
