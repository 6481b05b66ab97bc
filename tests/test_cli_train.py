"""`avel-fast train` / `avel-fast eval` end to end on the smoke preset, and their refusals of bad input."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.data import write_synthetic_ave
from avel_fast.train import PlainTrainProgress

RUN_FILES = {"config.json", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json", "test_predictions.h5"}
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def invoke(*args: str):
    """Run the command in-process on a wide virtual terminal (rich wraps and truncates at 80 columns)."""
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def assert_clean_failure(result, *fragments: str) -> None:
    """Exit code 1, no traceback, and one ``error:`` line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output


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
    assert config["machine"]["threads"] == 1 and config["machine"]["cpu"] and config["machine"]["gpu"] is None
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    report = json.loads((out / "test_metrics.json").read_text())
    assert report["split"] == "test" and report["epoch"] in (1, 2)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    assert ("b2ilc" in report) == (model == "edrnet")
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["val_accuracy"] == max(json.loads(line)["val"]["accuracy"] for line in (out / "metrics.jsonl").open())
    assert f"{report['metrics']['accuracy']:.4f}" in result.output
    title = f"best validation epoch {report['epoch']} (val acc {report['val_accuracy']:.4f})"
    assert title in result.output.splitlines()  # one line, not wrapped at the table's width


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
        (("train", "dpnet", "--preset", "tiny"), "unknown preset 'tiny'"),
        (("train", "dpnet", "--preset", "smoke", "--setting", "strong"), "unknown setting 'strong'"),
        (("train", "dpnet", "--preset", "smoke", "--precision", "fp8"), "unknown precision 'fp8'"),
        (("train", "dpnet", "--preset", "smoke", "--link"), "--link needs --replicate"),
        (("train", "edrnet", "--preset", "smoke", "--setting", "wsel", "--smb"), "--smb needs segment labels"),
        (("train", "dpnet", "--preset", "smoke", "--data", "{tmp}/absent"), "no such directory"),
        (("train", "dpnet", "--preset", "smoke", "--resume"), "--resume needs --out"),
        *(
            (("train", "dpnet", "--preset", "smoke", flag, value), f"{flag} must be a finite number")
            for flag, values in (
                ("--lr", ("nan", "inf", "-inf", "0", "-0.1")), ("--weight-decay", ("nan", "inf", "-1")),
                ("--dropout", ("nan", "1", "-0.5")), ("--epochs", ("0", "-1")), ("--batch-size", ("0", "-8")),
                ("--cycle", ("0",)), ("--dim", ("-1",)), ("--seed", ("-1",)), ("--data-seed", ("-1",)),
            )
            for value in values
        ),
        (("train", "edrnet", "--preset", "smoke", "--lss-weight", "nan"), "--lss-weight must be a finite number"),
        (("train", "ave", "--preset", "smoke", "--setting", "wsel", "--refine", "lr", "--tau", "2"),
         "--tau must be a finite number >= 0.0 and <= 1.0, got 2.0"),
        (("train", "psp", "--preset", "smoke", "--threshold", "5"), "--threshold must be a finite number >= 0.0 and"),
        (("train", "dpnet", "--preset", "smoke", "--lr", "1e39"), "--lr 1e+39 overflows float32"),
        (("train", "edrnet", "--preset", "smoke", "--lss-weight", "1e300"), "--lss-weight 1e+300 overflows float32"),
        (("train", "dpnet", "--preset", "smoke", "--seeds", "0"), "--seeds must be at least 1, got 0"),
        (("train", "edrnet", "--preset", "smoke", "--lss-weight", "-1"), "--lss-weight must be a finite number"),
        (("train", "edrnet", "--preset", "smoke", "--visual-channels", "0"), "--visual-channels must be a finite"),
        (("train", "edrnet", "--preset", "smoke", "--smb", "--smb-per-class", "-2"), "--smb-per-class must be a"),
    ],
)
def test_bad_train_requests_exit_non_zero_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    if "--resume" not in args:
        args = (*(arg.format(tmp=tmp_path) for arg in args), "--out", out)
    assert_clean_failure(invoke(*args), message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("model", "flag"),
    [("ave", "--cycle"), ("dpnet", "--smb"), ("dpnet", "--tau"), ("edrnet", "--visual-net"), ("pretext", "--dim")],
)
def test_an_option_of_another_family_is_not_an_option_of_the_command(tmp_path, model, flag):
    result = invoke("train", model, "--preset", "smoke", flag, "--out", tmp_path / "run")
    assert result.exit_code == 2 and f"No such option: {flag}" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("model", "own", "foreign"),
    [
        ("dpnet", ("--replicate / --no-replicate", "--link / --no-link", "--dropout", "--cycle"),
         ("--tau", "--smb", "--visual-net", "--lss", "--refine", "--threshold", "--k ")),
        ("edrnet", ("--lss / --no-lss", "--lss-weight", "--smb-per-class", "--visual-channels"),
         ("--replicate", "--tau", "--dropout", "--features")),
        ("ave", ("--refine", "--tau", "--step1-epochs", "--aux / --no-aux"), ("--dim", "--cycle", "--threshold")),
        ("psp", ("--threshold", "--dropout", "--refine"), ("--dim", "--smb", "--replicate")),
        ("pretext", ("--features", "--targets", "--k", "--visual-net"),
         ("--dim", "--standardize", "--backend", "--tau")),
    ],
)  # fmt: skip
def test_each_family_has_its_command_with_the_shared_options_and_its_own(model, own, foreign):
    result = invoke("train", model, "--help")
    assert result.exit_code == 0, result.output
    for option in ("--preset", "--epochs", "--lr", "--seed", "--device", "--out", "--resume", "--seeds", *own):
        assert option in result.output, option
    for option in foreign:
        assert option not in result.output, option


