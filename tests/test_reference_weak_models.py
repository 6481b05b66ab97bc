"""The reference AVE baseline and PSP: public parameter names and counts, hand-built checks of the attention's and
classifier's easy-to-miss details, the PSP threshold, heads and losses, the per-segment feature interface, and
their LSTMs under CPU bf16 autocast on a CPU without a bf16 LSTM (docs/weak.md#precision)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avel_fast.reference.gather import gather_segments
from avel_fast.constants import BACKGROUND
from avel_fast.reference import (
    AudioGuidedAttention,
    AVEBaseline,
    PSPNet,
    avps_loss,
    bce_on_probs,
    max_mil_prob,
    mean_mil_prob,
    soft_margin_on_probs,
)
from avel_fast.reference import ave
from avel_fast.reference.psp import UNUSED_PUBLIC_KEYS, pruned_affinity

LSTM_KEYS = [
    f"{kind}_l0{suffix}" for suffix in ("", "_reverse") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
]
AVE_KEYS = (
    [f"lstm_audio.{k}" for k in LSTM_KEYS] + [f"lstm_video.{k}" for k in LSTM_KEYS]
    + ["affine_audio.weight", "affine_audio.bias", "affine_video.weight", "affine_video.bias", "affine_v.weight",
       "affine_g.weight", "affine_h.weight", "L1.weight", "L1.bias", "L2.weight", "L2.bias"]
)


def inputs(batch: int = 2, segments: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, segments, 128, generator=generator), torch.randn(batch, segments, 7, 7, 512,
                                                                               generator=generator)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_ave_has_the_public_keys_in_creation_order_and_1335246_parameters():
    model = AVEBaseline()
    assert list(model.state_dict()) == AVE_KEYS
    assert count(model) == 1_335_246
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes["lstm_video.weight_ih_l0"] == [512, 512] and shapes["affine_h.weight"] == [1, 49]
    assert shapes["affine_g.weight"] == [49, 512] and shapes["L1.weight"] == [64, 512]
    assert shapes["L2.weight"] == [29, 64]


def test_ave_biases_and_initialisation_follow_the_public_code():
    model = AVEBaseline()
    for name in ("affine_v", "affine_g", "affine_h"):
        assert getattr(model, name).bias is None
    for name in ("affine_audio", "affine_video", "L1", "L2"):
        assert getattr(model, name).bias is not None
    for name in ("affine_audio", "affine_video", "affine_v", "affine_g", "affine_h", "L1", "L2"):  # xavier bounds
        weight = getattr(model, name).weight
        bound = math.sqrt(6 / sum(weight.shape))
        assert 0.9 * bound < weight.abs().max().item() <= bound, name
    assert model.affine_audio.bias.abs().max().item() <= 1 / math.sqrt(128)
    assert model.lstm_video.weight_ih_l0.abs().max().item() <= 1 / math.sqrt(128)


@pytest.mark.parametrize("setting,total", [("sel", 1_548_657), ("wsel", 1_253_902)])
def test_psp_registers_only_the_used_parameters(setting, total):
    model = PSPNet(setting)
    assert count(model) == total
    keys = set(model.state_dict())
    assert not keys & set(UNUSED_PUBLIC_KEYS[setting])
    assert {"attention.affine_h.weight", "lstm_a_v.lstm_video.weight_ih_l0", "psp.layer_norm.weight"} <= keys
    assert (("fa.0.weight" in keys) and ("psp.v_fc.weight" in keys)) == (setting == "sel")
    assert (("linear_v.bias" in keys) and ("W3.weight" in keys)) == (setting == "wsel")


def public_state_dict(setting: str) -> dict[str, torch.Tensor]:
    """A state_dict shaped like the public ``psp_net`` checkpoint: ours plus the unused public tensors."""
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) for k, v in PSPNet(setting).state_dict().items()}
    unused_shapes = {
        "linear_v.weight": (128, 512), "linear_v.bias": (128,), "v_classify.L1.weight": (64, 256),
        "v_classify.L2.weight": (28, 64), "a_classify.L1.weight": (64, 256), "a_classify.L2.weight": (28, 64),
        "L3.weight": (64, 256), "L3.bias": (64,), "L4.weight": (2, 64), "L4.bias": (2,),
        "temperature": (1, 29), "W1.weight": (1, 256), "W2.weight": (1, 64),
    }
    state.update({k: torch.randn(unused_shapes[k]) for k in UNUSED_PUBLIC_KEYS[setting]})
    return state


@pytest.mark.parametrize("setting,unused", [("sel", 118_594), ("wsel", 349)])
def test_psp_loads_a_public_checkpoint_after_dropping_the_unused_keys(setting, unused):
    state = public_state_dict(setting)
    assert sum(state[k].numel() for k in UNUSED_PUBLIC_KEYS[setting]) == unused
    model = PSPNet.from_public_state_dict(state, setting)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(RuntimeError, match="Unexpected key"):
        PSPNet(setting).load_state_dict(state)
    del state["L1.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        PSPNet.from_public_state_dict(state, setting)


def test_psp_thresholds_default_to_the_public_values_and_are_kept():
    assert PSPNet("sel").threshold == 0.099 and PSPNet("wsel").threshold == 0.095
    assert PSPNet("wsel", threshold=0.2).threshold == 0.2
    with pytest.raises(ValueError, match="setting must be one of sel, wsel, got 'weak'"):
        PSPNet("weak")


# --- hand-built checks of the audio-guided attention (eq. 1) and the classifier -----------------------------------

def peaked_attention(module, location: int) -> None:
    """``affine_v = 0`` and an audio term that is large only at `location`: α is one-hot there if the audio term is a
    per-location bias broadcast along d (with ``w_f = 1``: scores ``49·tanh(g_k)``)."""
    with torch.no_grad():
        module.affine_v.weight.zero_()
        module.affine_h.weight.fill_(1.0)
        module.affine_audio.weight.zero_()
        module.affine_audio.bias.fill_(1.0)  # a = ReLU(affine_audio(audio)) = 1 whatever the audio
        module.affine_g.weight.zero_()
        module.affine_g.weight[location] = 10.0 / module.affine_g.weight.shape[1]  # g_location = 10, others 0


@pytest.mark.parametrize("row,col", [(2, 5), (6, 0)])
def test_attention_locations_are_row_major_and_the_audio_bias_is_per_location(row, col):
    module = AudioGuidedAttention()
    peaked_attention(module, 7 * row + col)
    audio, visual = inputs()
    attended, attention = module(audio, visual, return_attention=True)
    assert attention.shape == (2, 10, 49)
    assert torch.all(attention[..., 7 * row + col] > 1 - 1e-6)
    # the weighted sum reads the RAW maps (negative values survive; no ReLU, no affine_video)
    torch.testing.assert_close(attended, visual[:, :, row, col], rtol=0, atol=1e-6)


def test_attention_without_audio_bias_is_uniform_over_locations():
    """The projections alone (same for every location here) give α = 1/49: only the audio term breaks symmetry."""
    module = AudioGuidedAttention()
    peaked_attention(module, 0)
    with torch.no_grad():
        module.affine_g.weight.zero_()
    audio, visual = inputs()
    attended, attention = module(audio, visual, return_attention=True)
    torch.testing.assert_close(attention, torch.full_like(attention, 1 / 49))
    torch.testing.assert_close(attended, visual.mean(dim=(2, 3)))


def test_ave_audio_lstm_reads_raw_audio_and_the_classifier_sees_relu_of_audio_then_video():
    model = AVEBaseline().eval()
    audio, visual = inputs()
    seen = {}
    model.lstm_audio.register_forward_hook(lambda m, args, out: seen.update(lstm_audio=args[0]))
    model.L1.register_forward_hook(lambda m, args, out: seen.update(L1=args[0]))
    scores, attention = model(audio, visual, return_attention=True)
    assert torch.equal(seen["lstm_audio"], audio)
    attended = torch.einsum("btk,btkc->btc", attention, visual.flatten(2, 3))
    audio_states = model.lstm_audio(audio)[0]
    visual_states = model.lstm_video(attended)[0]
    torch.testing.assert_close(seen["L1"], F.relu(torch.cat([audio_states, visual_states], dim=-1)))
    assert (seen["L1"] == 0).any()
    torch.testing.assert_close(scores, model.L2(F.relu(model.L1(seen["L1"]))))


def test_ave_return_attention_gives_distributions_and_the_same_scores():
    model = AVEBaseline()
    audio, visual = inputs()
    scores, attention = model(audio, visual, return_attention=True)
    assert scores.shape == (2, 10, 29) and attention.shape == (2, 10, 49)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 10))
    assert torch.equal(model(audio, visual), scores)


# --- PSP details -------------------------------------------------------------------------------------------------

def test_pruning_drops_an_entry_exactly_at_the_threshold():
    affinity = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 0.0, 0.0]]])  # row-normalised: 0.25 ×4; .25, .75
    pruned = pruned_affinity(affinity, 0.25, renormalise=False)
    assert torch.equal(pruned, torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.75, 0.0, 0.0]]]))
    just_below = torch.nextafter(torch.tensor(0.25), torch.tensor(0.0)).item()  # float32 comparison
    kept = pruned_affinity(affinity, just_below, renormalise=False)
    assert torch.equal(kept, torch.tensor([[[0.25, 0.25, 0.25, 0.25], [0.25, 0.75, 0.0, 0.0]]]))
    torch.testing.assert_close(pruned_affinity(affinity, 0.25, renormalise=True),
                               torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]))


@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_pruning_at_the_default_threshold_drops_an_entry_equal_to_it(setting):
    threshold = PSPNet(setting).threshold
    row = torch.tensor([[[threshold, 1 - threshold]]])  # sums to 1 exactly in float32: normalised entry = threshold
    assert torch.equal(row / row.sum(), row)
    assert torch.equal(pruned_affinity(row, threshold, renormalise=False), torch.tensor([[[0.0, 1 - threshold]]]))


@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_psp_audio_to_visual_affinity_is_the_transpose_before_normalisation(setting, monkeypatch):
    """The public code normalises ``βᵀ`` row by row, not ``(row-normalised β)ᵀ``."""
    model = PSPNet(setting).eval()
    module = model.psp
    seen = []
    real = pruned_affinity

    def spy(affinity, threshold, renormalise):
        seen.append((affinity, threshold, renormalise))
        return real(affinity, threshold, renormalise)

    monkeypatch.setattr("avel_fast.reference.psp.pruned_affinity", spy)
    audio, visual = torch.randn(2, 10, 256), torch.randn(2, 10, 256)
    module(audio, visual, 0.5)
    assert [s[1:] for s in seen] == [(0.5, setting == "sel")] * 2
    assert torch.equal(seen[1][0], seen[0][0].transpose(1, 2))
    beta = F.relu(F.relu(module.v_L2(visual)) @ F.relu(module.a_L1(audio)).transpose(1, 2) / 16)
    torch.testing.assert_close(seen[0][0], beta)


@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_psp_uses_its_threshold_attribute(setting):
    model = PSPNet(setting).eval()
    audio, visual = inputs(seed=3)
    first = model(audio, visual)
    model.threshold = 1.0  # prunes everything: no propagation
    second = model(audio, visual)
    first, second = (first[0], second[0]) if setting == "sel" else (first, second)
    assert not torch.allclose(first, second)


def test_psp_outputs_and_weighting_branch():
    audio, visual = inputs()
    model = PSPNet("sel").eval()
    scores, cosine = model(audio, visual)
    assert scores.shape == (2, 10, 29) and cosine.shape == (2, 10)
    assert cosine.abs().max() <= 1 + 1e-6
    weak = PSPNet("wsel").eval()
    weighted = weak(audio, visual)
    seen = {}
    weak.W3.register_forward_hook(lambda m, args, out: seen.update(scores=args[0], out=out))
    weak(audio, visual)
    weights = torch.sigmoid(F.relu(seen["out"]))
    assert weights.min() >= 0.5 and weights.max() < 1
    torch.testing.assert_close(weighted, seen["scores"] * weights)


# --- heads and losses --------------------------------------------------------------------------------------------

def test_max_mil_prob_is_softmax_of_the_max_with_the_gradient_on_the_first_tie():
    scores = torch.tensor([[[1.0, 5.0], [3.0, 5.0], [3.0, 0.0]]], requires_grad=True)  # ties in both classes
    prob = max_mil_prob(scores)
    torch.testing.assert_close(prob, torch.tensor([[3.0, 5.0]]).softmax(-1))
    prob[0, 0].backward()
    assert scores.grad[0, :, 0].nonzero().flatten().tolist() == [1]
    assert scores.grad[0, :, 1].nonzero().flatten().tolist() == [0]


def test_soft_margin_on_probs_is_the_multilabel_soft_margin_of_probabilities():
    torch.manual_seed(0)
    prob = torch.randn(4, 10, 29).softmax(-1)
    target = F.one_hot(torch.randint(0, 29, (4, 10)), 29).float()
    expected = -(target * F.logsigmoid(prob) + (1 - target) * F.logsigmoid(-prob)).mean()
    torch.testing.assert_close(soft_margin_on_probs(prob, target), expected)
    video_prob, video_target = prob[:, 0], target[:, 0]
    expected = -(video_target * F.logsigmoid(video_prob) + (1 - video_target) * F.logsigmoid(-video_prob)).mean()
    torch.testing.assert_close(soft_margin_on_probs(video_prob, video_target), expected)
    with pytest.raises(ValueError, match="target must have the shape of prob"):
        soft_margin_on_probs(prob, target[:, 0])


def test_mean_mil_prob_and_bce():
    scores = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]])
    prob = mean_mil_prob(scores)
    torch.testing.assert_close(prob, torch.tensor([[2.0, 1.0, 0.0]]).softmax(-1))
    target = torch.tensor([[1.0, 0.0, 0.0]])
    expected = -(torch.log(prob[0, 0]) + torch.log(1 - prob[0, 1]) + torch.log(1 - prob[0, 2])) / 3
    torch.testing.assert_close(bce_on_probs(prob, target), expected)
    with pytest.raises(ValueError, match="scores must have shape"):
        mean_mil_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="scores must have shape"):
        max_mil_prob(torch.zeros(3))


def test_avps_loss_targets_event_segments_and_a_uniform_target_without_events():
    labels = torch.full((2, 10), BACKGROUND)
    labels[0, 2:6] = 4  # 4 event segments: target 1/4 there
    cosine = torch.linspace(-0.5, 1.0, 20).view(2, 10)
    positive = cosine.clamp_min(0)
    similarity = positive / (positive.sum(-1, keepdim=True) + 1e-8)
    target = torch.zeros(2, 10)
    target[0, 2:6] = 0.25
    target[1] = 0.1  # no event segment: uniform 1/T
    torch.testing.assert_close(avps_loss(cosine, labels), ((similarity - target) ** 2).mean())
    with pytest.raises(ValueError, match=r"av_cosine and segment_labels must both have shape \[B, T\]"):
        avps_loss(cosine, labels[:, :5])


# --- input checks ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_fn", [AVEBaseline, lambda: PSPNet("sel"), lambda: PSPNet("wsel")])
def test_bad_input_shapes_are_refused_with_clear_errors(model_fn):
    model = model_fn()
    audio, visual = inputs(batch=2, segments=3)
    with pytest.raises(ValueError, match=r"audio must have shape \[B, T, 128\]"):
        model(audio[..., :64], visual)
    with pytest.raises(ValueError, match=r"visual must have shape \[B, T, 7, 7, 512\]"):
        model(audio, visual.flatten(2, 3))
    with pytest.raises(ValueError, match=r"visual must have shape \[B, T, 7, 7, 512\]"):
        model(audio, visual[..., :256])
    with pytest.raises(ValueError, match=r"audio and visual disagree on \[B, T\]"):
        model(audio[:1], visual)
    first, second = model.segment_features(audio, visual)
    with pytest.raises(ValueError, match="disagree on"):
        model.from_segment_features(first, second[:, :2])


# --- per-segment features ------------------------------------------------------------------------------------------

MODELS = {"ave": AVEBaseline, "psp-sel": lambda: PSPNet("sel"), "psp-wsel": lambda: PSPNet("wsel")}


def assert_identical(actual, expected) -> None:
    actual, expected = (actual, expected) if isinstance(actual, tuple) else ((actual,), (expected,))
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_is_from_segment_features_of_segment_features_bit_for_bit(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    audio, visual = inputs(batch=3)
    features = model.segment_features(audio, visual)
    assert all(f.shape[:2] == (3, 10) for f in features)
    assert_identical(model.from_segment_features(*features), model(audio, visual))
    model.train()  # dropout: the same draws in the same order
    torch.manual_seed(5)
    expected = model(audio, visual)
    torch.manual_seed(5)
    assert_identical(model.from_segment_features(*model.segment_features(audio, visual)), expected)


@pytest.mark.parametrize("name", list(MODELS))
def test_spliced_segment_features_equal_the_forward_of_the_spliced_video(name):
    """Windows of 4 segments of video 0 in video 1 (the label-refinement synthetic videos). Equal up to the last
    bits only: the two sides multiply batches of different sizes, which BLAS may block differently."""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    audio, visual = inputs(batch=2)
    starts = torch.tensor([0, 2, 4, 6])
    positions = torch.arange(10)
    inside = (positions >= starts[:, None]) & (positions < starts[:, None] + 4)
    video_idx, segment_idx = torch.where(inside, 0, 1), positions.expand(4, 10)
    spliced = [gather_segments(f, video_idx, segment_idx) for f in model.segment_features(audio, visual)]
    expected = model(gather_segments(audio, video_idx, segment_idx), gather_segments(visual, video_idx, segment_idx))
    torch.testing.assert_close(model.from_segment_features(*spliced), expected, rtol=1e-5, atol=1e-6)


# --- LSTMs under CPU bf16 autocast -----------------------------------------------------------------------------------

ONEDNN_ERROR = "could not create a primitive descriptor for the LSTM forward propagation primitive"


def bf16_autocast() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.fixture
def cpu_without_bf16_lstm(monkeypatch):
    """This process as on a 2-core AMD EPYC without AVX-512: an LSTM under CPU bf16 autocast raises oneDNN's error
    (the probe's cache is cleared before and after, so it sees this CPU and the next test the real one)."""
    real = torch._VF.lstm

    def lstm(*args, **kwargs):
        if bf16_autocast():
            raise RuntimeError(ONEDNN_ERROR)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch._VF, "lstm", lstm)
    ave.cpu_bf16_lstm_supported.cache_clear()
    yield
    ave.cpu_bf16_lstm_supported.cache_clear()


