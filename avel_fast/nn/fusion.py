"""Fast gated fusion (DPNet eqs. 9-10, EDRNet eqs. 4-5; docs/fast-path.md#kernels) with the gate weight split.

``z = Conv1d_k([a, v])`` with ``W = [W_a, W_v]`` (``gate.weight[:, :D]`` and ``[:, D:]``) is
``Conv1d_k(a; W_a) + Conv1d_k(v; W_v)``: two GEMMs accumulating into one output, so ``[a, v]`` is never
materialised (k > 1: the k taps side by side, `avel_fast.conv_gemm.gate_taps`, and a shifted sum,
`avel_fast.nn.dpnet.sum_taps`). Then ``g = σ(z + b)`` and ``out = v + g ⊙ (a − v)`` (= ``g ⊙ a + (1 − g) ⊙ v``).
Backward by hand: ``dz = dout ⊙ (a − v) ⊙ g(1 − g)``, ``da = dout ⊙ g + dz ⋆ W_a``,
``dv = dout ⊙ (1 − g) + dz ⋆ W_v`` (⋆ = the transposed conv), ``dW = dzᵀ [a | v]`` per tap, ``db = Σ dz``.
"""
from __future__ import annotations

import torch

from avel_fast.backend import select_backend
from avel_fast.conv_gemm import gate_gemm_grads, gate_operands, gate_taps
from avel_fast.nn.dpnet import compute_dtype, spread_taps, sum_taps
from avel_fast.reference import fusion as reference


class GatedFusionFunction(torch.autograd.Function):
    """``v + σ(Conv1d_k(a; W_a) + Conv1d_k(v; W_v) + b) ⊙ (a − v)`` on ``[B, T, D]``, the ``torch`` backend."""

    @staticmethod
    def forward(ctx, audio, visual, weight, bias):
        operands = gate_operands(audio, visual, weight, compute_dtype(audio))
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

    Backend (docs/fast-path.md#backends): the Triton op on CUDA, `GatedFusionFunction` on CPU, the
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
            from avel_fast.kernels.gated_fusion import gated_fusion

            return gated_fusion(audio, visual, self.gate.weight, self.gate.bias, compute_dtype(audio))
        return GatedFusionFunction.apply(audio, visual, self.gate.weight, self.gate.bias)
