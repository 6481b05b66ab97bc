"""Fused RGCT attention in Triton (DPNet eqs. 13-16; docs/fast-path.md#kernels): neighbourhood shifts, 6×6
attention, relation average, dropout and the residual add with ``Swish(x W_1ᵀ + b_1)``, forward and backward.

The dense projections stay GEMMs in PyTorch (`rgct_triton`): one of width 7·D for the six query polymorphs and
``W_1``, and one batched GEMM that projects the group means ``X̄`` of each source modality to the keys and
values of the three relations it feeds (`SOURCE_RELATIONS`), once per link group and time step. One program
of `_attention_forward` handles the G linked videos of one (group, modality, time): it reaches the three
existing neighbourhoods of its nodes by shifting along time and modality inside the projections (no per-node
key/value tensor exists), uses the biases for the empty ones, and computes ``NĀ = (mean_r A) V``.

Dropout draws its mask in the kernel with ``tl.rand(seed, node·D + d)`` and the backward draws it again from
the same seed; the mask therefore differs from the one ``torch.nn.functional.dropout`` would draw (the seed
itself comes from torch's generator, so ``torch.manual_seed`` makes runs repeatable). Launches use one fixed
configuration (`launch_config`, no autotuning), the same under ``TRITON_INTERPRET=1`` and on the GPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from avel_fast.reference import rgct as reference

SOURCE_RELATIONS = ((0, 1, 4), (2, 3, 5))
"""Per source modality (A, V): the relations its group mean feeds, as (own forward, own backward, cross):
audio feeds Af (to A_{t+1}), Ab (to A_{t-1}), AV (to V_t); visual feeds Vf, Vb, VA. The projections hold the
keys of these three, then their values: ``[2, B/G, T, 6, D]``."""

SLOTS = 8  # the six relations padded to a power of two
ELEMENTS_PER_PROGRAM = 8192  # bound on the [rows, slots, BLOCK_D] products a program holds


@triton.jit
def _neighbour_rows(group, modality, time, num_groups, steps):
    """Per relation slot: the row of the projections holding its key (value: +3), and whether it exists.

    Node (modality m, time t) receives its own modality's forward relation (slot 2m) from t-1, backward
    (2m+1) from t+1 and the cross relation (slot 5-m) from the other modality at t (the table of docs/models.md#rgct).
    """
    slot = tl.arange(0, 8)
    forward = slot == 2 * modality
    backward = slot == 2 * modality + 1
    cross = slot == 5 - modality
    source_modality = tl.where(cross, 1 - modality, modality)
    source_time = tl.where(forward, time - 1, tl.where(backward, time + 1, time))
    exists = (forward | backward | cross) & (source_time >= 0) & (source_time < steps)
    source_time = tl.minimum(tl.maximum(source_time, 0), steps - 1)
    column = tl.where(forward, 0, tl.where(backward, 1, 2))
    row = ((source_modality * num_groups + group) * steps + source_time) * 6 + column
    return row, exists


@triton.jit(do_not_specialize=["seed"])
def _attention_forward(
    wide_ptr, proj_ptr, key_bias_ptr, value_bias_ptr, out_ptr, attention_ptr,
    num_groups, steps, dim, group_size, scale, seed, drop_p, drop_scale,
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
    key_row, exists = _neighbour_rows(group, modality, time, num_groups, steps)
    member = tl.arange(0, BLOCK_G)
    member_ok = member < group_size
    member_node = ((group * group_size + member) * 2 + modality) * steps + time
    width = 7 * dim

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


@triton.jit(do_not_specialize=["seed"])
def _attention_backward(
    grad_ptr, wide_ptr, proj_ptr, key_bias_ptr, value_bias_ptr, attention_ptr,
    grad_wide_ptr, grad_proj_ptr, grad_scores_ptr, grad_aggregated_ptr,
    num_groups, steps, dim, group_size, scale, seed, drop_p, drop_scale,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, DROPOUT: tl.constexpr,
):
    """Backward of `_attention_forward` for one (group, modality, time).

    Writes the gradients of the queries and of the ``W_1`` pre-activation (into `grad_wide`), of the keys and
    values of the existing neighbourhoods (each projection row is read, hence written, by exactly one
    program: no atomics), the score gradients ``∂L/∂S·scale`` and ``∂L/∂NĀ`` (for the bias gradients).
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
    key_row, exists = _neighbour_rows(group, modality, time, num_groups, steps)
    member = tl.arange(0, BLOCK_G)
    member_ok = member < group_size
    member_node = ((group * group_size + member) * 2 + modality) * steps + time
    width = 7 * dim

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
        neighbour_mask = exists[:, None] & d_ok[None, :]
        grad_key = tl.sum(grad_scores[:, :, None] * query[:, None, :], axis=0)
        tl.store(grad_proj_ptr + key_row[:, None] * dim + d[None, :], grad_key, mask=neighbour_mask)
        grad = tl.load(grad_ptr + member_node[:, None] * dim + d[None, :], mask=member_ok[:, None] & d_ok[None, :],
                       other=0.0).to(tl.float32)
        if DROPOUT:
            keep = tl.rand(seed, member_node[:, None] * dim + d[None, :]) >= drop_p
            grad = tl.where(keep, grad * drop_scale, 0.0)
        grad_value = tl.sum(weights[:, :, None] * grad[:, None, :], axis=0)
        tl.store(grad_proj_ptr + (key_row + 3)[:, None] * dim + d[None, :], grad_value, mask=neighbour_mask)


def launch_config(group_size: int, dim: int) -> tuple[int, int]:
    """``(BLOCK_G, BLOCK_D)``: the group padded to a power of two, and the widest D chunk whose
    ``[BLOCK_G·8, 8, BLOCK_D]`` products stay within `ELEMENTS_PER_PROGRAM`."""
    block_group = triton.next_power_of_2(group_size)
    block_dim = max(16, min(triton.next_power_of_2(dim), ELEMENTS_PER_PROGRAM // (block_group * SLOTS * SLOTS)))
    return block_group, block_dim


def launch_forward(wide, projections, key_bias, value_bias, group_size, seed, drop_p):
    """Run `_attention_forward`: ``(z [B, 2, T, D] in the dtype of wide, attention [B, 2, T, 6, 6] float32)``."""
    batch, _, steps, width = wide.shape
    dim, groups = width // 7, batch // group_size
    out = wide.new_empty(batch, 2, steps, dim)
    attention = torch.empty(batch, 2, steps, 6, 6, dtype=torch.float32, device=wide.device)
    block_group, block_dim = launch_config(group_size, dim)
    _attention_forward[(groups * 2 * steps,)](
        wide, projections, key_bias, value_bias, out, attention,
        groups, steps, dim, group_size, 1 / math.sqrt(dim), seed, drop_p, dropout_scale(drop_p),
        BLOCK_G=block_group, BLOCK_D=block_dim, DROPOUT=drop_p > 0,
    )
    return out, attention


def launch_backward(grad, wide, projections, key_bias, value_bias, attention, group_size, seed, drop_p):
    """Run `_attention_backward`: gradients of `wide` and `projections`, then ``∂L/∂S·scale`` and ``∂L/∂NĀ``
    (float32, for the bias gradients)."""
    batch, _, steps, width = wide.shape
    dim, groups = width // 7, batch // group_size
    grad_wide = torch.empty_like(wide)
    grad_projections = torch.zeros_like(projections)  # rows no node reads keep a zero gradient
    grad_scores = torch.empty_like(attention)
    grad_aggregated = torch.empty(batch, 2, steps, dim, dtype=torch.float32, device=wide.device)
    block_group, block_dim = launch_config(group_size, dim)
    _attention_backward[(groups * 2 * steps,)](
        grad, wide, projections, key_bias, value_bias, attention,
        grad_wide, grad_projections, grad_scores, grad_aggregated,
        groups, steps, dim, group_size, 1 / math.sqrt(dim), seed, drop_p, dropout_scale(drop_p),
        BLOCK_G=block_group, BLOCK_D=block_dim, DROPOUT=drop_p > 0,
    )
    return grad_wide, grad_projections, grad_scores, grad_aggregated


def dropout_scale(drop_p: float) -> float:
    """The factor kept entries are multiplied by: ``1/(1-p)``, and 0 when everything is dropped (p = 1)."""
    return 1.0 / (1.0 - drop_p) if drop_p < 1 else 0.0


class RelationalAttention(torch.autograd.Function):
    """``z = Swish(x W_1ᵀ + b_1) + Dropout(NĀ)`` from the GEMM outputs, by the Triton kernels above.

    Inputs: `wide` ``[B, 2, T, 7·D]`` (queries, then the ``W_1`` pre-activation), `projections`
    ``[2, B/G, T, 6, D]`` (keys then values of `SOURCE_RELATIONS`, no bias), `key_bias` / `value_bias`
    ``[6, D]``. Output ``[B, 2, T, D]`` in the dtype of `wide`; the kernels compute in float32.
    """

    @staticmethod
    def forward(ctx, wide, projections, key_bias, value_bias, group_size, drop_p):
        inputs = [tensor.contiguous() for tensor in (wide, projections, key_bias, value_bias)]
        seed = int(torch.randint(2**31 - 1, ())) if drop_p > 0 else 0
        out, attention = launch_forward(*inputs, group_size, seed, drop_p)
        ctx.save_for_backward(*inputs, attention)
        ctx.config = (group_size, seed, drop_p)
        return out

    @staticmethod
    def backward(ctx, grad):
        wide, projections, key_bias, value_bias, attention = ctx.saved_tensors
        grad_wide, grad_projections, grad_scores, grad_aggregated = launch_backward(
            grad.contiguous(), wide, projections, key_bias, value_bias, attention, *ctx.config
        )
        dim = key_bias.shape[1]
        queries = wide[..., : 6 * dim].reshape(-1, 6, dim).float()
        grad_key_bias = torch.einsum("nqr,nqd->rd", grad_scores.view(-1, 6, 6), queries)
        weights = attention.view(-1, 6, 6).mean(dim=1)  # mean_r A
        grad_value_bias = weights.t() @ grad_aggregated.view(-1, dim)
        return (grad_wide, grad_projections, grad_key_bias.to(key_bias.dtype),
                grad_value_bias.to(value_bias.dtype), None, None)


def source_projections(module: reference.RGCT, x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[2, B/G, T, 6, D]``: ``X̄ W_k[r]ᵀ`` then ``X̄ W_v[r]ᵀ`` for the relations r of `SOURCE_RELATIONS`,
    per source modality, group and time step (no bias): one batched GEMM of width 6·D."""
    batch, _, steps, in_dim = x.shape
    groups, out_dim = batch // group_size, module.out_dim
    means = x.view(groups, group_size, 2, steps, in_dim).mean(dim=1).transpose(0, 1)  # [2, B/G, T, D_in]
    relations = torch.tensor(SOURCE_RELATIONS, device=x.device)
    weight = torch.cat(
        [module.k.weight.view(6, out_dim, in_dim)[relations], module.v.weight.view(6, out_dim, in_dim)[relations]],
        dim=1,
    )  # [2, 6, D, D_in]
    projected = torch.bmm(means.reshape(2, groups * steps, in_dim), weight.view(2, -1, in_dim).transpose(1, 2))
    return projected.view(2, groups, steps, 6, out_dim)


@torch.compiler.disable
def rgct_triton(module: reference.RGCT, x: torch.Tensor, group_size: int) -> torch.Tensor:
    """The Triton path of `avel_fast.nn.RGCT.forward` (a graph break under `torch.compile`)."""
    wide = F.linear(
        x, torch.cat([module.q.weight, module.w1.weight]), torch.cat([module.q.bias, module.w1.bias])
    )
    projections = source_projections(module, x, group_size)
    update = RelationalAttention.apply(
        wide,
        projections,
        module.k.bias.view(6, module.out_dim),
        module.v.bias.view(6, module.out_dim),
        group_size,
        module.dropout.p if module.training else 0.0,
    )
    return F.silu(module.w2(update))
