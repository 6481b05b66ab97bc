"""Presets, explicit overrides and refused combinations of the training config (docs/training.md#presets)."""
import json
import re
from pathlib import Path

import pytest
import torch

from avel_fast.train import TrainConfig, TrainingError, resolve_config
from avel_fast.train.config import default_preset

FIXTURES = Path(__file__).parent / "fixtures"


def test_paper_preset_is_the_paper_recipe():
    dpnet = resolve_config("dpnet", preset="paper", device="cpu")
    assert (dpnet.epochs, dpnet.options.cycle, dpnet.batch_size, dpnet.options.dim) == (400, 20, 48, 768)
    assert dpnet.options.replicate and dpnet.options.link and dpnet.optimizer == "adamw"
    edrnet = resolve_config("edrnet", preset="paper", device="cpu").options
    assert edrnet.lss and edrnet.smb and edrnet.smb_per_class == 250 and edrnet.visual_channels is None
    assert edrnet.lss_weight == 0.1


def test_paper_presets_feed_raw_features_and_the_small_presets_standardise_them():
    for model in ("dpnet", "edrnet"):
        for setting in ("sel", "wsel"):
            assert not resolve_config(model, preset="paper", setting=setting, device="cpu").options.standardize
            for preset in ("quick", "smoke"):
                assert resolve_config(model, preset=preset, setting=setting, device="cpu").options.standardize
    assert resolve_config("dpnet", preset="paper", standardize=True, device="cpu").options.standardize


def test_weak_setting_turns_the_segment_label_switches_off():
    dpnet = resolve_config("dpnet", preset="paper", setting="wsel", device="cpu").options
    edrnet = resolve_config("edrnet", preset="paper", setting="wsel", device="cpu").options
    assert not (dpnet.replicate or dpnet.link or edrnet.lss or edrnet.smb)


def test_explicit_values_override_the_preset_and_none_is_ignored():
    config = resolve_config("dpnet", preset="quick", epochs=3, lr=0.02, dim=None, replicate=True, device="cpu")
    assert (config.epochs, config.lr, config.options.replicate, config.options.link) == (3, 0.02, True, False)
    assert config.options.dim == resolve_config("dpnet", preset="quick", device="cpu").options.dim


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_gpu_the_default_preset_is_quick(no_gpu):
    assert default_preset() == "quick"
    assert resolve_config("edrnet").preset == "quick"


def test_config_round_trips_through_json():
    config = resolve_config("edrnet", preset="smoke", setting="sel", seed=7, data="/some/dir", device="cpu")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(model="vggnet"), "unknown model 'vggnet'"),
        (dict(model="dpnet", preset="fast"), "unknown preset 'fast'"),
        (dict(model="dpnet", setting="weak"), "unknown setting 'weak'"),
        (dict(model="dpnet", precision="fp16"), "unknown precision 'fp16'"),
        (dict(model="dpnet", backend="triton"), "unknown backend 'triton': expected one of fast, reference"),
        (dict(model="dpnet", optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
        (dict(model="dpnet", link=True), "--link needs --replicate"),
        (dict(model="dpnet", smb=True), "^--smb is not an option of dpnet \\(an option of edrnet\\)$"),
        (dict(model="edrnet", replicate=True), "--replicate is not an option of edrnet \\(an option of dpnet\\)"),
        (dict(model="edrnet", setting="wsel", smb=True), "--smb needs segment labels"),
        (dict(model="dpnet", setting="wsel", replicate=True), "--replicate needs segment labels"),
        (dict(model="dpnet", epochs=0), "--epochs must be a finite number >= 1, got 0"),
        (dict(model="dpnet", lr=-1.0), "--lr must be a finite number > 0.0, got -1.0"),
        (dict(model="dpnet", device="cuda"), "CUDA is not available"),
        (dict(model="dpnet", device="tpu9"), "not a torch device"),
        (dict(model="dpnet", learning_rate=1.0), "^--learning-rate is not an option of dpnet$"),
        (dict(model="dpnet", visual_channels=8), "--visual-channels is not an option of dpnet \\(an option of edrnet"),
        (dict(model="edrnet", dropout=0.5), "--dropout is not an option of edrnet \\(an option of dpnet and psp\\)"),
        (dict(model="edrnet", setting="wsel", lss_weight=0.3), "--lss-weight needs --lss"),
        (dict(model="edrnet", smb_per_class=9), "--smb-per-class needs --smb"),
        (dict(model="dpnet", data="/some/dir", data_seed=3), "--data-seed seeds the synthetic data, not --data"),
    ],
)
def test_bad_requests_name_the_option(kwargs, message, no_gpu):
    kwargs = {"preset": "smoke", **kwargs}
    with pytest.raises(TrainingError, match=message):
        resolve_config(kwargs.pop("model"), **kwargs)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("model", "name", "value", "wanted"),
    [
        *(("dpnet", "lr", value, "> 0.0") for value in (NAN, INF, -INF, 0.0, -1e-3)),
        *(("ave", "tau", value, ">= 0.0 and <= 1.0") for value in (NAN, -0.1, 1.5, 2.0)),
        *(("psp", "threshold", value, ">= 0.0 and <= 1.0") for value in (NAN, -1.0, 5.0)),
        *(("dpnet", "weight_decay", value, ">= 0.0") for value in (NAN, INF, -0.01)),
        *(("edrnet", "lss_weight", value, ">= 0.0") for value in (NAN, INF, -0.1)),
        *(("dpnet", "dropout", value, ">= 0.0 and < 1.0") for value in (NAN, INF, 1.0, -0.1)),
        *(("dpnet", name, value, ">= 1") for name in ("epochs", "batch_size", "cycle", "dim") for value in (0, -3)),
        ("dpnet", "epochs", INF, ">= 1"),
        ("dpnet", "batch_size", NAN, ">= 1"),
        ("edrnet", "visual_channels", 0, ">= 1"),
        ("edrnet", "smb_per_class", 0, ">= 1"),
        ("dpnet", "synthetic_videos", 0, ">= 1"),
        ("dpnet", "synthetic_background_videos", -1, ">= 0"),
        ("dpnet", "seed", -1, ">= 0 and < 18446744073709551616"),
        ("dpnet", "seed", 2**64, ">= 0 and < 18446744073709551616"),
        ("dpnet", "data_seed", -2, ">= 0 and < 18446744073709551616"),
    ],
)
def test_non_finite_and_out_of_range_numbers_name_the_option(model, name, value, wanted):
    overrides = {name: value, **({"smb": True} if name == "smb_per_class" else {})}
    overrides.update(dict(setting="wsel", refine="lr") if name == "tau" else {})
    flag = name.replace("_", "-")
    with pytest.raises(TrainingError, match=rf"^--{flag} must be a finite number {wanted}, got {value}$"):
        resolve_config(model, preset="smoke", device="cpu", **overrides)


