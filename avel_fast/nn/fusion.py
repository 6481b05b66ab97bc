"""Fast gated fusion (DPNet eqs. 9-10, EDRNet eqs. 4-5; docs/fast-path.md#kernels) with the gate weight split.

``z = Conv1d_k([a, v])`` with ``W = [W_a, W_v]`` (``gate.weight[:, :D]`` and ``[:, D:]``) is
``Conv1d_k(a; W_a) + Conv1d_k(v; W_v)``: two GEMMs accumulating into one output, so ``[a, v]`` is never
materialised (k > 1: the k taps side by side and a shifted sum, `avel_fast.nn.dpnet.sum_taps`). Then
``g = σ(z + b)`` and ``out = v + g ⊙ (a − v)`` (= ``g ⊙ a + (1 − g) ⊙ v``). Backward by hand:
``dz = dout ⊙ (a − v) ⊙ g(1 − g)``, ``da = dout ⊙ g + dz ⋆ W_a``, ``dv = dout ⊙ (1 − g) + dz ⋆ W_v``
(⋆ = the transposed conv), ``dW = dzᵀ [a | v]`` per tap, ``db = Σ dz``.
"""
from __future__ import annotations

import torch

from avel_fast.backend import select_backend
from avel_fast.nn.dpnet import compute_dtype, conv_taps, spread_taps, sum_taps, unstacked_taps
from avel_fast.reference import fusion as reference


def gate_operands(audio: torch.Tensor, visual: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Contiguous rows ``[B·T, D]`` of audio and visual and the stacked taps of ``W_a`` and ``W_v`` ``[k·D, D]``,
    in `compute_dtype`."""
    dim = audio.shape[-1]
    dtype = compute_dtype(audio)
    rows = [x.reshape(-1, dim).to(dtype).contiguous() for x in (audio, visual)]
    return rows[0], rows[1], conv_taps(weight[:, :dim]).to(dtype), conv_taps(weight[:, dim:]).to(dtype)


def gate_taps(
    audio_rows: torch.Tensor, visual_rows: torch.Tensor, audio_taps: torch.Tensor, visual_taps: torch.Tensor
) -> torch.Tensor:
    """``[B·T, k·D]``: ``a W_a + v W_v`` for every tap (the only GEMMs of the forward)."""
    return torch.addmm(audio_rows @ audio_taps.t(), visual_rows, visual_taps.t())


def gate_gemm_grads(
    grad_taps: torch.Tensor,
    direct_audio: torch.Tensor,
    direct_visual: torch.Tensor,
    operands: tuple[torch.Tensor, ...],
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """da, dv ``[B·T, D]``, dW ``[D, 2D, k]`` and db from ``dY`` ``[B·T, k·D]`` and the elementwise parts of da, dv.

    The transposed-conv GEMMs accumulate into the elementwise parts (`torch.addmm`); `operands` are the
    `gate_operands` of the forward.
    """
    audio_rows, visual_rows, audio_taps, visual_taps = operands
    kernel_size = weight.shape[-1]
    grad_taps = grad_taps.to(audio_taps.dtype)
    grad_weight = torch.cat(
        [unstacked_taps(grad_taps.t() @ rows, kernel_size) for rows in (audio_rows, visual_rows)], dim=1
    )
    grad_bias = grad_taps.unflatten(1, (kernel_size, -1))[:, kernel_size // 2].sum(0)
    return (
        torch.addmm(direct_audio.to(grad_taps.dtype), grad_taps, audio_taps),
        torch.addmm(direct_visual.to(grad_taps.dtype), grad_taps, visual_taps),
        grad_weight.to(weight.dtype),
        grad_bias.to(weight.dtype),
    )


class GatedFusionFunction(torch.autograd.Function):
    """``v + σ(Conv1d_k(a; W_a) + Conv1d_k(v; W_v) + b) ⊙ (a − v)`` on ``[B, T, D]``, the ``torch`` backend."""

    @staticmethod
    def forward(ctx, audio, visual, weight, bias):
        operands = gate_operands(audio, visual, weight)
        batch, segments, dim = audio.shape
        taps = gate_taps(*operands).view(batch, segments, weight.shape[-1], dim)
        pre = taps.squeeze(2) if weight.shape[-1] == 1 else sum_taps(taps, taps.new_empty(batch, segments, dim))
        gate = pre.add_(bias.to(taps.dtype)).sigmoid_()
        ctx.save_for_backward(weight, gate, *operands)
        return visual + gate * (audio - visual)

    @staticmethod
    def backward(ctx, grad):
        weight, gate, *operands = ctx.saved_tensors
        audio_rows, visual_rows = operands[:2]
        batch, segments, dim = gate.shape
        flat_gate = gate.view(-1, dim)
        direct_audio = grad.reshape(-1, dim) * flat_gate
        direct_visual = grad.reshape(-1, dim) - direct_audio
        grad_pre = direct_audio * (1 - flat_gate) * (audio_rows - visual_rows)
        kernel_size = weight.shape[-1]
        grad_taps = spread_taps(grad_pre.view(gate.shape), kernel_size).view(batch * segments, kernel_size * dim)
        grad_audio, grad_visual, grad_weight, grad_bias = gate_gemm_grads(
            grad_taps, direct_audio, direct_visual, operands, weight
        )
        return grad_audio.view(gate.shape).to(grad.dtype), grad_visual.view(gate.shape).to(grad.dtype), \
            grad_weight, grad_bias


class GatedFusion(reference.GatedFusion):
    """Drop-in `avel_fast.reference.GatedFusion`: same constructor, parameters and outputs.

    Backend (docs/fast-path.md#backends): the Triton epilogue kernels on CUDA, `GatedFusionFunction` on CPU, the
    reference with ``AVEL_FAST_BACKEND=reference``. Under autocast the GEMMs and the gate are in the autocast
    dtype (as the reference's `nn.Conv1d`), the output in the promotion of that and the inputs' dtype (as the
    reference's).
    """

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """`audio`, `visual` ``[B, T, dim]`` -> gated features ``[B, T, dim]``."""
        backend = select_backend(audio)
        if backend == "reference":
            return super().forward(audio, visual)
        self.check_input(audio, visual)
        if backend == "triton":
            from avel_fast.kernels.gated_fusion import TritonGatedFusion

            return TritonGatedFusion.apply(audio, visual, self.gate.weight, self.gate.bias)
        return GatedFusionFunction.apply(audio, visual, self.gate.weight, self.gate.bias)
