"""Gated fusion on CUDA (DPNet eqs. 9-10, EDRNet eqs. 4-5; docs/fast-path.md#kernels): dense GEMMs, fused epilogues.

The gate's GEMMs stay dense in cuBLAS with the weight split (``[a, v]`` is never materialised,
`avel_fast.conv_gemm.gate_taps`); everything elementwise around them is one kernel each way:

* forward: ``z = b + Σ_j Y[t + j − p, j]`` (the shifted sum of the k taps; k = 1 DPNet, 3 EDRNet),
  ``g = σ(z)``, ``out = v + g ⊙ (a − v)``; writes ``out`` and ``g``;
* backward: ``da = dout ⊙ g``, ``dv = dout − da``, ``dz = da ⊙ (1 − g) ⊙ (a − v)`` spread into the taps'
  gradient; the transposed-conv GEMMs then accumulate into ``da`` / ``dv`` (`torch.addmm`), on operands
  rebuilt from the forward's inputs.

Both directions are PyTorch custom operators (`avel_fast::gated_fusion_forward` / `_backward`, with fake
implementations and registered autograd), so `torch.compile` captures them without a graph break.

Why cuBLAS plus an epilogue kernel rather than a Triton GEMM with the epilogue fused in: the reference spends
its extra time in the concatenation, the transposes and ~5 elementwise kernels around one convolution, all
removed here; the GEMMs themselves are cuBLAS-bound either way. (Not measured against a fused Triton GEMM:
the kernels were developed without a GPU, checked through Triton's interpreter and compiled for sm_90.)
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from avel_fast.kernels.temporal_conv import column_block, tap_spread, tap_sum
from avel_fast.conv_gemm import gate_gemm_grads, gate_operands, gate_taps


@triton.jit
def gated_fusion_forward_kernel(
    taps_ptr, bias_ptr, audio_ptr, visual_ptr, out_ptr, gate_ptr, segments, dim,
    KERNEL_SIZE: tl.constexpr, BLOCK: tl.constexpr,
):
    """One program per (row ``b·T + t``, column block): the gate and the convex combination."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < dim
    t = row % segments
    pre = tap_sum(taps_ptr, row, t, cols, mask, segments, dim, KERNEL_SIZE, BLOCK)
    gate = tl.sigmoid(pre + tl.load(bias_ptr + cols, mask=mask, other=0.0).to(tl.float32))
    offsets = row * dim + cols
    audio = tl.load(audio_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    visual = tl.load(visual_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(gate_ptr + offsets, gate.to(gate_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + offsets, (visual + gate * (audio - visual)).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gated_fusion_backward_kernel(
    grad_ptr, audio_ptr, visual_ptr, gate_ptr, grad_audio_ptr, grad_visual_ptr, grad_taps_ptr, segments, dim,
    KERNEL_SIZE: tl.constexpr, BLOCK: tl.constexpr,
):
    """The elementwise part of the backward for one row and column block; ``dz`` spread into ``dY``."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < dim
    offsets = row * dim + cols
    grad = tl.load(grad_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(gate_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    audio = tl.load(audio_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    visual = tl.load(visual_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    grad_audio = grad * gate
    grad_pre = grad_audio * (1.0 - gate) * (audio - visual)
    tl.store(grad_audio_ptr + offsets, grad_audio.to(grad_audio_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_visual_ptr + offsets, (grad - grad_audio).to(grad_visual_ptr.dtype.element_ty), mask=mask)
    tap_spread(grad_taps_ptr, row, row % segments, cols, mask, grad_pre.to(grad_taps_ptr.dtype.element_ty),
               segments, dim, KERNEL_SIZE)


@torch.library.custom_op("avel_fast::gated_fusion_forward", mutates_args=())
def gated_fusion_forward(
    audio: torch.Tensor, visual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out [B, T, D], g [B·T, D])``: the GEMMs and ``g`` in `dtype`, ``out`` in the promotion of `dtype` and the
    inputs' dtype."""
    operands = gate_operands(audio, visual, weight, dtype)
    batch, segments, dim = audio.shape
    taps = gate_taps(*operands)  # [B·T, k·D]
    audio_rows, visual_rows = audio.reshape(-1, dim).contiguous(), visual.reshape(-1, dim).contiguous()
    out = torch.empty(audio_rows.shape, device=audio.device, dtype=torch.promote_types(dtype, audio.dtype))
    gate = torch.empty_like(audio_rows, dtype=dtype)
    block = column_block(dim)
    gated_fusion_forward_kernel[(batch * segments, triton.cdiv(dim, block))](
        taps, bias.to(dtype), audio_rows, visual_rows, out, gate, segments, dim,
        KERNEL_SIZE=weight.shape[-1], BLOCK=block,
    )
    return out.view(batch, segments, dim), gate


@gated_fusion_forward.register_fake
def _(audio, visual, weight, bias, dtype):
    out = audio.new_empty(audio.shape, dtype=torch.promote_types(dtype, audio.dtype))
    return out, audio.new_empty(audio.shape[0] * audio.shape[1], audio.shape[2], dtype=dtype)


@torch.library.custom_op("avel_fast::gated_fusion_backward", mutates_args=())
def gated_fusion_backward(
    grad: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of audio, visual, the gate weight and bias; the GEMM operands are rebuilt from the forward's
    inputs in the gate's dtype."""
    operands = gate_operands(audio, visual, weight, gate.dtype)
    rows, dim = gate.shape
    direct_audio, direct_visual = torch.empty_like(gate), torch.empty_like(gate)
    grad_taps = gate.new_empty(rows, weight.shape[-1] * dim)
    block = column_block(dim)
    gated_fusion_backward_kernel[(rows, triton.cdiv(dim, block))](
        grad.contiguous(), operands[0], operands[1], gate, direct_audio, direct_visual, grad_taps,
        grad.shape[1], dim, KERNEL_SIZE=weight.shape[-1], BLOCK=block,
    )
    grad_audio, grad_visual, grad_weight, grad_bias = gate_gemm_grads(
        grad_taps, direct_audio, direct_visual, operands, weight
    )
    return grad_audio.view(grad.shape).to(grad.dtype), grad_visual.view(grad.shape).to(grad.dtype), \
        grad_weight, grad_bias


@gated_fusion_backward.register_fake
def _(grad, audio, visual, weight, gate):
    return torch.empty_like(grad), torch.empty_like(grad), torch.empty_like(weight), weight.new_empty(weight.shape[0])


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*inputs[:3], output[1])


def _backward(ctx, grad, _):
    audio, visual, weight, gate = ctx.saved_tensors
    return *gated_fusion_backward(grad, audio, visual, weight, gate), None


gated_fusion_forward.register_autograd(_backward, setup_context=_setup_context)


def gated_fusion(
    audio: torch.Tensor, visual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``v + σ(Conv1d_k(a; W_a) + Conv1d_k(v; W_v) + b) ⊙ (a − v)`` on ``[B, T, D]`` (the ``triton`` backend).

    The GEMMs and ``g`` run in `dtype` (the autocast dtype under autocast); the combination reads the inputs as
    given and writes the promotion of both dtypes, as the reference does.
    """
    return gated_fusion_forward(audio, visual, weight, bias, dtype)[0]
