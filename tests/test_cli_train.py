"""`avel-fast train` / `avel-fast eval` end to end on the smoke preset, and their refusals of bad input."""
import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.data import write_synthetic_ave

RUN_FILES = {"config.json", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json", "test_predictions.h5"}
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def invoke(*args: str):
    """Run the command in-process on a wide virtual terminal (rich wraps and truncates at 80 columns)."""
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("dpnet", ()),
        ("edrnet", ()),
        ("dpnet", ("--replicate", "--link")),
        ("edrnet", ("--smb",)),
        ("dpnet", ("--setting", "wsel")),
    ],
)
def test_smoke_run_writes_a_complete_run_directory(tmp_path, model, flags):
    out = tmp_path / "run"
    result = invoke("train", model, "--preset", "smoke", *flags, "--out", out)
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == RUN_FILES
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model"] == model and config["config"]["preset"] == "smoke"
    assert set(config["versions"]) == {"avel_fast", "torch", "numpy", "python"}
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["split"] == "test" and report["epoch"] in (1, 2)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    assert ("b2ilc" in report) == (model == "edrnet")
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["val_accuracy"] == max(json.loads(line)["val"]["accuracy"] for line in (out / "metrics.jsonl").open())
    assert f"{report['metrics']['accuracy']:.4f}" in result.output


def test_eval_prints_the_full_table_of_the_selected_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "edrnet", "--preset", "smoke", "--epochs", "1", "--out", out).exit_code == 0
    report = json.loads((out / "test_metrics.json").read_text())
    plain = invoke("eval", out)
    assert plain.exit_code == 0, plain.output
    assert f"{report['metrics']['accuracy']:.4f}" in plain.output
    assert "non-AVE F1" in plain.output and "Church bell" in plain.output
    corrected = invoke("eval", out, "--b2ilc")
    assert corrected.exit_code == 0 and f"{report['b2ilc']['accuracy']:.4f}" in corrected.output
    assert invoke("eval", out, "--split", "val").exit_code == 0


def test_train_on_an_ave_directory_given_as_a_relative_path(tmp_path, monkeypatch):
    data = write_synthetic_ave(tmp_path / "ave", seed=3, num_videos=60, num_background_videos=6)
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "dpnet", "--preset", "smoke", "--epochs", "1", "--data", "ave", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["data"] == str(data.resolve())
    assert (out / "test_metrics.json").is_file()
    monkeypatch.chdir(out)  # the run is evaluated from anywhere
    assert invoke("eval", out).exit_code == 0


def _corrupt_audio(directory):
    with h5py.File(directory / "audio_feature.h5", "r+") as file:
        values = file["avadataset"][...]
        values[0, 0, 0] = np.nan
        file["avadataset"][...] = values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "vggnet", "--preset", "smoke"), "unknown model 'vggnet'"),
        (("train", "ave", "--preset", "smoke", "--refine", "lr"), "--refine lr refines weak labels"),
        (("train", "ave", "--preset", "smoke", "--cycle", "3"), "--cycle is not used by ave"),
        (("train", "dpnet", "--preset", "tiny"), "unknown preset 'tiny'"),
        (("train", "dpnet", "--preset", "smoke", "--setting", "strong"), "unknown setting 'strong'"),
        (("train", "dpnet", "--preset", "smoke", "--precision", "fp8"), "unknown precision 'fp8'"),
        (("train", "dpnet", "--preset", "smoke", "--link"), "--link needs --replicate"),
        (("train", "dpnet", "--preset", "smoke", "--smb"), "is not an option of dpnet"),
        (("train", "edrnet", "--preset", "smoke", "--setting", "wsel", "--smb"), "--smb needs segment labels"),
        (("train", "dpnet", "--preset", "smoke", "--data", "{tmp}/absent"), "no such directory"),
        (("train", "dpnet", "--preset", "smoke", "--resume"), "--resume needs --out"),
    ],
)
def test_bad_train_requests_exit_non_zero_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    if "--resume" not in args:
        args = (*(arg.format(tmp=tmp_path) for arg in args), "--out", out)
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert not out.exists()


def test_invalid_ave_directory_is_reported_with_the_loader_message(tmp_path):
    data = write_synthetic_ave(tmp_path / "ave", seed=0, num_videos=30, num_background_videos=0)
    _corrupt_audio(data)
    result = invoke("train", "dpnet", "--preset", "smoke", "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "audio_feature.h5" in result.output and "avadataset" in result.output
    assert not (tmp_path / "run").exists()


def test_resume_without_checkpoint_and_eval_of_a_non_run_fail_cleanly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("train", "dpnet", "--preset", "smoke", "--out", empty, "--resume")
    assert result.exit_code == 1 and "not a run directory" in result.output
    out = tmp_path / "run"
    assert invoke("train", "dpnet", "--preset", "smoke", "--epochs", "1", "--out", out).exit_code == 0
    (out / "last.pt").unlink()
    result = invoke("train", "dpnet", "--out", out, "--resume")
    assert result.exit_code == 1 and "no last.pt" in result.output
    result = invoke("eval", empty)
    assert result.exit_code == 1 and "not a run directory" in result.output
    assert list(empty.iterdir()) == []


def test_refuses_a_non_empty_out_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = invoke("train", "dpnet", "--preset", "smoke", "--out", tmp_path)
    assert result.exit_code == 1 and "not empty" in result.output
    assert [path.name for path in tmp_path.iterdir()] == ["keep.txt"]


def _total_row(output: str, table_title: str) -> list[int]:
    table = output[output.index(table_title):]
    row = next(line for line in table.splitlines() if "total" in line)
    return [int(cell) for cell in row.replace("│", " ").split()[1:]]


def test_states_counts_every_smb_and_replicate_database_of_the_real_training_split(real_ave_dir, train_labels):
    from avel_fast.constants import BACKGROUND

    result = invoke("data", "states", real_ave_dir)
    assert result.exit_code == 0, result.output
    assert "event of length 0 at line 27" in result.output
    train = train_labels
    has_event = (train != BACKGROUND).any(axis=1)
    event_videos = int(has_event.sum())
    starts_at_zero = int((train[:, 0] != BACKGROUND).sum())
    assert f"training split of {real_ave_dir}: {len(train)} videos" in result.output
    bg_1, _, start_1, start_2, *_ = _total_row(result.output, "SMB video fusion")
    assert (start_1, start_1 + start_2) == (starts_at_zero, event_videos)
    assert bg_1 == int((train[has_event] == BACKGROUND).sum())  # a video without event has no class to file under
    start_border, start_open, *_ = _total_row(result.output, "Replicate:")
    assert (start_open, start_border) == (start_1, start_2)


def test_states_of_the_synthetic_labels_and_bad_requests():
    from avel_fast.data import synthetic_labels

    result = invoke("data", "states", "--synthetic", "--seed", "4", "--videos", "200")
    assert result.exit_code == 0, result.output
    train = synthetic_labels(4, 200, 0).splits["train"]
    assert f"synthetic AVE (seed 4, 200 videos): {len(train)} videos" in result.output
    for args in ([], ["--synthetic", "somewhere"]):
        result = invoke("data", "states", *args)
        assert result.exit_code == 1 and "either an AVE directory or --synthetic" in result.output
