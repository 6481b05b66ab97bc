"""Conv1d over time as dense GEMMs on stacked taps (docs/fast-path.md#kernels): the operands and the GEMM
gradients of TemporalConv (DPNet eqs. 5-6) and of the gated fusion (DPNet eqs. 9-10, EDRNet eqs. 4-5).

Plain PyTorch, shared by the ``torch`` path (`avel_fast.nn`) and the Triton ops (`avel_fast.kernels`), which sit
below it. A length-preserving Conv1d of odd kernel k, ``z[t] = b + Σ_j W_j x[t + j − p]``, is the GEMM
``Y = x [W_0; …; W_{k−1}]ᵀ`` (`conv_taps`) followed by a shifted sum of the k taps; ``dY`` is the shifted
spread of ``dz``.
"""
from __future__ import annotations

import torch


def conv_taps(weight: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight ``[O, I, k]`` as one GEMM operand ``[k·O, I]``, row ``j·O + o`` = ``weight[o, :, j]``
    (a view when k = 1)."""
    if weight.shape[-1] == 1:
        return weight[..., 0]
    return weight.permute(2, 0, 1).reshape(-1, weight.shape[1])


def unstacked_taps(grad: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Inverse layout of `conv_taps`: ``[..., k·O, I]`` -> ``[..., O, I, k]``."""
    return grad.unflatten(-2, (kernel_size, -1)).movedim(-3, -1)


def modality_operands(
    x: torch.Tensor, weights: tuple[torch.Tensor, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """``x`` ``[B, 2, T, I]`` -> per-modality rows ``[2, B·T, I]``, stacked taps ``[2, k·O, I]``, biases ``[2, O]``.

    `weights` = (audio weight, visual weight, audio bias, visual bias); all in `dtype` (the GEMMs' dtype).
    """
    rows = x.to(dtype).transpose(0, 1).reshape(2, -1, x.shape[-1])
    taps = torch.stack([conv_taps(weight) for weight in weights[:2]])
    return rows, taps.to(dtype), torch.stack(weights[2:]).to(dtype)


def modality_gemm_grads(
    grad_taps: torch.Tensor, rows: torch.Tensor, taps_weight: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
    grad_x: bool, grad_weights: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """From ``dY`` ``[2, B, T, k, O]``: ``dx`` (with `grad_x`), the audio/visual weights' gradients stacked
    ``[2, O, I, k]`` and the biases' ``[2, O]`` (with `grad_weights`); None for what is not asked for.

    `rows`, `taps_weight`: the `modality_operands` of the forward; `x`, `weight`: its input and a weight.
    """
    kernel_size = weight.shape[-1]
    flat = grad_taps.flatten(1, 2).flatten(2)  # [2, B·T, k·O]
    grad_input = None
    if grad_x:
        grad_input = torch.bmm(flat, taps_weight).view(2, x.shape[0], x.shape[2], -1)
        grad_input = grad_input.transpose(0, 1).to(x.dtype)
    if not grad_weights:
        return grad_input, None, None
    grad_weight = unstacked_taps(torch.bmm(flat.transpose(1, 2), rows), kernel_size)
    grad_bias = grad_taps[:, :, :, kernel_size // 2].sum((1, 2))
    return grad_input, grad_weight.to(weight.dtype), grad_bias.to(weight.dtype)


def gate_operands(
    audio: torch.Tensor, visual: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Contiguous rows ``[B·T, D]`` of audio and visual and the stacked taps of ``W_a`` and ``W_v`` ``[k·D, D]``
    (``W = [W_a, W_v]``, the gate weight split), in `dtype` (the GEMMs' dtype)."""
    dim = audio.shape[-1]
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