@pytest.mark.parametrize("args", [("train",), ("train", "dpnet"), ("eval",), ("env",), ("data", "synth"), ("report",)])
def test_help_shows_no_placeholder_after_a_flag(args):
    result = invoke(*args, "--help")
    assert result.exit_code == 0 and "--help" in result.output and "<bool>" not in result.output, result.output


@pytest.mark.parametrize(("flag", "value"), [("--epochs", "inf"), ("--batch-size", "nan"), ("--lr", "fast")])
def test_a_number_that_does_not_parse_is_a_usage_error_naming_the_option(tmp_path, flag, value):
    result = invoke("train", "dpnet", "--preset", "smoke", flag, value, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert not (tmp_path / "run").exists()


def test_invalid_ave_directory_is_reported_with_the_loader_message(tmp_path):
    data = write_synthetic_ave(tmp_path / "ave", seed=0, num_videos=30, num_background_videos=0)
    _corrupt_audio(data)
    result = invoke("train", "dpnet", "--preset", "smoke", "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "audio_feature.h5" in result.output and "avadataset" in result.output
    assert "training dpnet" not in result.output  # no header for a run refused while its data loads
    assert not (tmp_path / "run").exists()


def _rewrite(path, rows=None, values=None):
    """Rewrite the ``avadataset`` (or ``order``) of an h5 file with its first `rows` rows or with `values`."""
    with h5py.File(path, "r") as file:
        key = next(iter(file.keys()))
        stored = file[key][...]
    path.unlink()
    with h5py.File(path, "w") as file:
        file[key] = stored[:rows] if values is None else values


@pytest.mark.parametrize(
    ("file", "setting", "named", "problem"),
    [
        ("audio_feature.h5", "sel", "visual_feature.h5", "30 videos, but the other files hold 29"),
        ("visual_feature.h5", "sel", "visual_feature.h5", "29 videos, but the other files hold 30"),
        ("labels.h5", "sel", "labels.h5", "29 videos, but the other files hold 30"),
        ("mil_labels.h5", "sel", "mil_labels.h5", "29 videos, but the other files hold 30"),
        ("test_order.h5", "sel", "test_order.h5", "1 indices outside 0..29 (e.g. 30)"),
        ("Annotations.txt", "sel", "Annotations.txt", "29 event lines, but the feature files hold 30 videos"),
        ("visual_feature_noisy.h5", "wsel", "visual_feature_noisy.h5", "2 videos, but the other files hold 3"),
        ("labels_noisy.h5", "wsel", "labels_noisy.h5", "2 videos, but the other files hold 3"),
    ],
)
def test_files_that_disagree_on_the_number_of_videos_are_named(tmp_path, file, setting, named, problem):
    data = write_synthetic_ave(tmp_path / "ave", seed=0, num_videos=30, num_background_videos=3)
    path = data / file
    if file == "Annotations.txt":
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    elif file.endswith("_order.h5"):
        _rewrite(path, values=np.array([0, 30], dtype=np.int64))  # 30 is one past the last video
    else:
        _rewrite(path, rows=-1)
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--setting", setting, "--data", data, "--out", out)
    assert_clean_failure(result, named, problem)
    assert not out.exists()


def test_an_unwritable_out_is_refused_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_clean_failure(invoke("train", "dpnet", "--preset", "smoke", "--out", blocker), "is a file")
    assert_clean_failure(
        invoke("train", "dpnet", "--preset", "smoke", "--out", blocker / "run"), f"{blocker} is a file"
    )
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: refuse the file the probe creates, as a read-only disk would

        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    result = invoke("train", "dpnet", "--preset", "smoke", "--out", locked / "run")
    assert_clean_failure(result, f"--out {locked / 'run'}: cannot write in {locked} (Permission denied)")
    assert blocker.read_text() == "x" and list(locked.iterdir()) == []
    refined = invoke("train", "ave", "--preset", "smoke", "--setting", "wsel", "--refine", "lr", "--out", blocker)
    assert_clean_failure(refined, "is a file")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A finished one-epoch DPNet smoke run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = invoke("train", "dpnet", "--preset", "smoke", "--epochs", "1", "--out", out)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def _foreign_checkpoint(path, model, dim):
    """`path`'s checkpoint with the weights (and config) of `model` at width `dim`."""
    from avel_fast.train import build_model, resolve_config

    checkpoint = torch.load(path, weights_only=True)
    config = resolve_config(model, preset="smoke", dim=dim, device="cpu")
    torch.save({**checkpoint, "model": build_model(config).state_dict(), "config": config.to_dict()}, path)


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        ("best.pt", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a readable checkpoint"),
        ("last.pt", lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable checkpoint"),
        ("best.pt", lambda p: p.write_bytes(b"\x00garbage" * 50), "not a readable checkpoint"),
        ("last.pt", lambda p: p.write_bytes(b""), "not a readable checkpoint"),
        ("best.pt", lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a checkpoint written by avel-fast"),
        ("last.pt", lambda p: torch.save([1, 2], p), "not a checkpoint written by avel-fast"),
        (
            "best.pt", lambda p: _foreign_checkpoint(p, "edrnet", 32),
            "weights of edrnet with dim 32 do not fit this run's dpnet with dim 32 (tensors: 58 missing, 42 unexpected",
        ),
        (
            "last.pt", lambda p: _foreign_checkpoint(p, "dpnet", 48),
            "weights of dpnet with dim 48 do not fit this run's dpnet with dim 32 (tensors: 59 of another shape;",
        ),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_named_by_eval_and_resume(smoke_run, tmp_path, name, damage, problem):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    damage(run / name)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    result = invoke("eval", run) if name == "best.pt" else invoke("train", "dpnet", "--out", run, "--resume")
    assert_clean_failure(result, str(run / name), problem)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


def test_eval_of_a_missing_run_a_file_or_a_run_without_best_checkpoint(smoke_run, tmp_path):
    assert_clean_failure(invoke("eval", tmp_path / "absent"), "not a run directory")
    (tmp_path / "file").write_text("x")
    assert_clean_failure(invoke("eval", tmp_path / "file"), "not a run directory")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(smoke_run / "config.json", run)
    assert_clean_failure(invoke("eval", run), f"{run}: no best.pt")


CLI = [sys.executable, "-c", "from avel_fast.cli.main import app; app()"]


def test_ctrl_c_leaves_a_resumable_run_and_says_how_to_resume(tmp_path):
    out, epochs = tmp_path / "run", 8
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    train_args = ["train", "dpnet", "--preset", "smoke", "--out", str(out)]
    process = subprocess.Popen(
        [*CLI, *train_args, "--epochs", str(epochs)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=environment,
    )
    deadline = time.monotonic() + 300
    while not (out / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)  # last.pt appears atomically: epoch 1 (or later) is saved
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert "Traceback" not in output
    saved = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert 1 <= saved < epochs, output
    line = next(line for line in output.splitlines() if line.startswith("error:"))
    assert line == (
        f"error: interrupted at epoch {saved + 1}; {out / 'last.pt'} holds epoch {saved}: "
        f"resume with avel-fast train dpnet --resume --out {out}"
    )
    resumed = subprocess.run([*CLI, *train_args, "--resume"], capture_output=True, text=True, env=environment)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").open()] == list(range(1, epochs + 1))
    assert (out / "test_metrics.json").is_file()


def test_resume_names_the_stored_run_and_its_file_not_an_option(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    result = invoke("train", "edrnet", "--resume", "--out", run)
    resume = f"resume it with avel-fast train dpnet --resume --out {run}"
    assert_clean_failure(result, f"{run}/config.json holds a dpnet run, not edrnet: {resume}")
    assert "--model" not in result.output
    stored = json.loads((run / "config.json").read_text())
    stored["config"]["options"]["lss"] = True  # a config.json that does not fit its model
    (run / "config.json").write_text(json.dumps(stored))
    for result in (invoke("train", "dpnet", "--resume", "--out", run), invoke("eval", run)):
        refused = f"{run / 'config.json'}: the stored config is refused: lss: not an option of dpnet"
        assert_clean_failure(result, refused)
        assert "--lss" not in result.output


def test_output_to_a_file_is_not_wrapped_and_has_a_line_per_epoch(tmp_path):
    out = tmp_path / ("a-directory-with-a-long-name-" * 3) / "run"
    log = tmp_path / "train.log"
    environment = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    with open(log, "w") as stream:
        subprocess.run(
            [*CLI, "train", "dpnet", "--preset", "smoke", "--epochs", "1", "--out", str(out)], stdout=stream,
            stderr=subprocess.STDOUT, env={**environment, "OMP_NUM_THREADS": "1"}, check=True, timeout=300,
        )  # fmt: skip
    lines = log.read_text().splitlines()
    assert f"run directory: {out}" in lines, lines
    assert any(line.startswith("training dpnet (sel, preset smoke") and line.endswith(f"into {out}") for line in lines)
    assert any(line.startswith("epoch   1 loss") for line in lines), lines


def test_plain_progress_prints_the_header_first_and_a_line_per_interval():
    console = Console(file=io.StringIO(), width=400)
    progress = PlainTrainProgress(console, header="training x", interval=0.0)
    progress.stage("step 1 of y")
    assert console.file.getvalue() == ""  # nothing before the loop starts (its data loaded and checked)
    progress.start(20, 0)
    progress.step(0, 2, 1.5, 0.25, steps=10)
    lines = console.file.getvalue().splitlines()
    assert lines[:2] == ["training x", "step 1 of y"]
    assert lines[2].startswith("epoch 1/2 step 10/20 loss 1.5000 acc 25.00% | 0:00:00 spent, ETA")
    slow = PlainTrainProgress(Console(file=io.StringIO()), interval=3600.0)
    slow.start(20, 0)
    slow.step(0, 2, 1.5, 0.25, steps=10)
    assert slow.console.file.getvalue() == ""


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