def bf16_outputs_and_grads(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor, autocast: bool):
    """Scores, parameter gradients of a loss on them, and the output dtypes of the model's LSTMs."""
    model.zero_grad()
    dtypes = []
    hooks = [
        module.register_forward_hook(lambda _module, _args, output: dtypes.append(output[0].dtype))
        for module in model.modules() if isinstance(module, torch.nn.LSTM)
    ]  # fmt: skip
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        output = model(audio, visual)
        scores = output[0] if isinstance(output, tuple) else output
    scores.float().square().mean().backward()
    for hook in hooks:
        hook.remove()
    return scores.detach().float(), {name: p.grad.clone() for name, p in model.named_parameters()}, set(dtypes)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).norm() / want.norm().clamp_min(1e-12)).item()


def assert_tracks_fp32(model: torch.nn.Module) -> set[torch.dtype]:
    """Scores under bf16 autocast within 2 % (in norm) of fp32's, every parameter gradient within 20 % (bf16's
    8-bit mantissa through the attention's backward: about 10 % on the deepest layers); returns the output
    dtypes of the LSTMs under autocast."""
    audio, visual = inputs(batch=1, segments=3)
    got_scores, got_grads, dtypes = bf16_outputs_and_grads(model, audio, visual, autocast=True)
    want_scores, want_grads, _ = bf16_outputs_and_grads(model, audio, visual, autocast=False)
    assert relative_error(got_scores, want_scores) < 0.02
    errors = {name: relative_error(got_grads[name], want) for name, want in want_grads.items()}
    assert max(errors.values()) < 0.2, errors
    return dtypes


