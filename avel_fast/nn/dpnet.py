"""Fast DPNet blocks (DPNet eqs. 5-7; docs/fast-path.md#kernels): TemporalConv + Swish as one batched GEMM,
DPBlock of fast parts.

A length-preserving Conv1d of odd kernel k (padding ``p = k // 2``) over time,
``z[t] = b + Σ_j W_j x[t + j − p]``, is one GEMM that puts the k taps side by side,
``Y = x [W_0; …; W_{k−1}]ᵀ`` (`avel_fast.conv_gemm`), then a shifted sum ``z[t] = b + Σ_j Y[t + j − p, j]``
(`sum_taps`); its backward is the same GEMMs on ``dY[s, j] = dz[s − j + p]`` (`spread_taps`). Both modalities
run as one batched GEMM on the ``[B, 2, T, D]`` layout, without the reference's ``[B, D, T]`` transposes or
stack. On CUDA the Triton op `avel_fast::temporal_conv_forward` (`avel_fast.kernels.temporal_conv`) fuses the
shifted sum, bias and SiLU (and their backward); `sum_taps` and `spread_taps` are shared with
`avel_fast.nn.fusion`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avel_fast.backend import select_backend
from avel_fast.conv_gemm import modality_gemm_grads, modality_operands
from avel_fast.nn.rgct import RGCT
from avel_fast.reference import dpnet as reference


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a GEMM on `tensor` runs in: autocast's when it is on for the tensor's device, like `nn.Conv1d`."""
    if torch.is_autocast_enabled(tensor.device.type):
        return torch.get_autocast_dtype(tensor.device.type)
    return tensor.dtype


def sum_taps(taps: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out[..., t, :] = Σ_j taps[..., t + j − p, j, :]`` over the taps inside the sequence.

    `taps` ``[..., T, k, O]``, `out` ``[..., T, O]`` (written and returned).
    """
    segments, kernel_size = taps.shape[-3], taps.shape[-2]
    pad = kernel_size // 2
    out.copy_(taps[..., pad, :])
    for j in range(kernel_size):
        shift = j - pad
        if shift == 0 or abs(shift) >= segments:
            continue
        if shift > 0:
            out[..., : segments - shift, :] += taps[..., shift:, j, :]
        else:
            out[..., -shift:, :] += taps[..., : segments + shift, j, :]
    return out


def spread_taps(grad: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The adjoint of `sum_taps`: ``[..., T, O]`` -> ``[..., T, k, O]``, ``[s, j] = grad[s − j + p]`` (0 outside)."""
    if kernel_size == 1:
        return grad.unsqueeze(-2)
    segments = grad.shape[-2]
    pad = kernel_size // 2
    taps = grad.new_empty(*grad.shape[:-1], kernel_size, grad.shape[-1])
    for j in range(kernel_size):
        shift = min(max(j - pad, -segments), segments)
        if shift >= 0:
            taps[..., shift:, j, :] = grad[..., : segments - shift, :]
            taps[..., :shift, j, :].zero_()
        else:
            taps[..., : segments + shift, j, :] = grad[..., -shift:, :]
            taps[..., segments + shift :, j, :].zero_()
    return taps


class TemporalConvSwish(torch.autograd.Function):
    """``Swish(Conv1d_k(x_m))`` of both modalities (DPNet eqs. 5-6), the ``torch`` backend: one batched GEMM."""

    @staticmethod
    def forward(ctx, x, audio_weight, visual_weight, audio_bias, visual_bias):
        weights = (audio_weight, visual_weight, audio_bias, visual_bias)
        rows, taps_weight, biases = modality_operands(x, weights, compute_dtype(x))
        batch, _, segments, _ = x.shape
        out_dim, kernel_size = audio_weight.shape[0], audio_weight.shape[-1]
        taps = torch.bmm(rows, taps_weight.transpose(1, 2)).view(2, batch, segments, kernel_size, out_dim)
        pre = x.new_empty(batch, 2, segments, out_dim, dtype=taps.dtype)
        sum_taps(taps, pre.transpose(0, 1)).add_(biases.view(2, 1, 1, out_dim))
        ctx.save_for_backward(x, audio_weight, rows, taps_weight, pre)
        return F.silu(pre)

    @staticmethod
    def backward(ctx, grad):
        x, audio_weight, rows, taps_weight, pre = ctx.saved_tensors
        grad_pre = torch.ops.aten.silu_backward(grad.to(pre.dtype), pre)
        grad_taps = spread_taps(grad_pre.transpose(0, 1), audio_weight.shape[-1])
        grad_x, grad_weights, grad_biases = modality_gemm_grads(
            grad_taps, rows, taps_weight, x, audio_weight, ctx.needs_input_grad[0], any(ctx.needs_input_grad[1:])
        )
        if grad_weights is None:
            return grad_x, None, None, None, None
        return grad_x, *grad_weights, *grad_biases


class TemporalConv(reference.TemporalConv):
    """Drop-in `avel_fast.reference.TemporalConv`: same constructor, parameters and outputs.

    Backend (docs/fast-path.md#backends): the fused Triton op on CUDA, `TemporalConvSwish` on CPU, the
    reference with ``AVEL_FAST_BACKEND=reference``. Under autocast the GEMM and the output are in the autocast
    dtype, as the reference's `nn.Conv1d` gives.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2, T, in_dim]`` -> ``[B, 2, T, out_dim]``."""
        backend = select_backend(x)
        if backend == "reference":
            return super().forward(x)
        self.check_input(x)
        weights = (self.audio.weight, self.visual.weight, self.audio.bias, self.visual.bias)
        if backend == "triton":
            from avel_fast.kernels.temporal_conv import temporal_conv_swish

            return temporal_conv_swish(x, *weights, compute_dtype(x))
        return TemporalConvSwish.apply(x, *weights)


class DPBlock(reference.DPBlock):
    """Drop-in `avel_fast.reference.DPBlock` built from the fast `RGCT` and `TemporalConv`."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.2) -> None:
        super().__init__(in_dim, dim, dropout)
        self.rgct.__class__ = RGCT
        self.tcn.__class__ = TemporalConv