def test_the_largest_seed_and_the_boundaries_are_accepted():
    config = resolve_config("dpnet", preset="smoke", device="cpu", seed=2**64 - 1, weight_decay=0.0, dropout=0.0)
    assert config.seed == 2**64 - 1
    edrnet = resolve_config("edrnet", preset="smoke", device="cpu", lss=True, lss_weight=0.0)
    assert edrnet.options.lss_weight == 0.0
    for tau in (0.0, 1.0):
        config = resolve_config("ave", preset="smoke", setting="wsel", refine="lr", tau=tau, device="cpu")
        assert config.options.tau == tau
    assert resolve_config("psp", preset="smoke", threshold=1.0, device="cpu").options.threshold == 1.0
    assert resolve_config("dpnet", preset="smoke", lr=3.4e38, device="cpu").lr == 3.4e38


@pytest.mark.parametrize(
    ("model", "name", "value"),
    [("dpnet", "lr", 1e39), ("edrnet", "lss_weight", 1e300), ("dpnet", "weight_decay", 1e39)],
)
def test_a_number_that_overflows_float32_is_refused_up_front(model, name, value):
    overrides = {name: value, **({"lss": True} if name == "lss_weight" else {})}
    flag = name.replace("_", "-")
    expected = rf"^--{flag} {re.escape(f'{value:g}')} overflows float32, in which it is used"
    with pytest.raises(TrainingError, match=expected):
        resolve_config(model, preset="smoke", device="cpu", **overrides)


def test_each_family_keeps_its_options_apart_from_the_shared_ones():
    dpnet = resolve_config("dpnet", preset="smoke", device="cpu")
    assert {"replicate", "link", "dropout", "cycle", "dim"} <= set(vars(dpnet.options))
    assert not {"tau", "smb", "visual_net", "refine"} & set(vars(dpnet.options))
    assert "replicate" not in dpnet.to_dict() and dpnet.to_dict()["options"]["replicate"] is False
    assert set(vars(resolve_config("pretext", preset="smoke", device="cpu").options)) == {
        "features", "targets", "k", "visual_net", "scene_examples"
    }


def test_a_flat_config_of_the_code_before_per_family_options_is_read():
    """config.json of a run written before the options moved into the families: every family's options in one
    flat dict; those of other families are left out."""
    stored = json.loads((FIXTURES / "config-dpnet-flat.json").read_text())["config"]
    config = TrainConfig.from_dict(stored)
    assert config.model == "dpnet" and config.options.replicate and config.options.link
    assert (config.options.dim, config.options.cycle, config.epochs) == (32, 1, 2)
    assert not hasattr(config.options, "tau") and not hasattr(config.options, "smb_per_class")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(TrainingError, match="^unknown field\\(s\\) colour$"):
        TrainConfig.from_dict({**stored, "colour": "red"})
    with pytest.raises(TrainingError, match="^lss: not an option of dpnet$"):
        TrainConfig.from_dict({**config.to_dict(), "options": {**vars(config.options), "lss": True}})
