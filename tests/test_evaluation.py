"""Evaluation in the engine: test_predictions.h5 of every run gives back test_metrics.json, the broadcast protocol
of weakly supervised runs, a second label set (train --eval-labels, eval --labels) and eval --protocol, with
bad label files refused by the CLI."""
import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.constants import BACKGROUND, NUM_CLASSES, NUM_SEGMENTS
from avel_fast.data import synthetic_labels
from avel_fast.metrics import SCALAR_METRICS, segment_metrics
from avel_fast.postprocess import b2ilc
from avel_fast.predictions import broadcast_predictions, dataset_segment_labels, read_predictions, score_predictions
from avel_fast.train import build_model, resolve_config, train
from avel_fast.train.data import FeatureStats, load_split
from avel_fast.train.families import family_of
from avel_fast.train.run_dir import load_checkpoint, read_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
SMOKE_VIDEOS = 120  # the smoke preset's synthetic event videos


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def write_labels(path, labels, key="avadataset"):
    with h5py.File(path, "w") as file:
        file.create_dataset(key, data=np.eye(NUM_CLASSES, dtype=np.float32)[labels])
    return path


def corrected_labels(seed=0):
    """The smoke data's labels with every test segment of an event video set to background (another label set)."""
    labels = dataset_segment_labels(None, seed, SMOKE_VIDEOS).copy()
    test = synthetic_labels(seed, SMOKE_VIDEOS, 0).splits["test"].numpy()
    labels[test[::2]] = BACKGROUND
    return labels


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Smoke runs: DPNet SEL with a second label set, EDRNet WSEL (B2ILC and the broadcast protocol)."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    label_file = write_labels(root / "right_labels.h5", corrected_labels())
    train(resolve_config("dpnet", preset="smoke", device="cpu", eval_labels=str(label_file)), root / "dpnet-sel")
    train(resolve_config("edrnet", preset="smoke", device="cpu", setting="wsel", epochs=1), root / "edrnet-wsel")
    torch.set_num_threads(threads)
    return root


def reported(run_dir):
    return json.loads((run_dir / "test_metrics.json").read_text())


def assert_same_metrics(recomputed, reported):
    """Equal, not close: the file holds what the report was computed from (JSON null is nan)."""
    for name in SCALAR_METRICS:
        expected = math.nan if reported[name] is None else reported[name]
        assert recomputed[name] == expected or math.isnan(recomputed[name]) and math.isnan(expected), name
    np.testing.assert_array_equal(recomputed["confusion_matrix"], reported["confusion_matrix"])


@pytest.mark.parametrize("name", ["dpnet-sel", "edrnet-wsel"])
def test_saved_predictions_give_back_every_test_metric(runs, name):
    run_dir = runs / name
    report, saved = reported(run_dir), read_predictions(run_dir / "test_predictions.h5")
    assert report["predictions"] == "test_predictions.h5" and report["labels"] == "data"
    assert saved.protocol == "argmax" and saved.labels == "data"
    np.testing.assert_array_equal(saved.video_index, synthetic_labels(0, SMOKE_VIDEOS, 0).splits["test"].numpy())
    labels = dataset_segment_labels(None, 0, SMOKE_VIDEOS)
    assert_same_metrics(score_predictions(saved, labels), report["metrics"])
    np.testing.assert_array_equal(saved.pred, saved.scores.argmax(-1))
    target = labels[saved.video_index]
    wsel = name.endswith("wsel")
    assert ("metrics_broadcast" in report) == wsel and ("b2ilc" in report) == name.startswith("edrnet")
    if "b2ilc" in report:
        assert_same_metrics(segment_metrics(b2ilc(saved.pred), target), report["b2ilc"])
    if wsel:
        assert_same_metrics(segment_metrics(broadcast_predictions(saved.scores), target), report["metrics_broadcast"])


