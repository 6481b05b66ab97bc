"""Fast DPNet blocks (DPNet eqs. 5-7; docs/fast-path.md#kernels): TemporalConv + Swish as one batched GEMM,
DPBlock of fast parts.

A length-preserving Conv1d of odd kernel k (padding ``p = k // 2``) over time,
``z[t] = b + Σ_j W_j x[t + j − p]``, is one GEMM that puts the k taps side by side,
``Y = x [W_0; …; W_{k−1}]ᵀ`` (`stacked_taps`), then a shifted sum ``z[t] = b + Σ_j Y[t + j − p, j]``
(`sum_taps`); its backward is the same GEMMs on ``dY[s, j] = dz[s − j + p]`` (`spread_taps`). Both modalities
run as one batched GEMM on the ``[B, 2, T, D]`` layout, without the reference's ``[B, D, T]`` transposes or
stack. On CUDA the Triton kernels of `avel_fast.kernels.temporal_conv` fuse the shifted sum, bias and SiLU
(and their backward); the helpers here are shared with them and with `avel_fast.nn.fusion`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from avel_fast.backend import select_backend
from avel_fast.nn.rgct import RGCT
from avel_fast.reference import dpnet as reference


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a GEMM on `tensor` runs in: autocast's when it is on for the tensor's device, like `nn.Conv1d`."""
    if torch.is_autocast_enabled(tensor.device.type):
        return torch.get_autocast_dtype(tensor.device.type)
    return tensor.dtype


def conv_taps(weight: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight ``[O, I, k]`` as one GEMM operand ``[k·O, I]``, row ``j·O + o`` = ``weight[o, :, j]``
    (a view when k = 1)."""
    if weight.shape[-1] == 1:
        return weight[..., 0]
    return weight.permute(2, 0, 1).reshape(-1, weight.shape[1])


def stacked_taps(*weights: torch.Tensor) -> torch.Tensor:
    """`conv_taps` of several weights of one shape, stacked: ``[len(weights), k·O, I]``."""
    return torch.stack([conv_taps(weight) for weight in weights])


def unstacked_taps(grad: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Inverse layout of `conv_taps`: ``[k·O, I]`` -> ``[O, I, k]``."""
    return grad.unflatten(0, (kernel_size, -1)).permute(1, 2, 0)


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
            taps[..., :shift, j, :] = 0
        else:
            taps[..., : segments + shift, j, :] = grad[..., -shift:, :]
            taps[..., segments + shift :, j, :] = 0
    return taps


def modality_operands(x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``x`` ``[B, 2, T, I]`` -> per-modality rows ``[2, B·T, I]``, stacked taps ``[2, k·O, I]``, biases ``[2, O]``.

    `weights` = (audio weight, visual weight, audio bias, visual bias); all in `compute_dtype`.
    """
    dtype = compute_dtype(x)
    rows = x.to(dtype).transpose(0, 1).reshape(2, -1, x.shape[-1])
    return rows, stacked_taps(*weights[:2]).to(dtype), torch.stack(weights[2:]).to(dtype)


def modality_gemm_grads(
    needs_input_grad: tuple[bool, ...], grad_taps: torch.Tensor, rows: torch.Tensor, taps_weight: torch.Tensor,
    x: torch.Tensor, weight: torch.Tensor,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of (x, audio weight, visual weight, audio bias, visual bias) from ``dY`` ``[2, B, T, k, O]``.

    `rows`, `taps_weight`: the `modality_operands` of the forward; `x`, `weight`: its input and a weight.
    """
    kernel_size = weight.shape[-1]
    flat = grad_taps.flatten(1, 2).flatten(2)  # [2, B·T, k·O]
    grad_x = None
    if needs_input_grad[0]:
        grad_x = torch.bmm(flat, taps_weight).view(2, x.shape[0], x.shape[2], -1)
        grad_x = grad_x.transpose(0, 1).to(x.dtype)
    if not any(needs_input_grad[1:]):
        return grad_x, None, None, None, None
    audio_grad, visual_grad = (
        unstacked_taps(g, kernel_size).to(weight.dtype) for g in torch.bmm(flat.transpose(1, 2), rows)
    )
    audio_bias_grad, visual_bias_grad = grad_taps[:, :, :, kernel_size // 2].sum((1, 2)).to(weight.dtype)
    return grad_x, audio_grad, visual_grad, audio_bias_grad, visual_bias_grad


class TemporalConvSwish(torch.autograd.Function):
    """``Swish(Conv1d_k(x_m))`` of both modalities (DPNet eqs. 5-6), the ``torch`` backend: one batched GEMM."""

    @staticmethod
    def forward(ctx, x, audio_weight, visual_weight, audio_bias, visual_bias):
        weights = (audio_weight, visual_weight, audio_bias, visual_bias)
        rows, taps_weight, biases = modality_operands(x, weights)
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
        return modality_gemm_grads(ctx.needs_input_grad, grad_taps, rows, taps_weight, x, audio_weight)


class TemporalConv(reference.TemporalConv):
    """Drop-in `avel_fast.reference.TemporalConv`: same constructor, parameters and outputs.

    Backend (docs/fast-path.md#backends): the fused Triton kernels on CUDA, `TemporalConvSwish` on CPU, the
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
            from avel_fast.kernels.temporal_conv import TritonTemporalConvSwish

            return TritonTemporalConvSwish.apply(x, *weights)
        return TemporalConvSwish.apply(x, *weights)


class DPBlock(reference.DPBlock):
    """Drop-in `avel_fast.reference.DPBlock` built from the fast `RGCT` and `TemporalConv`."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.2) -> None:
        super().__init__(in_dim, dim, dropout)
        self.rgct.__class__ = RGCT
        self.tcn.__class__ = TemporalConv
