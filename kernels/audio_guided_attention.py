"""Audio-guided attention epilogue in Triton (label-refinement paper eq. 1; `docs/fast-path.md#kernels`).

The GEMMs stay in cuBLAS (`avel_fast.reference.ave.attention_operands`); one program per segment then does
everything after them in registers:

* forward: ``H = tanh(P + g 1ᵀ)`` on the ``[L, D]`` tile, ``s = H w_f``, ``α = softmax(s)`` over the L
  locations, ``f = Σ_k α_k V_k`` over the raw maps in column blocks; writes only ``f`` and ``α``;
* backward: ``dα = V df (+ dα given)`` and, when the maps need a gradient (a constexpr; in training they never
  do), ``dV = α dfᵀ`` in one pass over the maps, then ``ds = α ⊙ (dα − α·dα)`` and, with ``H`` recomputed,
  ``dP = ds w_fᵀ ⊙ (1 − H²)``, ``dg = Σ_d dP`` and the segment's share of ``dw_f`` (summed over segments
  afterwards, no atomics).

Both directions are PyTorch custom operators (`avel_fast::audio_guided_attention_forward` / `_backward`, with
fake implementations and registered autograd), so `torch.compile` captures them without a graph break.

The whole ``[L, D]`` tile is held by one program (L, D ≤ 128 each; the model has L = D = 49); launches use one
fixed configuration, the same under ``TRITON_INTERPRET=1`` and on the GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_TILE = 128
CHANNEL_BLOCK = 128


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _hidden_and_scores(projected_ptr, audio_ptr, weight_ptr, row, locations, dim,
                       BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    """``H = tanh(P + g 1ᵀ)`` ``[BLOCK_L, BLOCK_D]``, ``w_f``, ``s = H w_f`` and the tile's index vectors/masks."""
    loc = tl.arange(0, BLOCK_L)
    col = tl.arange(0, BLOCK_D)
    loc_ok = loc < locations
    col_ok = col < dim
    tile_mask = loc_ok[:, None] & col_ok[None, :]
    tile = row * locations * dim + loc[:, None] * dim + col[None, :]
    projected = tl.load(projected_ptr + tile, mask=tile_mask, other=0.0).to(tl.float32)
    audio = tl.load(audio_ptr + row * locations + loc, mask=loc_ok, other=0.0).to(tl.float32)
    weight = tl.load(weight_ptr + col, mask=col_ok, other=0.0).to(tl.float32)
    hidden = _tanh(projected + audio[:, None])
    scores = tl.sum(hidden * weight[None, :], axis=1)
    return hidden, weight, scores, loc, loc_ok, col_ok, tile, tile_mask


