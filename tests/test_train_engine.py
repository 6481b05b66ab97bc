"""The training loop: resume equals an uninterrupted run, determinism, fast vs reference backends."""
import json

import pytest
import torch

from avel_fast.train import TrainingError, evaluate_run, resolve_config, resume_config, train
from avel_fast.train import family_of
from avel_fast.train.data import load_source
from avel_fast.train.run_dir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _smoke(model: str, **overrides):
    return resolve_config(model, preset="smoke", device="cpu", **overrides)


def _without_timing(records):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in records]


def test_resume_after_interruption_gives_the_uninterrupted_run(tmp_path):
    config = _smoke("dpnet", epochs=3, replicate=True, link=True)
    full = train(config, tmp_path / "full")
    assert train(config, tmp_path / "cut", max_epochs_this_run=1) is None
    assert not (tmp_path / "cut" / "test_metrics.json").exists()
    assert [record["epoch"] for record in read_metrics(tmp_path / "cut")] == [1]
    resumed = train(resume_config(tmp_path / "cut"), tmp_path / "cut", resume=True)

    assert json.loads((tmp_path / "cut" / "test_metrics.json").read_text()) == json.loads(
        (tmp_path / "full" / "test_metrics.json").read_text()
    )
    assert resumed["metrics"]["accuracy"] == full["metrics"]["accuracy"]
    assert _without_timing(read_metrics(tmp_path / "cut")) == _without_timing(read_metrics(tmp_path / "full"))
    last = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and set(last) >= {"model", "optimizer", "rng", "best_accuracy", "best_epoch"}


def test_resume_drops_a_metrics_line_cut_by_the_kill(tmp_path):
    config = _smoke("dpnet", epochs=2)
    train(config, tmp_path / "full")
    train(config, tmp_path / "cut", max_epochs_this_run=1)
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as stream:
        stream.write('{"epoch": 2, "lr": 0.00')  # killed in the middle of the next epoch's line
    assert [record["epoch"] for record in read_metrics(tmp_path / "cut")] == [1]
    train(resume_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert _without_timing(read_metrics(tmp_path / "cut")) == _without_timing(read_metrics(tmp_path / "full"))


@pytest.mark.parametrize("left", [("config.json",), ("config.json", "metrics.jsonl", "best.pt")])
def test_a_run_stopped_before_its_first_last_pt_can_be_started_again(tmp_path, left):
    """A run killed in its first epoch (before or after best.pt and the metrics line) has nothing to resume."""
    for name in left:
        (tmp_path / name).write_text('{"epoch": 1}\n' if name == "metrics.jsonl" else "{}")
    assert train(_smoke("dpnet", epochs=1), tmp_path)["metrics"]["accuracy"] >= 0.0
    assert (tmp_path / "test_metrics.json").is_file()
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1]



def test_same_config_twice_gives_identical_metrics(tmp_path):
    config = _smoke("edrnet", epochs=1, smb=True)
    first, second = train(config, tmp_path / "a"), train(config, tmp_path / "b")
    assert _without_timing(read_metrics(tmp_path / "a")) == _without_timing(read_metrics(tmp_path / "b"))
    assert json.dumps(first, default=str) == json.dumps(second, default=str)


@pytest.mark.parametrize(
    ("model", "overrides"), [("dpnet", dict(replicate=True, link=True)), ("edrnet", dict(lss=True))]
)
def test_fast_and_reference_backends_train_alike(tmp_path, model, overrides):
    """Same seed, same data: the per-epoch losses of the fast and the reference modules agree."""
    losses = {}
    for backend in ("fast", "reference"):
        train(_smoke(model, backend=backend, **overrides), tmp_path / backend)
        losses[backend] = [record["train_loss"] for record in read_metrics(tmp_path / backend)]
    assert len(losses["fast"]) == 2
    assert losses["fast"] == pytest.approx(losses["reference"], rel=1e-4)


def test_resume_refuses_a_changed_option_and_a_missing_checkpoint(tmp_path):
    config = _smoke("dpnet", epochs=1)
    train(config, tmp_path / "run")
    with pytest.raises(TrainingError, match="--lr 0.5 differs"):
        resume_config(tmp_path / "run", lr=0.5)
    (tmp_path / "run" / "last.pt").unlink()
    with pytest.raises(TrainingError, match="no last.pt"):
        train(config, tmp_path / "run", resume=True)


def test_refuses_to_train_into_a_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(TrainingError, match="exists and is not empty"):
        train(_smoke("dpnet"), tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_raw_features_reach_the_model_unchanged_and_the_checkpoints_keep_no_statistics(tmp_path):
    config = _smoke("dpnet", epochs=1, standardize=False)
    data, source = family_of("dpnet").load_data(config), load_source(config, pooled=True)
    assert data.stats is None
    for split in ("train", "val", "test"):
        rows, raw = getattr(data, split), source.subset(split)
        assert torch.equal(rows.audio, raw.audio) and torch.equal(rows.visual, raw.visual)
    standardized = family_of("dpnet").load_data(_smoke("dpnet", epochs=1))
    assert standardized.stats is not None and not torch.equal(standardized.val.audio, data.val.audio)

    report = train(config, tmp_path)
    for name in ("best.pt", "last.pt"):
        assert torch.load(tmp_path / name, weights_only=True)["feature_stats"] is None
    _, metrics = evaluate_run(tmp_path)
    assert metrics["accuracy"] == report["metrics"]["accuracy"]


def test_a_run_records_its_machine_and_uses_deterministic_algorithms(tmp_path):
    train(_smoke("dpnet", epochs=1), tmp_path)
    machine = json.loads((tmp_path / "config.json").read_text())["machine"]
    assert machine["threads"] == torch.get_num_threads() == 1  # the one_thread fixture
    assert isinstance(machine["cpu"], str) and machine["cpu"] and machine["gpu"] is None
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