def test_the_probe_sees_a_cpu_without_bf16_lstm_without_drawing_random_numbers(cpu_without_bf16_lstm):
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert not ave.cpu_bf16_lstm_supported()
    assert torch.equal(torch.rand(4), expected)


def test_the_probe_works_inside_no_grad_and_inference_mode():
    with torch.no_grad():
        inside_no_grad = ave.cpu_bf16_lstm_supported.__wrapped__()
    with torch.inference_mode():
        inside_inference = ave.cpu_bf16_lstm_supported.__wrapped__()
    assert inside_no_grad == inside_inference == ave.cpu_bf16_lstm_supported.__wrapped__()


@pytest.mark.parametrize("name", ["ave", "psp-wsel"])
def test_models_train_under_bf16_autocast_on_a_cpu_without_bf16_lstm(cpu_without_bf16_lstm, name):
    torch.manual_seed(0)
    assert assert_tracks_fp32(MODELS[name]().eval()) == {torch.float32}


@pytest.mark.parametrize("supported", [True, False])
@pytest.mark.parametrize("name", list(MODELS))
def test_both_branches_of_the_probe_track_fp32(monkeypatch, name, supported):
    """The probe's answer forced: True runs the LSTMs in bf16 as plain `nn.LSTM` does (where this CPU has one),
    False in fp32."""
    if supported and not ave.cpu_bf16_lstm_supported():
        pytest.skip("this CPU has no bf16 LSTM")
    monkeypatch.setattr(ave, "cpu_bf16_lstm_supported", lambda: supported)
    torch.manual_seed(0)
    assert assert_tracks_fp32(MODELS[name]().eval()) == {torch.bfloat16 if supported else torch.float32}


def test_where_the_cpu_has_a_bf16_lstm_the_numbers_are_those_of_nn_lstm():
    if not ave.cpu_bf16_lstm_supported():
        pytest.skip("this CPU has no bf16 LSTM")
    torch.manual_seed(0)
    lstm = ave.bidirectional_lstm(6)
    plain = torch.nn.LSTM(6, ave.HIDDEN, 1, batch_first=True, bidirectional=True)
    plain.load_state_dict(lstm.state_dict())
    features = torch.randn(2, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(lstm(features)[0], plain(features)[0])