@triton.jit
def attention_forward_kernel(
    projected_ptr, audio_ptr, weight_ptr, maps_ptr, attended_ptr, attention_ptr, locations, dim, channels,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """One program per segment (row of ``[B·T, ...]``): ``α`` and ``f = αᵀ V``."""
    row = tl.program_id(0).to(tl.int64)
    _, _, scores, loc, loc_ok, _, _, _ = _hidden_and_scores(
        projected_ptr, audio_ptr, weight_ptr, row, locations, dim, BLOCK_L, BLOCK_D
    )
    scores = tl.where(loc_ok, scores, float("-inf"))
    exponentials = tl.exp(scores - tl.max(scores, axis=0))
    attention = exponentials / tl.sum(exponentials, axis=0)
    tl.store(attention_ptr + row * locations + loc, attention, mask=loc_ok)
    for start in range(0, channels, BLOCK_C):
        channel = start + tl.arange(0, BLOCK_C)
        channel_ok = channel < channels
        maps = tl.load(maps_ptr + row * locations * channels + loc[:, None] * channels + channel[None, :],
                       mask=loc_ok[:, None] & channel_ok[None, :], other=0.0).to(tl.float32)
        attended = tl.sum(attention[:, None] * maps, axis=0)
        tl.store(attended_ptr + row * channels + channel, attended.to(attended_ptr.dtype.element_ty), mask=channel_ok)


@triton.jit
def attention_backward_kernel(
    grad_attended_ptr, grad_attention_ptr, projected_ptr, audio_ptr, weight_ptr, maps_ptr, attention_ptr,
    grad_maps_ptr, grad_projected_ptr, grad_audio_ptr, grad_weight_ptr, locations, dim, channels,
    HAS_GRAD_ATTENDED: tl.constexpr, HAS_GRAD_ATTENTION: tl.constexpr, GRAD_MAPS: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """One program per segment: ``dP``, ``dg``, the segment's row of ``dw_f`` partials and, with `GRAD_MAPS`,
    ``dV``."""
    row = tl.program_id(0).to(tl.int64)
    loc = tl.arange(0, BLOCK_L)
    loc_ok = loc < locations
    attention = tl.load(attention_ptr + row * locations + loc, mask=loc_ok, other=0.0)
    grad_scores = tl.zeros((BLOCK_L,), dtype=tl.float32)
    if HAS_GRAD_ATTENDED:
        for start in range(0, channels, BLOCK_C):
            channel = start + tl.arange(0, BLOCK_C)
            channel_ok = channel < channels
            grad = tl.load(grad_attended_ptr + row * channels + channel, mask=channel_ok, other=0.0).to(tl.float32)
            offsets = row * locations * channels + loc[:, None] * channels + channel[None, :]
            mask = loc_ok[:, None] & channel_ok[None, :]
            maps = tl.load(maps_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            grad_scores += tl.sum(maps * grad[None, :], axis=1)
            if GRAD_MAPS:
                tl.store(grad_maps_ptr + offsets,
                         (attention[:, None] * grad[None, :]).to(grad_maps_ptr.dtype.element_ty), mask=mask)
    if HAS_GRAD_ATTENTION:
        grad_scores += tl.load(grad_attention_ptr + row * locations + loc, mask=loc_ok, other=0.0).to(tl.float32)
    grad_scores = attention * (grad_scores - tl.sum(attention * grad_scores, axis=0))
    hidden, weight, _, _, _, col_ok, tile, tile_mask = _hidden_and_scores(
        projected_ptr, audio_ptr, weight_ptr, row, locations, dim, BLOCK_L, BLOCK_D
    )
    grad_projected = grad_scores[:, None] * weight[None, :] * (1.0 - hidden * hidden)
    tl.store(grad_projected_ptr + tile, grad_projected.to(grad_projected_ptr.dtype.element_ty), mask=tile_mask)
    tl.store(grad_audio_ptr + row * locations + loc, tl.sum(grad_projected, axis=1), mask=loc_ok)
    col = tl.arange(0, BLOCK_D)
    tl.store(grad_weight_ptr + row * dim + col, tl.sum(grad_scores[:, None] * hidden, axis=0), mask=col_ok)


def tile_blocks(projected: torch.Tensor) -> tuple[int, int]:
    """The power-of-two tile ``(BLOCK_L, BLOCK_D)`` holding one segment's ``[L, D]`` projections."""
    locations, dim = projected.shape[1:]
    blocks = triton.next_power_of_2(locations), triton.next_power_of_2(dim)
    if max(blocks) > MAX_TILE:
        raise ValueError(f"the Triton attention epilogue holds L, D <= {MAX_TILE}, got L={locations}, D={dim}")
    return blocks


@torch.library.custom_op("avel_fast::audio_guided_attention_forward", mutates_args=())
def audio_guided_attention_forward(
    projected: torch.Tensor, audio_term: torch.Tensor, score_weight: torch.Tensor, maps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f, α)`` from the projections ``P`` ``[N, L, D]``, the audio term ``g`` ``[N, L]``, ``w_f`` ``[D]`` and the
    raw maps ``V`` ``[N, L, C]`` (fp32 arithmetic, ``f`` ``[N, C]`` in the maps' dtype, ``α`` ``[N, L]`` fp32)."""
    projected, audio_term, maps = projected.contiguous(), audio_term.contiguous(), maps.contiguous()
    rows, locations, channels = maps.shape
    block_l, block_d = tile_blocks(projected)
    attended = maps.new_empty(rows, channels)
    attention = torch.empty(rows, locations, device=maps.device, dtype=torch.float32)
    attention_forward_kernel[(rows,)](
        projected, audio_term, score_weight.contiguous(), maps, attended, attention, locations, projected.shape[2],
        channels, BLOCK_L=block_l, BLOCK_D=block_d, BLOCK_C=CHANNEL_BLOCK,
    )
    return attended, attention


@audio_guided_attention_forward.register_fake
def _(projected, audio_term, score_weight, maps):
    tile_blocks(projected)
    return maps.new_empty(maps.shape[0], maps.shape[2]), maps.new_empty(maps.shape[:2], dtype=torch.float32)


@torch.library.custom_op("avel_fast::audio_guided_attention_backward", mutates_args=())
def audio_guided_attention_backward(
    grad_attended: torch.Tensor | None, grad_attention: torch.Tensor | None, projected: torch.Tensor,
    audio_term: torch.Tensor, score_weight: torch.Tensor, maps: torch.Tensor, attention: torch.Tensor,
    grad_maps: bool,
) -> list[torch.Tensor]:
    """``[dP, dg, dw_f]`` from the gradients of ``f`` and ``α`` (either may be None), then ``dV`` when `grad_maps`
    and ``f`` has a gradient (the maps' gradient is neither computed nor written otherwise)."""
    projected, audio_term, maps = projected.contiguous(), audio_term.contiguous(), maps.contiguous()
    rows, locations, channels = maps.shape
    dim = projected.shape[2]
    block_l, block_d = tile_blocks(projected)
    grad_maps = grad_maps and grad_attended is not None
    grad_v = torch.empty_like(maps) if grad_maps else attention
    grad_projected = torch.empty_like(projected)
    grad_audio = torch.empty_like(audio_term)
    grad_weight = torch.empty(rows, dim, device=maps.device, dtype=torch.float32)
    attention_backward_kernel[(rows,)](
        grad_attended.contiguous() if grad_attended is not None else attention,
        grad_attention.contiguous() if grad_attention is not None else attention,
        projected, audio_term, score_weight.contiguous(), maps, attention,
        grad_v, grad_projected, grad_audio, grad_weight, locations, dim, channels,
        HAS_GRAD_ATTENDED=grad_attended is not None, HAS_GRAD_ATTENTION=grad_attention is not None,
        GRAD_MAPS=grad_maps, BLOCK_L=block_l, BLOCK_D=block_d, BLOCK_C=CHANNEL_BLOCK,
    )
    grads = [grad_projected, grad_audio, grad_weight.sum(0).to(score_weight.dtype)]
    return grads + [grad_v] if grad_maps else grads


@audio_guided_attention_backward.register_fake
def _(grad_attended, grad_attention, projected, audio_term, score_weight, maps, attention, grad_maps):
    grads = [torch.empty_like(projected, memory_format=torch.contiguous_format),
             torch.empty_like(audio_term, memory_format=torch.contiguous_format), torch.empty_like(score_weight)]
    return grads + [torch.empty_like(maps, memory_format=torch.contiguous_format)] \
        if grad_maps and grad_attended is not None else grads


def _setup_context(ctx, inputs, output):
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*inputs, output[1])


def _backward(ctx, grad_attended, grad_attention):
    grad_maps = ctx.needs_input_grad[3]
    grads = audio_guided_attention_backward(grad_attended, grad_attention, *ctx.saved_tensors, grad_maps)
    return *grads[:3], grads[3] if len(grads) == 4 else None


audio_guided_attention_forward.register_autograd(_backward, setup_context=_setup_context)
