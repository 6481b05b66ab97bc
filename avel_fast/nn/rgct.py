"""User-facing RGCT (DPNet eqs. 12-21; docs/fast-path.md#kernels): the reference's parameters and `state_dict`,
computed with exact shortcuts.

The reference builds the neighbourhood table ``NA [B, 2, T, 6, D_in]`` and projects all six relations for
every node (cost per node ≈ 20·D·D_in). Three exact identities make that unnecessary:

* a relation with no incoming edge has ``NA_r = 0``, so its key/value is the bias ``b_{k,v}[r]``; the scores
  of the six queries against the six key biases, ``Q_q·b_k[r] = x·(W_q[q]ᵀ b_k[r]) + b_q[q]·b_k[r]``, are 36
  extra columns of the ``W_1`` GEMM;
* ``W·mean(x) = mean(W·x)``: every non-empty neighbourhood is a group mean ``X̄`` of one modality at t-1, t+1
  or t, so keys/values are projected once per link group and time step, relation r from its own shifted
  source ``X̄_r`` (Af: audio at t-1, Ab: audio at t+1, Vf/Vb: visual, AV: audio at t, VA: visual at t);
* ``mean_r(A V) = (mean_r A) V``: the six query rows collapse before the values are read.

The cost per node drops to ≈ (8 + 6/G)·D·D_in. The CPU path (`FusedRGCT`) runs the whole layer as one autograd
function with a hand-written backward, so that only the GEMMs touch memory at the size of the queries: nodes
are ordered (modality, group, time, video of the group), so one (modality, group, time) block of G·6 query rows
meets its keys in one batched product that reads the ``[6, B/G·T, D]`` relation projections in place.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avel_fast.backend import select_backend
from avel_fast.reference import rgct as reference
from avel_fast.reference.rgct import RELATIONS, check_graph_input

NUM_RELATIONS = len(RELATIONS)

OWN_RELATIONS = ((1, 1, 0, 0, 0, 1), (0, 0, 1, 1, 1, 0))
"""Per node modality (A, V): which relations can have incoming edges (audio: Af, Ab, VA; visual: Vf, Vb, AV);
the other three neighbourhoods are always empty, so their keys/values are the biases."""


OWN_RELATION_TENSORS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def own_relations(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`OWN_RELATIONS` as a ``[2, 6]`` tensor, built once per device and dtype (no host-to-device copy per step)."""
    if (device, dtype) not in OWN_RELATION_TENSORS:
        OWN_RELATION_TENSORS[device, dtype] = torch.tensor(OWN_RELATIONS, dtype=dtype, device=device)
    return OWN_RELATION_TENSORS[device, dtype]


def to_node_order(tensor: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B, 2, T, C] -> [2, B/G, T, G, C]`` (a view): modality, group, time, video of the group."""
    batch, _, steps, channels = tensor.shape
    grouped = tensor.view(batch // group_size, group_size, 2, steps, channels)
    return grouped.permute(2, 0, 3, 1, 4)


def from_node_order(tensor: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[2, B/G, T, G, C] -> [B, 2, T, C]`` (a view); inverse of `to_node_order`."""
    _, groups, steps, _, channels = tensor.shape
    return tensor.permute(1, 3, 0, 2, 4).reshape(groups * group_size, 2, steps, channels)


def relation_sources(means: torch.Tensor) -> torch.Tensor:
    """``[2, B/G, T, D_in] -> [6, B/G, T, D_in]``: the neighbourhood ``X̄_r`` of relation r seen from its
    receiving node at (group, time): audio/visual at t-1 (Af, Vf), at t+1 (Ab, Vb), audio (AV), visual (VA);
    0 where time runs out (the table of docs/models.md#rgct)."""
    sources = means.new_empty(NUM_RELATIONS, *means.shape[1:])
    temporal = sources[:4].unflatten(0, (2, 2))  # [modality, (forward, backward), B/G, T, D_in]
    temporal[:, 0, :, 1:] = means[:, :, :-1]
    temporal[:, 0, :, 0].zero_()
    temporal[:, 1, :, :-1] = means[:, :, 1:]
    temporal[:, 1, :, -1].zero_()
    sources[4:] = means
    return sources


def relation_sources_backward(grad: torch.Tensor) -> torch.Tensor:
    """The gradient of `relation_sources` with respect to its ``[2, B/G, T, D_in]`` group means."""
    means_grad = grad[4:].clone()
    temporal = grad[:4].unflatten(0, (2, 2))
    means_grad[:, :, :-1] += temporal[:, 0, :, 1:]
    means_grad[:, :, 1:] += temporal[:, 1, :, :-1]
    return means_grad


