"""The AVE baseline and PSP through the training loop: smoke runs per setting, the public recipes as presets,
and the options these families refuse (docs/weak.md#recipes)."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from avel_fast.cli.main import app

from avel_fast.reference import AVEBaseline, PSPNet
from avel_fast.reference.ave import max_mil_prob, soft_margin_on_probs
from avel_fast.reference.psp import AVPS_WEIGHT, avps_loss, bce_on_probs, mean_mil_prob
from avel_fast.train import TrainingError, family_of, resolve_config, train
from avel_fast.train.families.weak import STEP1_DIR, aux_partners, background_rows, read_labels, step1_config
from avel_fast.train.schedule import ConstantSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


def _smoke(model: str, setting: str, **overrides):
    return resolve_config(model, preset="smoke", setting=setting, device="cpu", **overrides)


@pytest.mark.parametrize("model", ["ave", "psp"])
@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_smoke_run_writes_the_test_metrics_of_the_best_validation_epoch(tmp_path, model, setting):
    report = train(_smoke(model, setting), tmp_path)
    assert json.loads((tmp_path / "test_metrics.json").read_text())["epoch"] == report["epoch"]
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in epochs] == [1, 2] and {record["lr"] for record in epochs} == {1e-3}
    assert report["val_accuracy"] == max(record["val"]["accuracy"] for record in epochs)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0


@pytest.mark.parametrize("model", ["ave", "psp"])
@pytest.mark.parametrize("preset", ["paper", "quick", "smoke"])
@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_every_preset_feeds_raw_features_with_adam_and_batch_64(model, preset, setting):
    config = resolve_config(model, preset=preset, setting=setting, device="cpu")
    assert not config.options.standardize
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-3, 0.0)
    assert config.batch_size == (16 if preset == "smoke" else 64)
    family = family_of(model)
    assert family.drop_last and isinstance(family.schedule(config), ConstantSchedule)


def test_paper_preset_epochs_follow_the_public_recipes_and_the_refinement_stages():
    epochs = {
        (model, setting): resolve_config(model, preset="paper", setting=setting, device="cpu").epochs
        for model in ("ave", "psp") for setting in ("sel", "wsel")
    }  # fmt: skip
    assert epochs == {("ave", "sel"): 300, ("ave", "wsel"): 250, ("psp", "sel"): 300, ("psp", "wsel"): 200}
    refined = resolve_config("ave", preset="paper", setting="wsel", refine="a+lr", device="cpu")
    assert (refined.options.step1_epochs, refined.epochs) == (200, 100)
    assert resolve_config("ave", preset="paper", setting="wsel", refine="lr", epochs=7, device="cpu").epochs == 7
    psp = resolve_config("psp", preset="paper", setting="wsel", device="cpu")
    assert (psp.options.dropout, psp.options.threshold) == (0.1, None)
    assert resolve_config("psp", preset="smoke", setting="sel", threshold=0.2, device="cpu").options.threshold == 0.2


def test_models_are_built_with_the_setting_threshold_and_dropout():
    model = family_of("psp").build(_smoke("psp", "wsel", threshold=0.2, dropout=0.3, backend="reference"))
    assert isinstance(model, PSPNet) and model.setting == "wsel"
    assert model.threshold == 0.2 and model.psp.dropout.p == 0.3
    assert isinstance(family_of("ave").build(_smoke("ave", "sel")), AVEBaseline)


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.rand(3, 10, 128, generator=generator)
    visual = torch.rand(3, 10, 7, 7, 512, generator=generator)
    labels = torch.randint(0, 29, (3, 10), generator=generator)
    video_labels = F.one_hot(torch.tensor([3, 28, 11]), 29).float()
    return audio, visual, labels, video_labels


@pytest.mark.parametrize("setting", ["sel", "wsel"])
def test_objectives_are_the_public_losses(setting):
    audio, visual, labels, video_labels = _batch()
    for model in ("ave", "psp"):
        config = _smoke(model, setting, backend="reference")
        family = family_of(model)
        torch.manual_seed(0)
        network = family.build(config).eval()
        batch = type("Batch", (), dict(audio=audio, visual=visual, labels=labels, video_labels=video_labels))
        output = family.objective(network, SimpleNamespace(extras={}), config)(batch, 0, 0)
        raw = network(audio, visual)
        if model == "ave" and setting == "sel":
            expected = soft_margin_on_probs(raw.softmax(-1), F.one_hot(labels, 29).float())
        elif model == "ave":
            expected = soft_margin_on_probs(max_mil_prob(raw), video_labels)
        elif setting == "sel":
            expected = F.cross_entropy(raw[0].flatten(0, 1), labels.flatten()) + AVPS_WEIGHT * avps_loss(raw[1], labels)
        else:
            expected = bce_on_probs(mean_mil_prob(raw), video_labels)
        torch.testing.assert_close(output.loss, expected)
        torch.testing.assert_close(output.logits, raw[0] if isinstance(raw, tuple) else raw)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("ave", dict(refine="lr"), "--refine lr refines weak labels: use it with --setting wsel"),
        ("psp", dict(setting="sel", refine="a+lr"), "--refine a\\+lr refines weak labels"),
        ("ave", dict(setting="wsel", refine="best"), "unknown refine 'best'"),
        ("ave", dict(replicate=True), "^--replicate is not an option of ave \\(an option of dpnet\\)$"),
        ("psp", dict(lss=True), "--lss is not an option of psp"),
        ("ave", dict(cycle=5), "--cycle is not an option of ave \\(an option of dpnet and edrnet\\)"),
        ("psp", dict(dim=64), "--dim is not an option of psp"),
        ("ave", dict(dropout=0.3), "--dropout is not an option of ave \\(an option of dpnet and psp\\)"),
        ("ave", dict(threshold=0.1), "--threshold is not an option of ave \\(an option of psp\\)"),
        ("dpnet", dict(refine="lr"), "--refine is not an option of dpnet \\(an option of ave and psp\\)"),
        ("edrnet", dict(tau=0.1), "--tau is not an option of edrnet \\(an option of ave and psp\\)"),
        ("ave", dict(setting="wsel", window=3), "--window needs --refine lr, a\\+lr or dummy"),
        ("ave", dict(setting="wsel", refine="pl", stride=1), "--stride needs --refine lr, a\\+lr or dummy"),
        ("psp", dict(setting="wsel", refine="dummy", tau=0.1), "--tau needs --refine lr or a\\+lr"),
        ("ave", dict(setting="wsel", refine="dummy", step1_epochs=3), "--step1-epochs needs --refine lr, a\\+lr or pl"),
        ("ave", dict(setting="wsel", refine="lr", tau=-0.1), "--tau must be a finite number >= 0.0"),
        ("psp", dict(threshold=-1.0), "--threshold must be a finite number >= 0.0"),
        ("ave", dict(setting="wsel", refine="lr", window=0), "--window must be a finite number >= 1"),
        ("ave", dict(aux=True), "--aux is a weak objective"),
        ("psp", dict(setting="wsel", aux=True, refine="lr"), "--aux is Step 1 of --refine a\\+lr"),
        ("dpnet", dict(setting="wsel", aux=True), "--aux is not an option of dpnet"),
        ("ave", dict(setting="wsel", refine="a+lr", window=6), "--window 6 --stride 2: .*auxiliary objective"),
        ("ave", dict(setting="wsel", refine="lr", window=3), "--window 3 --stride 2: stride=2 must divide"),
        ("psp", dict(setting="wsel", refine="dummy", window=10, stride=1), "must be shorter than the video"),
    ],
)
def test_options_these_families_would_ignore_are_refused(model, kwargs, message):
    kwargs = {"setting": "sel", **kwargs}
    with pytest.raises(TrainingError, match=message):
        _smoke(model, kwargs.pop("setting"), **kwargs)


def test_a_batch_larger_than_the_training_set_is_refused_when_the_last_batch_is_dropped(tmp_path):
    with pytest.raises(TrainingError, match="--batch-size 512 is larger than the training set \\(97 videos\\)"):
        train(_smoke("ave", "sel", batch_size=512), tmp_path)


RUN_FILES = {"config.json", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("ave", "--setting", "wsel", "--refine", "a+lr"),
        ("psp", "--setting", "sel"),
        ("psp", "--setting", "wsel", "--refine", "a+lr"),
    ],
)
def test_cli_smoke_runs_write_test_metrics(tmp_path, args):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", *args, "--preset", "smoke", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "test_metrics.json").read_text())
    assert f"{report['metrics']['accuracy']:.4f}" in result.output
    if "--refine" in args:
        assert {path.name for path in out.iterdir()} >= RUN_FILES | {STEP1_DIR, "window_labels.h5", "window_labels.json"}
        assert {path.name for path in (out / STEP1_DIR).iterdir()} >= RUN_FILES
        step1 = json.loads((out / STEP1_DIR / "config.json").read_text())["config"]
        assert (step1["options"]["aux"], step1["options"]["refine"], step1["epochs"]) == (
            True, "none", 1
        )


def _pipeline(tmp_path, refine: str, model: str = "ave", **overrides):
    config = _smoke(model, "wsel", refine=refine, **overrides)
    return config, train(config, tmp_path / refine)


def test_window_labels_keep_the_video_classes_and_leave_background_videos_background(tmp_path):
    config, report = _pipeline(tmp_path, "lr")
    run = tmp_path / "lr"
    labels = read_labels(run / "window_labels.h5", "window_labels").float()
    data = family_of("ave").load_data(config)
    video_labels = data.train.video_labels
    assert labels.shape == (len(video_labels), 4, 29)
    assert bool(((labels > 0) <= (video_labels[:, None] > 0) | (torch.arange(29) == 28)).all())
    assert bool((labels.sum(dim=-1) == 1).all())
    background = background_rows(video_labels)
    assert len(background) == 12 and bool((labels[background, :, 28] == 1).all())
    quality = json.loads((run / "window_labels.json").read_text())
    assert quality["val"]["num_windows"] == 4 * len(data.val) and 0.0 <= quality["val"]["window_accuracy"] <= 1.0
    assert quality["step1_epoch"] == json.loads((run / STEP1_DIR / "test_metrics.json").read_text())["epoch"]
    assert not json.loads((run / STEP1_DIR / "config.json").read_text())["config"]["options"]["aux"]
    assert report["epoch"] == json.loads((run / "test_metrics.json").read_text())["epoch"]


@pytest.mark.parametrize("refine", ["dummy", "pl"])
def test_dummy_trains_one_stage_and_pl_retrains_on_pseudo_labels(tmp_path, refine):
    config, report = _pipeline(tmp_path, refine, model="psp")
    run = tmp_path / refine
    assert (run / "test_metrics.json").is_file() and report["split"] == "test"
    assert (run / STEP1_DIR).is_dir() == (refine == "pl")
    if refine == "pl":
        pseudo = read_labels(run / "pseudo_labels.h5", "segment_labels")
        assert pseudo.dtype == torch.int64 and pseudo.shape == (len(family_of("psp").load_data(config).train), 10)


def test_step1_is_plain_weak_training_with_a_derived_seed():
    config = _smoke("ave", "wsel", refine="a+lr", seed=3)
    step1 = step1_config(config)
    assert (step1.options.refine, step1.options.aux, step1.epochs) == ("none", True, config.options.step1_epochs)
    assert step1.setting == "wsel"
    assert step1.seed != config.seed
    assert not step1_config(_smoke("ave", "wsel", refine="lr")).options.aux


def test_aux_partners_are_background_rows_drawn_per_seed_epoch_and_step():
    background = torch.tensor([5, 9, 11])
    draws = {(epoch, step): aux_partners(background, 64, 0, epoch, step) for epoch in (0, 1) for step in (0, 1)}
    assert all(set(draw.tolist()) <= {5, 9, 11} for draw in draws.values())
    assert len({tuple(draw.tolist()) for draw in draws.values()}) == 4
    assert torch.equal(aux_partners(background, 64, 0, 1, 1), draws[1, 1])


def test_objective_adds_the_window_loss_of_the_stored_labels():
    audio, visual, labels, video_labels = _batch()
    config = _smoke("ave", "wsel", refine="lr", backend="reference")
    family = family_of("ave")
    network = family.build(config).eval()
    window_labels = torch.zeros(5, 4, 29)
    window_labels[..., 28] = 1
    index = torch.tensor([4, 0, 2])
    batch = SimpleNamespace(audio=audio, visual=visual, labels=labels, video_labels=video_labels, index=index)
    output = family.objective(network, SimpleNamespace(extras={"window_labels": window_labels}), config)(batch, 0, 0)
    scores = network(audio, visual)
    windows = scores.unfold(1, 4, 2).max(dim=-1).values.softmax(dim=-1)
    expected = soft_margin_on_probs(max_mil_prob(scores), video_labels) + soft_margin_on_probs(
        windows.flatten(0, 1), window_labels[index].flatten(0, 1)
    )
    torch.testing.assert_close(output.loss, expected)


def test_resume_continues_whichever_stage_was_interrupted(tmp_path):
    config = _smoke("ave", "wsel", refine="a+lr", step1_epochs=2, epochs=2)
    uninterrupted = train(config, tmp_path / "whole")
    cut = tmp_path / "cut"
    assert train(config, cut, max_epochs_this_run=1) is None  # stopped in Step 1
    assert (cut / STEP1_DIR / "last.pt").is_file() and not (cut / "window_labels.h5").exists()
    assert train(config, cut, resume=True, max_epochs_this_run=1) is None  # Step 1 done, stopped in the last stage
    assert (cut / "last.pt").is_file() and not (cut / "test_metrics.json").exists()
    resumed = train(config, cut, resume=True)
    assert resumed["epoch"] == uninterrupted["epoch"]
    for name in ("test_metrics.json", "window_labels.json", f"{STEP1_DIR}/test_metrics.json"):
        assert (cut / name).read_text() == (tmp_path / "whole" / name).read_text()
    with pytest.raises(TrainingError, match="exists and is not empty"):
        train(config, cut)


def test_refinement_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match="--refine lr runs its stages on a single process"):
        train(_smoke("ave", "wsel", refine="lr"), tmp_path)
    assert not any(tmp_path.iterdir())
