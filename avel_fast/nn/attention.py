"""Fast audio-guided visual attention (label-refinement paper eq. 1; `docs/fast-path.md#kernels`).

The GEMMs stay dense (``affine_video``, ``affine_v`` on the 49 locations, ``affine_audio``, ``affine_g``); what
follows them is one op with a hand-written backward: ``c = P + g 1ᵀ``, ``H = tanh(c)``, ``s = H w_f``,
``α = softmax(s)``, ``f = αᵀ V`` on the raw maps ``V``. Backward: ``dα = V df (+ the gradient of α when α is
returned)``, ``ds = α ⊙ (dα − α·dα)``, ``dV = α dfᵀ``, ``dw_f = Σ ds Hᵀ``, ``dP = ds w_fᵀ ⊙ (1 − H²)``,
``dg = Σ_d dP``; ``dV`` only when the maps require a gradient (in training they do not). On CUDA the whole
epilogue is one Triton kernel each way (the custom op `avel_fast::audio_guided_attention_forward`,
`avel_fast.kernels.audio_guided_attention`), which never writes ``c``, ``H`` or the scores to memory.

The two branches before it (``W^v relu(U^v f^v)`` on the ``[N·49, C]`` maps, ``W^a relu(U^a f^a)``) are
`LinearReluLinear` on every backend: the reference's GEMMs, with the ReLU applied in place and its backward
written into the hidden gradient, so neither the ReLU's output nor its gradient takes a buffer of its own.
"""
from __future__ import annotations

import torch
from torch import nn

from avel_fast.backend import select_backend
from avel_fast.reference import ave as reference


class LinearReluLinear(torch.autograd.Function):
    """``relu(x W1ᵀ + b1) W2ᵀ`` for ``x`` ``[M, K]``: the GEMMs that ``nn.Linear`` → ``F.relu`` → ``nn.Linear`` (no
    bias) and their autograd backward call, in the same order and layouts (so the same numbers, bit for bit), with
    the ReLU applied in place on the first product and its backward (``threshold_backward``) in place on the
    hidden gradient."""

    @staticmethod
    def forward(ctx, input, weight1, bias1, weight2):
        hidden = torch.addmm(bias1, input, weight1.t()).relu_()
        ctx.save_for_backward(input, weight1, weight2, hidden)
        return hidden.mm(weight2.t())

    @staticmethod
    def backward(ctx, grad):
        input, weight1, weight2, hidden = ctx.saved_tensors
        needs_input, needs_weight1, needs_bias1, needs_weight2 = ctx.needs_input_grad
        grad_weight2 = grad.t().mm(hidden) if needs_weight2 else None
        if not (needs_input or needs_weight1 or needs_bias1):
            return None, None, None, grad_weight2
        grad_hidden = grad.mm(weight2)
        torch.ops.aten.threshold_backward.grad_input(grad_hidden, hidden, 0, grad_input=grad_hidden)
        return (
            grad_hidden.mm(weight1) if needs_input else None,
            grad_hidden.t().mm(input) if needs_weight1 else None,
            grad_hidden.sum(0) if needs_bias1 else None,
            grad_weight2,
        )


def linear_relu_linear(input: torch.Tensor, first: nn.Linear, second: nn.Linear) -> torch.Tensor:
    """`avel_fast.reference.ave.relu_branch` (``second(relu(first(input)))``) as `LinearReluLinear`; under
    autocast, or for layers of another shape (a bias on `second`), the reference's composition."""
    if torch.is_autocast_enabled(input.device.type) or first.bias is None or second.bias is not None:
        return reference.relu_branch(input, first, second)
    flat = input.reshape(-1, input.shape[-1])
    output = LinearReluLinear.apply(flat, first.weight, first.bias, second.weight)
    return output.view(*input.shape[:-1], output.shape[-1])