class FusedRGCT(torch.autograd.Function):
    """The RGCT layer (eqs. 12-16) on the CPU path: forward and a hand-written backward, exact algebra.

    Inputs: `x` ``[B, 2, T, D_in]``, `keep` (the dropout scale mask ``[B, 2, T, D]``, or None), the ten
    parameters of `reference.RGCT` and the group size; all in one dtype. Output ``[B, 2, T, D]``.
    """

    @staticmethod
    def forward(ctx, x, keep, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, w1_weight, w1_bias,
                w2_weight, w2_bias, group_size):
        batch, _, steps, in_dim = x.shape
        out_dim, groups = w2_weight.shape[0], batch // group_size
        pairs = groups * steps  # (group, time) positions per modality
        node_shape = (2, groups, steps, group_size, out_dim)

        # the GEMMs: keys and values per (group, time) and relation, queries, W_1 widened by the bias scores
        nodes = to_node_order(x, group_size).reshape(2 * pairs * group_size, in_dim)
        grouped = nodes.view(2, groups, steps, group_size, in_dim)
        means = grouped[:, :, :, 0] if group_size == 1 else grouped.mean(dim=3)
        sources = relation_sources(means).view(NUM_RELATIONS, pairs, in_dim)
        key_weight = k_weight.view(NUM_RELATIONS, out_dim, in_dim)
        keys = torch.bmm(sources, key_weight.transpose(1, 2))  # [6, pairs, D], without the bias
        values = torch.bmm(sources, v_weight.view(NUM_RELATIONS, out_dim, in_dim).transpose(1, 2))

        query = torch.addmm(q_bias, nodes, q_weight.t())  # [N, 6·D]
        key_bias = k_bias.view(NUM_RELATIONS, out_dim)
        bias_score_weight = torch.bmm(  # [6q, 6r, D_in]: W_q[q]ᵀ b_k[r]
            key_bias.expand(NUM_RELATIONS, -1, -1), q_weight.view(NUM_RELATIONS, out_dim, in_dim)
        )
        bias_score_bias = q_bias.view(NUM_RELATIONS, out_dim) @ key_bias.t()
        skip_weight = torch.cat([w1_weight, bias_score_weight.view(-1, in_dim)])
        skip = torch.addmm(torch.cat([w1_bias, bias_score_bias.view(-1)]), nodes, skip_weight.t())  # [N, D + 36]

        # eq. 13 on the existing neighbourhoods only, then (mean_r A) V of eq. 14 and the relation average
        small = torch.promote_types(x.dtype, torch.float32)  # dtype of the [nodes, 6, 6] attention tensors
        own = own_relations(x.device, small)
        query_blocks = query.view(2, pairs, group_size * NUM_RELATIONS, out_dim)
        real_scores = query.new_empty(2, pairs, group_size * NUM_RELATIONS, NUM_RELATIONS)
        for modality in range(2):
            torch.bmm(query_blocks[modality], keys.permute(1, 2, 0), out=real_scores[modality])
        bias_scores = skip[:, out_dim:].view(2, pairs, group_size, NUM_RELATIONS, NUM_RELATIONS)
        scores = torch.addcmul(
            bias_scores.to(small), real_scores.view_as(bias_scores).to(small), own.view(2, 1, 1, 1, NUM_RELATIONS)
        )
        attention = (scores * (1 / math.sqrt(out_dim))).softmax(dim=-1)
        weights = attention.mean(dim=-2)  # [2, pairs, G, 6]: (mean_r A)
        own_weights = (weights * own.view(2, 1, 1, NUM_RELATIONS)).to(x.dtype)
        aggregated = (weights.view(-1, NUM_RELATIONS).to(x.dtype) @ v_bias.view(NUM_RELATIONS, out_dim))
        aggregated_blocks = aggregated.view(2, pairs, group_size, out_dim)
        for modality in range(2):
            aggregated_blocks[modality].baddbmm_(own_weights[modality], values.transpose(0, 1))

        # eqs. 15-16
        hidden = F.silu(skip[:, :out_dim])
        if keep is None:
            update = hidden + aggregated
        else:
            node_keep = to_node_order(keep, group_size)
            update = torch.addcmul(hidden.view(node_shape), aggregated.view(node_shape), node_keep).view(-1, out_dim)
        pre_output = torch.addmm(w2_bias, update, w2_weight.t())
        output = from_node_order(F.silu(pre_output).view(node_shape), group_size)

        ctx.save_for_backward(nodes, sources, keys, values, query, skip, skip_weight, attention, weights, update,
                              pre_output, keep, q_weight, q_bias, k_bias, v_weight, v_bias, key_weight, w2_weight)
        ctx.group_size, ctx.groups, ctx.steps = group_size, groups, steps
        return output

    @staticmethod
    def backward(ctx, grad_output):
        (nodes, sources, keys, values, query, skip, skip_weight, attention, weights, update, pre_output, keep,
         q_weight, q_bias, k_bias, v_weight, v_bias, key_weight, w2_weight) = ctx.saved_tensors
        group_size, groups, steps = ctx.group_size, ctx.groups, ctx.steps
        num_nodes, in_dim = nodes.shape
        out_dim = w2_weight.shape[0]
        pairs = groups * steps
        dtype = nodes.dtype
        own = own_relations(nodes.device, attention.dtype)

        grad_pre_output = torch.ops.aten.silu_backward(
            to_node_order(grad_output.to(dtype), group_size).reshape(num_nodes, out_dim), pre_output
        )
        grad_w2_weight = grad_pre_output.t() @ update
        grad_w2_bias = grad_pre_output.sum(0)
        grad_update = grad_pre_output @ w2_weight
        grad_skip = nodes.new_empty(num_nodes, out_dim + NUM_RELATIONS**2)
        torch.ops.aten.silu_backward.grad_input(grad_update, skip[:, :out_dim], grad_input=grad_skip[:, :out_dim])
        if keep is None:
            grad_aggregated = grad_update
        else:
            node_shape = (2, groups, steps, group_size, out_dim)
            grad_aggregated = (grad_update.view(node_shape) * to_node_order(keep, group_size)).view(-1, out_dim)

        # NĀ = ā b_v + (own ā) V: back to ā, the value projections and b_v
        grad_blocks = grad_aggregated.view(2, pairs, group_size, out_dim)
        grad_real_weights = nodes.new_empty(2, pairs, group_size, NUM_RELATIONS)
        for modality in range(2):
            torch.bmm(grad_blocks[modality], values.permute(1, 2, 0), out=grad_real_weights[modality])
        grad_weights = torch.addcmul(
            (grad_aggregated @ v_bias.view(NUM_RELATIONS, out_dim).t()).view_as(grad_real_weights).to(own.dtype),
            grad_real_weights.to(own.dtype),
            own.view(2, 1, 1, NUM_RELATIONS),
        )
        grad_v_bias = weights.view(-1, NUM_RELATIONS).t().to(dtype) @ grad_aggregated
        own_weights = (weights * own.view(2, 1, 1, NUM_RELATIONS)).to(dtype)
        grad_values = torch.bmm(own_weights[0].transpose(1, 2), grad_blocks[0])  # [pairs, 6, D]
        grad_values.baddbmm_(own_weights[1].transpose(1, 2), grad_blocks[1])

        # ā = mean_q softmax(S / sqrt(D)): back to the scores, then to Q, the key projections and the bias scores
        grad_attention = grad_weights.unsqueeze(-2) / NUM_RELATIONS
        grad_scores = attention * (grad_attention - (attention * grad_attention).sum(-1, keepdim=True))
        grad_scores = grad_scores * (1 / math.sqrt(out_dim))  # [2, pairs, G, 6q, 6r]
        grad_skip[:, out_dim:] = grad_scores.view(num_nodes, -1)
        own_grad_scores = (grad_scores * own.view(2, 1, 1, 1, NUM_RELATIONS)).to(dtype)
        own_grad_scores = own_grad_scores.view(2, pairs, group_size * NUM_RELATIONS, NUM_RELATIONS)
        query_blocks = query.view(2, pairs, group_size * NUM_RELATIONS, out_dim)
        grad_query = nodes.new_empty(num_nodes, NUM_RELATIONS * out_dim)
        grad_query_blocks = grad_query.view_as(query_blocks)
        for modality in range(2):
            torch.bmm(own_grad_scores[modality], keys.transpose(0, 1), out=grad_query_blocks[modality])
        grad_keys = torch.bmm(own_grad_scores[0].transpose(1, 2), query_blocks[0])  # [pairs, 6, D]
        grad_keys.baddbmm_(own_grad_scores[1].transpose(1, 2), query_blocks[1])

        # the GEMMs, and W_q / b_q / b_k through the bias scores
        grad_keys, grad_values = grad_keys.transpose(0, 1), grad_values.transpose(0, 1)  # [6, pairs, D]
        grad_k_weight = torch.bmm(grad_keys.transpose(1, 2), sources).view(-1, in_dim)
        grad_v_weight = torch.bmm(grad_values.transpose(1, 2), sources).view(-1, in_dim)
        grad_skip_weight = grad_skip.t() @ nodes
        grad_skip_bias = grad_skip.sum(0)
        grad_bias_score_weight = grad_skip_weight[out_dim:].view(NUM_RELATIONS, NUM_RELATIONS, in_dim)
        grad_bias_score_bias = grad_skip_bias[out_dim:].view(NUM_RELATIONS, NUM_RELATIONS)
        query_weight = q_weight.view(NUM_RELATIONS, out_dim, in_dim)
        key_bias = k_bias.view(NUM_RELATIONS, out_dim)
        grad_q_weight = (grad_query.t() @ nodes).view_as(query_weight)
        grad_q_weight.baddbmm_(key_bias.t().expand(NUM_RELATIONS, -1, -1), grad_bias_score_weight)
        grad_q_bias = grad_query.sum(0) + (grad_bias_score_bias @ key_bias).view(-1)
        grad_k_bias = torch.bmm(grad_bias_score_weight, query_weight.transpose(1, 2)).sum(0)
        grad_k_bias += grad_bias_score_bias.t() @ q_bias.view(NUM_RELATIONS, out_dim)

        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_nodes = grad_query @ q_weight
            grad_nodes.addmm_(grad_skip, skip_weight)
            grad_sources = torch.bmm(grad_keys, key_weight)
            grad_sources.baddbmm_(grad_values, v_weight.view(NUM_RELATIONS, out_dim, in_dim))
            grad_means = relation_sources_backward(grad_sources.view(NUM_RELATIONS, groups, steps, in_dim))
            grad_nodes = grad_nodes.view(2, groups, steps, group_size, in_dim)
            grad_nodes += grad_means.unsqueeze(3) / group_size
            grad_x = from_node_order(grad_nodes, group_size)
        return (
            grad_x, None, grad_q_weight.view(-1, in_dim), grad_q_bias, grad_k_weight, grad_k_bias.view(-1),
            grad_v_weight, grad_v_bias.view(-1), grad_skip_weight[:out_dim], grad_skip_bias[:out_dim],
            grad_w2_weight, grad_w2_bias, None,
        )


