"""`avel-fast report`: figures and index.html of real smoke runs and of a two-seed sweep; matplotlib missing."""
import json
import re
import sys

import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.predictions import dataset_segment_labels, read_predictions, score_predictions, write_predictions
from avel_fast.report import INSTALL_HINT, ReportError, build_report, is_sweep_dir
from avel_fast.train.sweep import read_summary, seed_dir
from avel_fast.train import resolve_config, train_seeds
from avel_fast.train.run_dir import read_config

pytest.importorskip("matplotlib")
runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FIGURES = ("learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "timelines.png")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two smoke DPNet seeds trained into a sweep directory (their predictions and summary.json)."""
    root = tmp_path_factory.mktemp("sweep") / "sweep"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_seeds(resolve_config("dpnet", preset="smoke", device="cpu", seed=3), root, 2)
    torch.set_num_threads(threads)
    return root


def assert_png(path):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0, path


def referenced_images(index):
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_predictions_of_a_real_run_give_its_test_metrics(sweep):
    run_dir = seed_dir(sweep, 3)
    config = read_config(run_dir)
    labels = dataset_segment_labels(None, config.data_seed, config.synthetic_videos)
    recomputed = score_predictions(read_predictions(run_dir / "test_predictions.h5"), labels)
    summary = read_summary(sweep)
    assert recomputed["accuracy"] == summary["metrics"]["accuracy"]["values"][0]


def test_sweep_report_through_the_cli(sweep):
    assert is_sweep_dir(sweep) and not is_sweep_dir(seed_dir(sweep, 3))
    result = runner.invoke(app, ["report", str(sweep)])
    assert result.exit_code == 0, result.output
    index = sweep / "report" / "index.html"
    assert str(index) in result.output.replace("\n", "")
    images = referenced_images(index)
    assert images[0] == "spread.png" and set(images[1:]) == {"seed-3/learning_curves.png", "seed-4/learning_curves.png"}
    for image in images:
        assert_png(index.parent / image)
    text = index.read_text()
    accuracy = read_summary(sweep)["metrics"]["accuracy"]
    assert f"{accuracy['mean']:.4f} ± {accuracy['std']:.4f}" in text
    for seed in (3, 4):
        seed_index = index.parent / f"seed-{seed}" / "index.html"
        assert f'href="seed-{seed}/index.html"' in text and 'href="../index.html"' in seed_index.read_text()
        assert sorted(referenced_images(seed_index)) == sorted(RUN_FIGURES)
        for name in RUN_FIGURES:
            assert_png(seed_index.parent / name)
        seed_text = seed_index.read_text()
        assert "dpnet" in seed_text and "weighted F1" in seed_text and "(equal to test_metrics.json)" in seed_text


def copy_run(sweep, run_dir, names):
    run_dir.mkdir()
    for name in names:
        (run_dir / name).write_bytes((seed_dir(sweep, 3) / name).read_bytes())
    return run_dir


def test_predictions_that_disagree_with_the_test_metrics_are_flagged(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    saved = read_predictions(seed_dir(sweep, 3) / "test_predictions.h5")
    config = read_config(run_dir)
    labels = dataset_segment_labels(None, config.data_seed, config.synthetic_videos)[saved.video_index]
    write_predictions(run_dir / "test_predictions.h5", saved.video_index, labels, saved.scores)
    text = build_report(run_dir).read_text()
    assert "labels of the data: 1.0000 (<b>differs from test_metrics.json</b>)" in text


def test_a_run_without_predictions_or_test_metrics(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl"))
    index = build_report(run_dir)
    assert referenced_images(index) == ["learning_curves.png"]
    assert "no test_metrics.json" in index.read_text() and "no test_predictions.h5" in index.read_text()


def test_a_corrupt_test_metrics_file_is_a_clean_error(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    (run_dir / "test_metrics.json").write_text('{"split": "te')
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 1 and "test_metrics.json: not a readable JSON file" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CUDA run reported on a machine without CUDA")
def test_a_cuda_run_is_reported_on_a_machine_without_cuda(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["device"] = "cuda"
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert "learning_curves.png" in referenced_images(build_report(run_dir))


def test_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a run directory" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no such directory" in result.output


def test_without_matplotlib(monkeypatch, tmp_path):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ReportError, match=re.escape(INSTALL_HINT)):
        build_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "pip install 'avel_fast[report]'" in result.output
    assert not (tmp_path / "report").exists()