def attention_backward(
    grad_attended: torch.Tensor | None,
    grad_attention: torch.Tensor | None,
    attention: torch.Tensor,
    hidden: torch.Tensor,
    score_weight: torch.Tensor,
    maps: torch.Tensor,
    grad_maps: bool,
):
    """Gradients of the projections ``[N, L, D]``, the audio term ``[N, L]``, ``w_f`` ``[D]`` and the raw maps
    ``[N, L, C]`` from those of the attended features and of ``α``; the maps' is None unless `grad_maps` and
    `grad_attended` is given (in training the maps need none)."""
    grad_v, grad_scores = None, grad_attention
    if grad_attended is not None:
        if grad_maps:
            grad_v = attention.unsqueeze(2) * grad_attended.unsqueeze(1)
        grad_scores = torch.bmm(maps, grad_attended.unsqueeze(2)).squeeze(2)
        if grad_attention is not None:
            grad_scores = grad_scores + grad_attention
    if grad_scores is None:  # neither output has a gradient (gradcheck calls the backward so)
        grad_scores = torch.zeros_like(attention)
    grad_scores = attention * (grad_scores - (attention * grad_scores).sum(dim=-1, keepdim=True))
    grad_weight = grad_scores.reshape(1, -1) @ hidden.reshape(-1, hidden.shape[-1])
    grad_projected = grad_scores.unsqueeze(2) * score_weight * (1 - hidden * hidden)
    return grad_projected, grad_projected.sum(dim=2), grad_weight.view_as(score_weight), grad_v


class AttentionEpilogueFunction(torch.autograd.Function):
    """``(f, α)`` from the projections ``P`` ``[N, L, D]``, the audio term ``g`` ``[N, L]``, ``w_f`` ``[D]`` and the
    raw maps ``V`` ``[N, L, C]``: the ``torch`` backend of the epilogue (saves ``α`` and ``H``)."""

    @staticmethod
    def forward(ctx, projected, audio_term, score_weight, maps):
        hidden = torch.tanh(projected + audio_term.unsqueeze(2))
        attention = (hidden @ score_weight).softmax(dim=-1)
        attended = torch.bmm(attention.unsqueeze(1), maps).squeeze(1)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(attention, hidden, score_weight, maps)
        return attended, attention

    @staticmethod
    def backward(ctx, grad_attended, grad_attention):
        return attention_backward(grad_attended, grad_attention, *ctx.saved_tensors, ctx.needs_input_grad[3])


def audio_guided_attention(layers, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`avel_fast.reference.ave.audio_guided_attention` on the selected backend: attended ``[B, T, C]``, ``α``
    ``[B, T, 49]``."""
    backend = select_backend(visual)
    if backend == "reference":
        return reference.audio_guided_attention(layers, audio, visual)
    batch, segments = audio.shape[:2]
    projected, audio_term, maps = reference.attention_operands(layers, audio, visual, linear_relu_linear)
    if backend == "triton":
        from avel_fast.kernels.audio_guided_attention import audio_guided_attention_forward as epilogue
    else:
        epilogue = AttentionEpilogueFunction.apply
    dtype = projected.dtype  # the GEMMs' dtype: the autocast dtype under autocast, as the reference's bmm
    with torch.autocast(visual.device.type, enabled=False):
        attended, attention = epilogue(projected, audio_term.to(dtype), layers.affine_h.weight[0].to(dtype),
                                       maps.to(dtype))
    return attended.view(batch, segments, -1), attention.view(batch, segments, -1)


class AudioGuidedAttention(reference.AudioGuidedAttention):
    """Drop-in `avel_fast.reference.AudioGuidedAttention` (PSP's ``attention``): same constructor, parameters and
    outputs; the epilogue runs on the Triton kernels on CUDA, `AttentionEpilogueFunction` on CPU and the reference
    with ``AVEL_FAST_BACKEND=reference``."""

    def attend(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return audio_guided_attention(self, audio, visual)