def layer_inputs(module: reference.RGCT, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`x` and the ten parameters (q, k, v, w1, w2; weight then bias) in the dtype the layer computes in: the
    autocast dtype under autocast (inputs and parameters cast once, softmax in float32), else that of `x`."""
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    parameters = [
        module.q.weight, module.q.bias, module.k.weight, module.k.bias, module.v.weight, module.v.bias,
        module.w1.weight, module.w1.bias, module.w2.weight, module.w2.bias,
    ]
    return x.to(dtype), [p.to(dtype) for p in parameters]


def rgct_torch(module: reference.RGCT, x: torch.Tensor, group_size: int) -> torch.Tensor:
    """The PyTorch fast path of `RGCT.forward`: `FusedRGCT` with the reference's dropout mask, any device."""
    x, parameters = layer_inputs(module, x)
    keep = None
    if module.training and module.dropout.p > 0:
        batch, _, steps, _ = x.shape
        keep = module.dropout(torch.ones(batch, 2, steps, module.out_dim, dtype=x.dtype, device=x.device))
    with torch.autocast(x.device.type, enabled=False):
        return FusedRGCT.apply(x, keep, *parameters, group_size)


class RGCT(reference.RGCT):
    """Drop-in `avel_fast.reference.RGCT`: same constructor, parameters and outputs; adds no parameters.

    `forward` dispatches through `avel_fast.backend.select_backend` (docs/fast-path.md#backends): ``triton`` runs
    the fused attention kernels of `avel_fast.kernels.rgct`, ``torch`` the `FusedRGCT` function above, ``reference`` the
    literal formulation. The torch path draws its dropout mask as the reference does (one ``[B, 2, T, D]``
    draw from the same generator), so both agree mask for mask under one seed; the Triton path draws its mask
    inside the kernel from a seed drawn on the device (same distribution, different masks). Under
    `torch.compile` both paths are traced whole (no graph break; the Triton kernels are custom operators).
    """

    def forward(self, x: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """`x` ``[B, 2, T, in_dim]`` (modality A=0, V=1) -> ``[B, 2, T, out_dim]``; videos ``g·G..g·G+G-1`` linked."""
        backend = select_backend(x)
        if backend == "reference":
            return super().forward(x, group_size)
        check_graph_input(x, self.in_dim, group_size)
        if backend == "triton":
            from avel_fast.kernels.rgct import rgct_triton

            x, parameters = layer_inputs(self, x)
            with torch.autocast(x.device.type, enabled=False):
                return rgct_triton(x, parameters, group_size, self.dropout.p if self.training else 0.0)
        return rgct_torch(self, x, group_size)
