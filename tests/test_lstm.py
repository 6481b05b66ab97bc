"""`avel_fast.nn.BiLSTM` against `nn.LSTM` (the reference's `BiLSTM`): eagerly the same call bit for bit;
`unrolled_bilstm`, what `torch.compile` traces, equal in outputs, final states and every gradient
(docs/fast-path.md#compile)."""
import copy

import pytest
import torch

import avel_fast.nn
from avel_fast.nn.lstm import BiLSTM, unrolled_bilstm
from avel_fast.reference import ave
from avel_fast.reference.ave import HIDDEN, bidirectional_lstm

# (videos, segments, input width, hidden): odd sizes, one segment, and the models' own (128-d audio, hidden 128)
SHAPES = [(3, 7, 5, 4), (2, 1, 3, 6), (4, 10, 128, HIDDEN)]


def outputs_and_grads(module, call, inputs, hx=None):
    output, (h, c) = call(module, inputs, hx)
    loss = output.square().sum() + h.sin().sum() + c.cos().sum()
    leaves = [inputs, *module.parameters(), *(hx or ())]
    return [output, h, c, *torch.autograd.grad(loss, leaves)]


@pytest.mark.parametrize("shape", SHAPES)
def test_eager_forward_is_the_reference_bit_for_bit(shape):
    videos, segments, width, hidden = shape
    torch.manual_seed(0)
    reference = ave.BiLSTM(width, hidden, 1, batch_first=True, bidirectional=True)
    fast = avel_fast.nn.patch(copy.deepcopy(reference))
    assert type(fast) is BiLSTM and list(fast.state_dict()) == list(reference.state_dict())
    inputs = torch.randn(videos, segments, width, requires_grad=True)
    call = lambda module, x, hx: module(x, hx)  # noqa: E731
    for got, want in zip(outputs_and_grads(fast, call, inputs), outputs_and_grads(reference, call, inputs)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("initial_states", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_unrolled_cell_matches_the_lstm(shape, initial_states):
    videos, segments, width, hidden = shape
    torch.manual_seed(1)
    module = BiLSTM(width, hidden, 1, batch_first=True, bidirectional=True).double()
    inputs = torch.randn(videos, segments, width, dtype=torch.float64, requires_grad=True)
    hx = None
    if initial_states:
        hx = tuple(torch.randn(2, videos, hidden, dtype=torch.float64, requires_grad=True) for _ in range(2))
    want = outputs_and_grads(module, lambda m, x, h: m(x, h), inputs, hx)
    got = outputs_and_grads(module, unrolled_bilstm, inputs, hx)
    for got_tensor, want_tensor in zip(got, want, strict=True):
        torch.testing.assert_close(got_tensor, want_tensor, rtol=1e-10, atol=1e-10)


def test_a_drop_in_with_the_lstm_constructor_and_state_dict():
    torch.manual_seed(2)
    fast, reference = BiLSTM(5, 4, 1, batch_first=True, bidirectional=True), bidirectional_lstm(5)
    assert not isinstance(fast, torch.nn.LSTM)  # what keeps Dynamo from refusing it
    assert {k: v.shape for k, v in fast.state_dict().items()} == {
        k: v.shape for k, v in torch.nn.LSTM(5, 4, 1, batch_first=True, bidirectional=True).state_dict().items()}
    patched = avel_fast.nn.patch(copy.deepcopy(reference))
    assert type(patched) is BiLSTM and type(avel_fast.nn.unpatch(patched)) is type(reference)
    assert not fast.unrollable(torch.randn(7, 5))  # unbatched input: the reference call
