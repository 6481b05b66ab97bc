"""Fused RGCT attention in Triton (DPNet eqs. 13-16; docs/fast-path.md#kernels): neighbourhood shifts, 6×6
attention, relation average, dropout and the residual add with ``Swish(x W_1ᵀ + b_1)``, forward and backward.

The dense projections stay GEMMs in PyTorch (`rgct_forward`): two into the halves of one width-7·D output for the
six query polymorphs and ``W_1``, and four batched GEMMs that project the group means ``X̄`` of each source
modality to the keys and values of the three relations it feeds (`SOURCE_RELATIONS`, `projection_blocks`),
once per link group and time step, reading the weights in place. One program
of `_attention_forward` handles the G linked videos of one (group, modality, time): it reaches the three
existing neighbourhoods of its nodes by shifting along time and modality inside the projections (no per-node
key/value tensor exists), uses the biases for the empty ones, and computes ``NĀ = (mean_r A) V``.

Dropout draws its mask in the kernel with ``tl.rand(seed, node·D + d)`` and the backward draws it again from
the same seed; the mask therefore differs from the one ``torch.nn.functional.dropout`` would draw (the seed
itself is drawn as a device tensor from the generator of the input's device, so ``torch.manual_seed`` makes runs
repeatable and no value is read back). Launches use one fixed configuration (`launch_config`, no autotuning;
``AVEL_FAST_RGCT_LAUNCH`` picks another), the same under ``TRITON_INTERPRET=1`` and on the GPU.

Both directions are PyTorch custom operators (``avel_fast::rgct_forward`` / ``avel_fast::rgct_backward``, with
fake implementations and a registered autograd formula), so `torch.compile` captures the layer whole.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


SOURCE_RELATIONS = ((0, 1, 4), (2, 3, 5))
"""Per source modality (A, V): the relations its group mean feeds, as (own forward, own backward, cross):
audio feeds Af (to A_{t+1}), Ab (to A_{t-1}), AV (to V_t); visual feeds Vf, Vb, VA. The projections hold the
keys of these three, then their values: ``[2, B/G, T, 6, D]``."""

SLOTS = 8  # the six relations padded to a power of two
LAUNCH_ENV = "AVEL_FAST_RGCT_LAUNCH"
DEFAULT_LAUNCH = (2048, 4)
"""``(elements, num_warps)``: the bound on the ``[BLOCK_G·8, 8, BLOCK_D]`` products a program holds, and its
warps. ``AVEL_FAST_RGCT_LAUNCH=elements,warps`` overrides it (docs/fast-path.md#env); at the paper shapes
(sm_90, D = 768, bf16) 2048,4 keeps both kernels at <= 82 registers and >= 5 CTAs per SM for G = 1 and 2, where the
former 8192,4 took up to 167 registers (3 CTAs per SM)."""


@triton.jit
def _neighbour_rows(group, modality, time, num_groups, steps):
    """Per relation slot: the row of the projections holding its key (value: +3), whether it exists, and whether
    the slot is one of the node's three relations.

    Node (modality m, time t) receives its own modality's forward relation (slot 2m) from t-1, backward
    (2m+1) from t+1 and the cross relation (slot 5-m) from the other modality at t (the table of docs/models.md#rgct).
    A missing temporal neighbour (t = 0 forward, t = T-1 backward) wraps around to the one row of its column
    that no node reads (the forward key of T-1, the backward key of 0): the backward zeroes it there.
    """
    slot = tl.arange(0, 8)
    forward = slot == 2 * modality
    backward = slot == 2 * modality + 1
    cross = slot == 5 - modality
    source_modality = tl.where(cross, 1 - modality, modality)
    source_time = tl.where(forward, time - 1, tl.where(backward, time + 1, time))
    own = forward | backward | cross
    exists = own & (source_time >= 0) & (source_time < steps)
    source_time = (source_time + steps) % steps
    column = tl.where(forward, 0, tl.where(backward, 1, 2))
    row = ((source_modality * num_groups + group) * steps + source_time) * 6 + column
    return row, exists, own


@triton.jit
def _attention_forward(
    wide_ptr, proj_ptr, key_bias_ptr, value_bias_ptr, seed_ptr, out_ptr, attention_ptr,
    num_groups, steps, dim, group_size, scale, drop_p, drop_scale,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, DROPOUT: tl.constexpr,
):
    """One program per (group, modality, time): ``z = Swish(pre) + Dropout(NĀ)`` for its G nodes."""
    pid = tl.program_id(0)
    time = pid % steps
    modality = (pid // steps) % 2
    group = pid // (2 * steps)
    row = tl.arange(0, BLOCK_G * 8)  # (video of the group, query polymorph)
    video, polymorph = row // 8, row % 8
    row_ok = (video < group_size) & (polymorph < 6)
    row_node = ((group * group_size + video) * 2 + modality) * steps + time
    slot = tl.arange(0, 8)
    key_row, exists, _ = _neighbour_rows(group, modality, time, num_groups, steps)
    member = tl.arange(0, BLOCK_G)
    member_ok = member < group_size
    member_node = ((group * group_size + member) * 2 + modality) * steps + time
    width = 7 * dim
    if DROPOUT:
        seed = tl.load(seed_ptr)

    scores = tl.zeros((BLOCK_G * 8, 8), dtype=tl.float32)
    for start in range(0, dim, BLOCK_D):
        d = start + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        query = tl.load(wide_ptr + row_node[:, None] * width + polymorph[:, None] * dim + d[None, :],
                        mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        key = tl.load(key_bias_ptr + slot[:, None] * dim + d[None, :],
                      mask=(slot < 6)[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        key += tl.load(proj_ptr + key_row[:, None] * dim + d[None, :],
                       mask=exists[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        scores += tl.sum(query[:, None, :] * key[None, :, :], axis=2)
    scores = tl.where((slot < 6)[None, :], scores * scale, float("-inf"))
    scores = scores - tl.max(scores, axis=1)[:, None]
    attention = tl.exp(scores)
    attention = attention / tl.sum(attention, axis=1)[:, None]
    tl.store(attention_ptr + row_node[:, None] * 36 + polymorph[:, None] * 6 + slot[None, :], attention,
             mask=row_ok[:, None] & (slot < 6)[None, :])
    membership = (video[None, :] == member[:, None]) & row_ok[None, :]  # [BLOCK_G, rows]
    weights = tl.sum(tl.where(membership[:, :, None], attention[None, :, :], 0.0), axis=1) / 6  # mean_r A

    for start in range(0, dim, BLOCK_D):
        d = start + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        value = tl.load(value_bias_ptr + slot[:, None] * dim + d[None, :],
                        mask=(slot < 6)[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        value += tl.load(proj_ptr + (key_row + 3)[:, None] * dim + d[None, :],
                         mask=exists[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        aggregated = tl.sum(weights[:, :, None] * value[None, :, :], axis=1)  # [BLOCK_G, BLOCK_D]
        io_mask = member_ok[:, None] & d_ok[None, :]
        pre = tl.load(wide_ptr + member_node[:, None] * width + 6 * dim + d[None, :], mask=io_mask,
                      other=0.0).to(tl.float32)
        if DROPOUT:
            keep = tl.rand(seed, member_node[:, None] * dim + d[None, :]) >= drop_p
            aggregated = tl.where(keep, aggregated * drop_scale, 0.0)
        update = pre * tl.sigmoid(pre) + aggregated
        tl.store(out_ptr + member_node[:, None] * dim + d[None, :], update, mask=io_mask)


@triton.jit
def _attention_backward(
    grad_ptr, wide_ptr, proj_ptr, key_bias_ptr, value_bias_ptr, seed_ptr, attention_ptr,
    grad_wide_ptr, grad_proj_ptr, grad_scores_ptr, grad_aggregated_ptr,
    num_groups, steps, dim, group_size, scale, drop_p, drop_scale,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, DROPOUT: tl.constexpr,
):
    """Backward of `_attention_forward` for one (group, modality, time).

    Writes the gradients of the queries and of the ``W_1`` pre-activation (into `grad_wide`), of the keys and
    values (each projection row is read by exactly one program, which writes its gradient, or by none, and then
    the program its missing neighbour wraps to writes 0: every row once, no atomics, no zero fill), the score
    gradients ``∂L/∂S·scale`` and ``∂L/∂NĀ`` (for the bias gradients).
    """
    pid = tl.program_id(0)
    time = pid % steps
    modality = (pid // steps) % 2
    group = pid // (2 * steps)
    row = tl.arange(0, BLOCK_G * 8)
    video, polymorph = row // 8, row % 8
    row_ok = (video < group_size) & (polymorph < 6)
    row_node = ((group * group_size + video) * 2 + modality) * steps + time
    slot = tl.arange(0, 8)
    key_row, exists, own = _neighbour_rows(group, modality, time, num_groups, steps)
    member = tl.arange(0, BLOCK_G)
    member_ok = member < group_size
    member_node = ((group * group_size + member) * 2 + modality) * steps + time
    width = 7 * dim
    if DROPOUT:
        seed = tl.load(seed_ptr)

    attention = tl.load(attention_ptr + row_node[:, None] * 36 + polymorph[:, None] * 6 + slot[None, :],
                        mask=row_ok[:, None] & (slot < 6)[None, :], other=0.0)
    membership = (video[None, :] == member[:, None]) & row_ok[None, :]  # [BLOCK_G, rows]
    weights = tl.sum(tl.where(membership[:, :, None], attention[None, :, :], 0.0), axis=1) / 6

    grad_weights = tl.zeros((BLOCK_G, 8), dtype=tl.float32)
    for start in range(0, dim, BLOCK_D):
        d = start + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        io_mask = member_ok[:, None] & d_ok[None, :]
        grad = tl.load(grad_ptr + member_node[:, None] * dim + d[None, :], mask=io_mask, other=0.0).to(tl.float32)
        pre = tl.load(wide_ptr + member_node[:, None] * width + 6 * dim + d[None, :], mask=io_mask,
                      other=0.0).to(tl.float32)
        gate = tl.sigmoid(pre)
        tl.store(grad_wide_ptr + member_node[:, None] * width + 6 * dim + d[None, :],
                 grad * gate * (1 + pre * (1 - gate)), mask=io_mask)
        if DROPOUT:
            keep = tl.rand(seed, member_node[:, None] * dim + d[None, :]) >= drop_p
            grad = tl.where(keep, grad * drop_scale, 0.0)
        tl.store(grad_aggregated_ptr + member_node[:, None] * dim + d[None, :], grad, mask=io_mask)
        value = tl.load(value_bias_ptr + slot[:, None] * dim + d[None, :],
                        mask=(slot < 6)[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        value += tl.load(proj_ptr + (key_row + 3)[:, None] * dim + d[None, :],
                         mask=exists[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        grad_weights += tl.sum(grad[:, None, :] * value[None, :, :], axis=2)

    grad_attention = tl.sum(tl.where(membership[:, :, None], grad_weights[:, None, :], 0.0), axis=0) / 6
    grad_scores = attention * (grad_attention - tl.sum(attention * grad_attention, axis=1)[:, None]) * scale
    grad_scores = tl.where(row_ok[:, None] & (slot < 6)[None, :], grad_scores, 0.0)
    tl.store(grad_scores_ptr + row_node[:, None] * 36 + polymorph[:, None] * 6 + slot[None, :], grad_scores,
             mask=row_ok[:, None] & (slot < 6)[None, :])

    for start in range(0, dim, BLOCK_D):
        d = start + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        query_mask = row_ok[:, None] & d_ok[None, :]
        query = tl.load(wide_ptr + row_node[:, None] * width + polymorph[:, None] * dim + d[None, :],
                        mask=query_mask, other=0.0).to(tl.float32)
        key = tl.load(key_bias_ptr + slot[:, None] * dim + d[None, :],
                      mask=(slot < 6)[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        key += tl.load(proj_ptr + key_row[:, None] * dim + d[None, :],
                       mask=exists[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        grad_query = tl.sum(grad_scores[:, :, None] * key[None, :, :], axis=1)
        tl.store(grad_wide_ptr + row_node[:, None] * width + polymorph[:, None] * dim + d[None, :], grad_query,
                 mask=query_mask)
        neighbour_mask = own[:, None] & d_ok[None, :]
        grad_key = tl.sum(grad_scores[:, :, None] * query[:, None, :], axis=0)
        grad_key = tl.where(exists[:, None], grad_key, 0.0)
        tl.store(grad_proj_ptr + key_row[:, None] * dim + d[None, :], grad_key, mask=neighbour_mask)
        grad = tl.load(grad_ptr + member_node[:, None] * dim + d[None, :], mask=member_ok[:, None] & d_ok[None, :],
                       other=0.0).to(tl.float32)
        if DROPOUT:
            keep = tl.rand(seed, member_node[:, None] * dim + d[None, :]) >= drop_p
            grad = tl.where(keep, grad * drop_scale, 0.0)
        grad_value = tl.where(exists[:, None], tl.sum(weights[:, :, None] * grad[:, None, :], axis=0), 0.0)
        tl.store(grad_proj_ptr + (key_row + 3)[:, None] * dim + d[None, :], grad_value, mask=neighbour_mask)


def launch_setting() -> tuple[int, int]:
    """``(elements, num_warps)`` from ``AVEL_FAST_RGCT_LAUNCH`` or `DEFAULT_LAUNCH`; ValueError if malformed."""
    value = os.environ.get(LAUNCH_ENV, "").strip()
    if not value:
        return DEFAULT_LAUNCH
    parts = value.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"{LAUNCH_ENV} must be 'elements,warps' (e.g. 2048,4), got {value!r}")
    elements, warps = (int(part) for part in parts)
    if elements < 1024 or elements & (elements - 1) or warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"{LAUNCH_ENV}: elements must be a power of two >= 1024 and warps 1, 2, 4, 8 or 16, "
                         f"got {value!r}")
    return elements, warps


def launch_config(group_size: int, dim: int) -> dict[str, int]:
    """``BLOCK_G`` (the group padded to a power of two), ``BLOCK_D`` (the widest D chunk whose
    ``[BLOCK_G·8, 8, BLOCK_D]`` products stay within the `launch_setting` bound, >= 16) and ``num_warps``."""
    elements, warps = launch_setting()
    block_group = triton.next_power_of_2(group_size)
    block_dim = max(16, min(triton.next_power_of_2(dim), elements // (block_group * SLOTS * SLOTS)))
    return {"BLOCK_G": block_group, "BLOCK_D": block_dim, "num_warps": warps}


def launch_forward(wide, projections, key_bias, value_bias, seed, group_size, drop_p):
    """Run `_attention_forward`: ``(z [B, 2, T, D] in the dtype of wide, attention [B, 2, T, 6, 6] float32)``."""
    batch, _, steps, width = wide.shape
    dim, groups = width // 7, batch // group_size
    out = wide.new_empty(batch, 2, steps, dim)
    attention = torch.empty(batch, 2, steps, 6, 6, dtype=torch.float32, device=wide.device)
    _attention_forward[(groups * 2 * steps,)](
        wide, projections, key_bias, value_bias, seed, out, attention,
        groups, steps, dim, group_size, 1 / math.sqrt(dim), drop_p, dropout_scale(drop_p),
        DROPOUT=drop_p > 0, **launch_config(group_size, dim),
    )
    return out, attention


def launch_backward(grad, wide, projections, key_bias, value_bias, seed, attention, group_size, drop_p):
    """Run `_attention_backward`: gradients of `wide` and `projections`, then ``∂L/∂S·scale`` and ``∂L/∂NĀ``
    (float32, for the bias gradients)."""
    batch, _, steps, width = wide.shape
    dim, groups = width // 7, batch // group_size
    grad_wide = torch.empty_like(wide)
    grad_projections = torch.empty_like(projections)
    grad_scores = torch.empty_like(attention)
    grad_aggregated = torch.empty(batch, 2, steps, dim, dtype=torch.float32, device=wide.device)
    _attention_backward[(groups * 2 * steps,)](
        grad, wide, projections, key_bias, value_bias, seed, attention,
        grad_wide, grad_projections, grad_scores, grad_aggregated,
        groups, steps, dim, group_size, 1 / math.sqrt(dim), drop_p, dropout_scale(drop_p),
        DROPOUT=drop_p > 0, **launch_config(group_size, dim),
    )
    return grad_wide, grad_projections, grad_scores, grad_aggregated


def dropout_scale(drop_p: float) -> float:
    """The factor kept entries are multiplied by: ``1/(1-p)``, and 0 when everything is dropped (p = 1)."""
    return 1.0 / (1.0 - drop_p) if drop_p < 1 else 0.0


def group_means(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``X̄`` ``[2, B/G·T, D_in]`` of a contiguous ``[B, 2, T, D_in]``: per source modality, group and time step."""
    batch, _, steps, in_dim = x.shape
    grouped = x.view(batch // group_size, group_size, 2, steps, in_dim).mean(dim=1)
    return grouped.transpose(0, 1).reshape(2, -1, in_dim)


def projection_blocks(key: torch.Tensor, value: torch.Tensor, dim: int) -> list[tuple[int, int, torch.Tensor]]:
    """The four GEMMs of the projections ``[2, B/G·T, 6·D]`` (`SOURCE_RELATIONS`): per block, its columns (in
    units of D) and the rows ``[2 sources, ·, D_in]`` of `key` / `value` (``[6·D, D_in]``) it multiplies, as views:
    the temporal keys (Af Ab | Vf Vb), the cross key (AV | VA), then the same for the values."""
    blocks = []
    for start, weight in ((0, key), (3, value)):
        blocks.append((start, start + 2, weight.view(3, 2 * dim, -1)[:2]))
        blocks.append((start + 2, start + 3, weight.view(6, dim, -1)[4:]))
    return blocks


@torch.library.custom_op("avel_fast::rgct_forward", mutates_args=())
def rgct_forward(
    x: torch.Tensor, q_weight: torch.Tensor, q_bias: torch.Tensor, k_weight: torch.Tensor, k_bias: torch.Tensor,
    v_weight: torch.Tensor, v_bias: torch.Tensor, w1_weight: torch.Tensor, w1_bias: torch.Tensor,
    seed: torch.Tensor, group_size: int, drop_p: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z = Swish(x W_1ᵀ + b_1) + Dropout(NĀ)`` ``[B, 2, T, D]`` of the RGCT layer (eqs. 13-15), then what its
    backward reads: `wide` ``[B, 2, T, 7·D]`` (queries, then the ``W_1`` pre-activation), the projections
    ``[2, B/G, T, 6, D]`` (keys then values of `SOURCE_RELATIONS`, no bias) and the attention ``[B, 2, T, 6, 6]``.

    The GEMMs write into their slices of `wide` and of the projections and read the weights in place (no
    concatenated or gathered weight); `seed` (an int64 device tensor) seeds the dropout mask.
    """
    x = x.contiguous()
    batch, _, steps, in_dim = x.shape
    dim = w1_weight.shape[0]
    nodes = x.view(-1, in_dim)
    wide = x.new_empty(batch, 2, steps, 7 * dim)
    wide_rows = wide.view(-1, 7 * dim)
    torch.addmm(q_bias, nodes, q_weight.t(), out=wide_rows[:, : 6 * dim])
    torch.addmm(w1_bias, nodes, w1_weight.t(), out=wide_rows[:, 6 * dim :])
    means = group_means(x, group_size)
    projections = x.new_empty(2, batch // group_size, steps, 6, dim)
    projection_rows = projections.view(2, -1, 6 * dim)
    for start, stop, weight in projection_blocks(k_weight, v_weight, dim):
        torch.bmm(means, weight.transpose(1, 2), out=projection_rows[..., start * dim : stop * dim])
    update, attention = launch_forward(
        wide, projections, k_bias.view(6, dim), v_bias.view(6, dim), seed, group_size, drop_p
    )
    return update, wide, projections, attention


@rgct_forward.register_fake
def _(x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, w1_weight, w1_bias, seed, group_size, drop_p):
    batch, _, steps, _ = x.shape
    dim = w1_weight.shape[0]
    return (
        x.new_empty(batch, 2, steps, dim),
        x.new_empty(batch, 2, steps, 7 * dim),
        x.new_empty(2, batch // group_size, steps, 6, dim),
        x.new_empty(batch, 2, steps, 6, 6, dtype=torch.float32),
    )


@torch.library.custom_op("avel_fast::rgct_backward", mutates_args=())
def rgct_backward(
    grad: torch.Tensor, x: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, k_bias: torch.Tensor,
    v_weight: torch.Tensor, v_bias: torch.Tensor, w1_weight: torch.Tensor, wide: torch.Tensor,
    projections: torch.Tensor, attention: torch.Tensor, seed: torch.Tensor, group_size: int, drop_p: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor, torch.Tensor]:
    """Gradients of `rgct_forward`'s ``z`` with respect to x, W_q, b_q, W_k, b_k, W_v, b_v, W_1, b_1.

    Every weight gradient is written block by block by the GEMMs (no zero fill, no scatter): the projection
    blocks of `projection_blocks` cover the rows of ``W_k`` and ``W_v`` once each.
    """
    x = x.contiguous()
    batch, _, steps, in_dim = x.shape
    dim = w1_weight.shape[0]
    grad_wide, grad_projections, grad_scores, grad_aggregated = launch_backward(
        grad.contiguous(), wide, projections, k_bias.view(6, dim), v_bias.view(6, dim), seed, attention,
        group_size, drop_p,
    )
    nodes = x.view(-1, in_dim)
    grad_rows = grad_wide.view(-1, 7 * dim)
    grad_query, grad_pre = grad_rows[:, : 6 * dim], grad_rows[:, 6 * dim :]
    grad_nodes = grad_query @ q_weight
    grad_nodes.addmm_(grad_pre, w1_weight)

    means = group_means(x, group_size)
    grad_projection_rows = grad_projections.view(2, -1, 6 * dim)
    grad_k_weight, grad_v_weight = torch.empty_like(k_weight), torch.empty_like(v_weight)
    grad_means = torch.zeros_like(means)
    for (start, stop, weight), (_, _, grad_weight) in zip(
        projection_blocks(k_weight, v_weight, dim), projection_blocks(grad_k_weight, grad_v_weight, dim)
    ):
        block = grad_projection_rows[..., start * dim : stop * dim]
        torch.bmm(block.transpose(1, 2), means, out=grad_weight)
        grad_means.baddbmm_(block, weight)
    groups = batch // group_size
    grad_x = grad_nodes.view(groups, group_size, 2, steps, in_dim)
    grad_x += grad_means.view(2, groups, 1, steps, in_dim).permute(1, 2, 0, 3, 4) / group_size

    queries = wide[..., : 6 * dim].reshape(-1, 6, dim).float()
    grad_k_bias = torch.einsum("nqr,nqd->rd", grad_scores.view(-1, 6, 6), queries)
    weights = attention.view(-1, 6, 6).mean(dim=1)  # mean_r A
    grad_v_bias = weights.t() @ grad_aggregated.view(-1, dim)
    return (
        grad_x.view(batch, 2, steps, in_dim), grad_query.t() @ nodes, grad_query.sum(0),
        grad_k_weight, grad_k_bias.view(-1).to(k_bias.dtype), grad_v_weight, grad_v_bias.view(-1).to(v_bias.dtype),
        grad_pre.t() @ nodes, grad_pre.sum(0),
    )


@rgct_backward.register_fake
def _(grad, x, q_weight, k_weight, k_bias, v_weight, v_bias, w1_weight, wide, projections, attention, seed,
      group_size, drop_p):
    dim = w1_weight.shape[0]
    return (
        torch.empty_like(x), torch.empty_like(q_weight), q_weight.new_empty(6 * dim), torch.empty_like(k_weight),
        torch.empty_like(k_bias), torch.empty_like(v_weight), torch.empty_like(v_bias), torch.empty_like(w1_weight),
        w1_weight.new_empty(dim),
    )


def _setup_context(ctx, inputs, output):
    x, q_weight, _, k_weight, k_bias, v_weight, v_bias, w1_weight, _, seed, group_size, drop_p = inputs
    _, wide, projections, attention = output
    ctx.save_for_backward(x, q_weight, k_weight, k_bias, v_weight, v_bias, w1_weight, wide, projections, attention,
                          seed)
    ctx.config = (group_size, drop_p)
    ctx.mark_non_differentiable(wide, projections, attention)


def _backward(ctx, grad, *_):
    return (*torch.ops.avel_fast.rgct_backward(grad, *ctx.saved_tensors, *ctx.config), None, None, None)


torch.library.register_autograd("avel_fast::rgct_forward", _backward, setup_context=_setup_context)


def rgct_triton(x: torch.Tensor, parameters: list[torch.Tensor], group_size: int, drop_p: float) -> torch.Tensor:
    """The Triton path of `avel_fast.nn.RGCT.forward`: `x` and the ten parameters of `reference.RGCT` (q, k, v,
    w1, w2; weight then bias) in one dtype, autocast off. Custom operators: `torch.compile` traces it whole."""
    seed = torch.randint(2**31 - 1, (), device=x.device) if drop_p > 0 else x.new_empty((), dtype=torch.int64)
    update = torch.ops.avel_fast.rgct_forward(x, *parameters[:8], seed, group_size, drop_p)[0]
    return F.silu(F.linear(update, *parameters[8:]))