@pytest.mark.parametrize("name", ["dpnet-sel", "edrnet-wsel"])
def test_saved_scores_are_the_raw_scores_of_the_best_checkpoint(runs, name):
    run_dir = runs / name
    config, best = read_config(run_dir), load_checkpoint(run_dir / "best.pt")
    model = build_model(config).eval()
    model.load_state_dict(best["model"])
    family = family_of(config.model)
    split = load_split(config, "test", FeatureStats.from_dict(best["feature_stats"]), family.pooled_visual)
    with torch.no_grad():  # batches cast the float16 maps of EDRNet's resident data
        scores = torch.cat([family.scores(model, b.audio, b.visual) for b in split.rows.batches(50, shuffle=False)])
    saved = read_predictions(run_dir / "test_predictions.h5")
    assert saved.scores.dtype == np.float32 and saved.scores.shape == (len(split.rows), NUM_SEGMENTS, NUM_CLASSES)
    np.testing.assert_allclose(saved.scores, scores.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(saved.scores.sum(-1), 1.0)  # scores, not probabilities


def copy_of(run_dir, tmp_path):
    """A copy of a run directory for a test whose evaluations rewrite its predictions."""
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def test_a_second_label_set_is_reported_under_its_name(runs, tmp_path):
    run_dir = copy_of(runs / "dpnet-sel", tmp_path)
    report, saved = reported(run_dir), read_predictions(run_dir / "test_predictions.h5")
    label_set = report["label_sets"]["right_labels"]
    assert label_set["file"] == str(runs / "right_labels.h5") and set(label_set) == {"file", "metrics"}
    assert_same_metrics(score_predictions(saved, corrected_labels()), label_set["metrics"])
    assert label_set["metrics"]["accuracy"] != report["metrics"]["accuracy"]
    output = invoke("eval", run_dir, "--labels", runs / "right_labels.h5")
    assert output.exit_code == 0, output.output
    assert f"{label_set['metrics']['accuracy']:.4f}" in output.output
    assert f"labels {runs / 'right_labels.h5'}" in output.output.replace("\n", "")
    again = read_predictions(run_dir / "test_predictions.h5")
    assert again.labels == str(runs / "right_labels.h5") and again.protocol == "argmax"
    np.testing.assert_array_equal(again.pred, saved.pred)


def test_eval_protocols_write_the_predictions_they_score(runs, tmp_path):
    run_dir = copy_of(runs / "edrnet-wsel", tmp_path)
    report = reported(run_dir)
    result = invoke("eval", run_dir, "--protocol", "broadcast")
    assert result.exit_code == 0, result.output
    assert f"{report['metrics_broadcast']['accuracy']:.4f}" in result.output and "protocol broadcast" in result.output
    saved = read_predictions(run_dir / "test_predictions.h5")
    assert saved.protocol == "broadcast" and saved.labels == "data"
    np.testing.assert_array_equal(saved.pred, broadcast_predictions(saved.scores))
    result = invoke("eval", run_dir, "--protocol", "argmax", "--b2ilc")
    assert result.exit_code == 0 and f"{report['b2ilc']['accuracy']:.4f}" in result.output
    saved = read_predictions(run_dir / "test_predictions.h5")
    assert saved.protocol == "argmax"
    np.testing.assert_array_equal(saved.pred, saved.scores.argmax(-1))  # the protocol's classes, before B2ILC
    result = invoke("eval", run_dir, "--split", "val")
    assert result.exit_code == 0, result.output
    val = read_predictions(run_dir / "val_predictions.h5")
    np.testing.assert_array_equal(val.video_index, synthetic_labels(0, SMOKE_VIDEOS, 0).splits["val"].numpy())
    result = invoke("eval", run_dir, "--protocol", "vote")
    assert result.exit_code == 1 and "--protocol 'vote': expected one of argmax, broadcast" in result.output


def bad_label_files(root):
    labels = corrected_labels()
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    two_hot = onehot.copy()
    two_hot[7, 2, 0] = 1
    files = {
        "absent.h5": "file not found",
        "videos.h5": f"{SMOKE_VIDEOS - 1} videos, but the other files hold {SMOKE_VIDEOS}",
        "classes.h5": "shape (120, 10, 28), expected one-hot",
        "two_hot.h5": "1 label rows are not one-hot (first: video 7, segment 2",
        "key.h5": "[avadataset]: dataset missing (file has: labels)",
        "b2ilc.h5": "may not be named 'b2ilc'",
    }
    for name, values in (("videos.h5", onehot[1:]), ("classes.h5", onehot[..., :28]), ("two_hot.h5", two_hot)):
        with h5py.File(root / name, "w") as file:
            file.create_dataset("avadataset", data=values)
    write_labels(root / "key.h5", labels, key="labels")
    write_labels(root / "b2ilc.h5", labels)
    return files


def test_bad_label_files_exit_1_with_the_file_and_the_problem(runs, tmp_path):
    run_dir = runs / "dpnet-sel"
    before = (run_dir / "test_predictions.h5").read_bytes()
    for name, problem in bad_label_files(tmp_path).items():
        result = invoke("eval", run_dir, "--labels", tmp_path / name)
        assert result.exit_code == 1, (name, result.output)
        assert name in result.output and problem in result.output.replace("\n", ""), result.output
    assert (run_dir / "test_predictions.h5").read_bytes() == before


@pytest.mark.parametrize("name", ["two_hot.h5", "b2ilc.h5"])
def test_train_refuses_a_bad_eval_label_file_before_writing_anything(tmp_path, name):
    problem = bad_label_files(tmp_path)[name]
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--eval-labels", tmp_path / name, "--out", out)
    assert result.exit_code == 1 and problem in result.output.replace("\n", ""), result.output
    assert not out.exists()
