"""The Bi-LSTM of the AVE baseline and PSP (AVE paper eqs. 2-3) in a form `torch.compile` captures
(docs/fast-path.md#compile).

Dynamo refuses to trace any `nn.LSTM` (a graph break on every backend; with ``allow_rnn`` AOTAutograd fails on the
bidirectional backward). `BiLSTM` is the same module (its parameters, `state_dict` and flattened cuDNN weights
are `nn.RNNBase`'s) without being an `nn.LSTM`: eagerly it runs `nn.LSTM.forward`, so eager numbers do not change;
while `torch.compile` traces it, `unrolled_bilstm` runs the same cell step by step in plain tensor ops over its
parameters (PyTorch's gate order i, f, g, o: ``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``, both
directions).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.reference import ave as reference


def lstm_direction(
    gates_in: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction over time: `gates_in` ``[B, T, 4H]`` (input projections with their bias), ``h``, ``c``
    ``[B, H]`` -> the states ``[B, T, H]`` and the last ``h``, ``c``."""
    states = []
    steps = range(gates_in.shape[1] - 1, -1, -1) if reverse else range(gates_in.shape[1])
    for t in steps:
        i, f, g, o = (gates_in[:, t] + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        states.append(h)
    if reverse:
        states.reverse()
    return torch.stack(states, dim=1), h, c


def unrolled_bilstm(
    module: nn.RNNBase, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """`nn.LSTM.forward` of a one-layer, batch-first, bidirectional LSTM with biases on ``[B, T, F]``, step by
    step: ``(output [B, T, 2H], (h_n, c_n) [2, B, H])``."""
    if hx is None:
        zeros = input.new_zeros(2, input.shape[0], module.hidden_size)
        hx = (zeros, zeros)
    outputs, last_h, last_c = [], [], []
    for direction, suffix in enumerate(("", "_reverse")):
        gates_in = F.linear(input, getattr(module, f"weight_ih_l0{suffix}"), getattr(module, f"bias_ih_l0{suffix}"))
        states, h, c = lstm_direction(
            gates_in, getattr(module, f"weight_hh_l0{suffix}"), getattr(module, f"bias_hh_l0{suffix}"),
            hx[0][direction], hx[1][direction], reverse=direction == 1,
        )  # fmt: skip
        outputs.append(states)
        last_h.append(h)
        last_c.append(c)
    return torch.cat(outputs, dim=2), (torch.stack(last_h), torch.stack(last_c))


class BiLSTM(nn.RNNBase):
    """Drop-in `avel_fast.reference.ave.BiLSTM` (`patch` swaps one in place; same parameters and `state_dict`):
    `nn.LSTM`'s forward eagerly (with the reference's fp32 fallback under CPU bf16 autocast), `unrolled_bilstm`
    while `torch.compile` traces it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)

    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        if torch.compiler.is_compiling() and self.unrollable(input):
            return unrolled_bilstm(self, input, hx)
        return reference.lstm_in_supported_precision(functools.partial(nn.LSTM.forward, self), input, hx)

    def unrollable(self, input: torch.Tensor) -> bool:
        """Whether `unrolled_bilstm` computes this call: the configuration of `reference.ave.bidirectional_lstm`
        on a batched tensor."""
        return (
            self.mode == "LSTM" and self.num_layers == 1 and self.bidirectional and self.batch_first and self.bias
            and self.proj_size == 0 and isinstance(input, torch.Tensor) and input.dim() == 3
        )  # fmt: skip
