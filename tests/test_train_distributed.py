"""Data-parallel training under torchrun (gloo, 2 CPU processes) against the single-process run: same losses up to
reduction order, same selected epoch, resume after a kill, a killed rank ends the job."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avel_fast.train import resolve_config, train
from avel_fast.train import TrainingError
from avel_fast.train.distributed import TIMEOUT_ENV, DistributedContext, distributed_context
from avel_fast.train.run_dir import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

RUNS = {
    "dpnet": ("--replicate", "--link", "--dropout", "0"),  # replica pairs, RGCT groups, dropout off
    "edrnet": ("--smb",),  # LSS (smoke default) and SMB videos
}
EPOCHS, LR = 3, {"dpnet": 3e-3, "edrnet": 0.01}  # the best validation epoch is 2, not the first
TIMEOUT_S = 240


def torchrun(*args, processes: int = 2, **popen) -> subprocess.Popen:
    """``python -m torch.distributed.run --nproc-per-node=N -m avel_fast ARGS`` in its own process group."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", "-m", "avel_fast"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [*command, *map(str, args)], env=environment, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, output


def smoke_args(model: str, out: Path, epochs: int = EPOCHS) -> list:
    return ["train", model, "--preset", "smoke", "--device", "cpu", "--epochs", epochs, "--lr", LR[model],
            *RUNS[model], "--out", out]  # fmt: skip


def single_process_run(model: str, out: Path, epochs: int = EPOCHS) -> list[dict]:
    """The same run in this process (what ``avel-fast train`` does with one process)."""
    flags = dict(replicate=True, link=True, dropout=0.0) if model == "dpnet" else dict(smb=True)
    train(resolve_config(model, preset="smoke", device="cpu", epochs=epochs, lr=LR[model], **flags), out)
    return read_metrics(out)


def assert_same_training(records: list[dict], expected: list[dict]) -> None:
    assert [r["epoch"] for r in records] == [r["epoch"] for r in expected]
    assert [r["train_loss"] for r in records] == pytest.approx([r["train_loss"] for r in expected], rel=1e-5)
    assert [r["train_accuracy"] for r in records] == [r["train_accuracy"] for r in expected]
    assert [r["val"] for r in records] == [r["val"] for r in expected]
    assert [r["best"] for r in records] == [r["best"] for r in expected]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("model", sorted(RUNS))
def test_two_processes_train_as_one(tmp_path, model):
    """Smoke sizes: 97 training videos (DPNet) or 97 + 112 SMB-fused (EDRNet) in batches of 16, so each epoch ends
    with a batch of one video, which one rank trains on while the other runs it with weight 0."""
    expected = single_process_run(model, tmp_path / "one")
    code, output = finish(torchrun(*smoke_args(model, tmp_path / "two")))
    assert code == 0, output
    assert_same_training(read_metrics(tmp_path / "two"), expected)
    reports = [json.loads((tmp_path / run / "test_metrics.json").read_text()) for run in ("one", "two")]
    assert reports[1]["epoch"] == reports[0]["epoch"] == 2
    assert reports[1]["metrics"]["accuracy"] == reports[0]["metrics"]["accuracy"]
    assert output.count("best validation epoch") == 1  # rank 0 alone prints


def test_resume_under_torchrun_after_a_kill(tmp_path):
    out, epochs = tmp_path / "run", EPOCHS + 1
    expected = single_process_run("dpnet", tmp_path / "one", epochs)
    process = torchrun(*smoke_args("dpnet", out, epochs))
    wait_for(out / "last.pt", process)  # an epoch is saved
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(TIMEOUT_S)
    assert not (out / "test_metrics.json").exists()
    code, output = finish(torchrun("train", "dpnet", "--out", out, "--resume"))
    assert code == 0, output
    assert_same_training(read_metrics(out), expected)
    assert json.loads((out / "test_metrics.json").read_text())["epoch"] == json.loads(
        (tmp_path / "one" / "test_metrics.json").read_text()
    )["epoch"]


def _rank_of(pid: int) -> int | None:
    variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((int(v[len(b"RANK="):]) for v in variables if v.startswith(b"RANK=")), None)


@pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file(), reason="finds the ranks through /proc"
)
def test_a_killed_rank_ends_the_job_with_one_avel_fast_line(tmp_path):
    """torchrun's report names the killed rank; avel-fast's own output is one error line with the resume hint
    (docs/distributed.md#failures)."""
    out = tmp_path / "run"
    process = torchrun(*smoke_args("dpnet", out, epochs=200))
    wait_for(out / "last.pt", process)
    workers = [int(pid) for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
    os.kill(next(pid for pid in workers if _rank_of(pid) == 1), signal.SIGKILL)
    killed = time.monotonic()
    code, output = finish(process, timeout=60)
    assert code != 0 and time.monotonic() - killed < 60
    assert "Signal 9 (SIGKILL)" in output and "rank      : 1" in output
    lines = [line for line in output.splitlines() if "error:" in line]
    assert len(lines) == 1, output
    assert "error: a process of the torchrun job stopped (" in lines[0]
    assert "holds epoch" in lines[0]
    assert f"torchrun --nproc-per-node=2 -m avel_fast train dpnet --resume --out {out}" in lines[0]
    assert "[rank0]: Traceback" not in output


@pytest.mark.parametrize(
    ("world_size", "batch", "shares"),
    [(1, 16, [(0, 16)]), (2, 16, [(0, 8), (8, 16)]), (3, 16, [(0, 5), (5, 10), (10, 16)]), (2, 1, [None, (0, 1)])],
)
def test_shares_cover_the_global_batch_in_order_and_weigh_to_its_mean(world_size, batch, shares):
    got = [DistributedContext(rank, world_size).share(batch) for rank in range(world_size)]
    for share, expected in zip(got, shares):
        if expected is None:  # no video left for this rank: it runs the first one with weight 0
            assert (share.positions, share.count, share.weight) == (slice(0, 1), 0, 0.0)
        else:
            assert (share.positions.start, share.positions.stop) == expected == (expected[0], expected[0] + share.count)
    losses = torch.rand(batch, dtype=torch.float64)  # per-video losses; DDP averages the weighted share means
    reduced = sum(share.weight * losses[share.positions].mean() for share in got) / world_size
    assert float(reduced) == pytest.approx(float(losses.mean()))


@pytest.mark.parametrize("value", ["soon", "0"])
def test_a_bad_timeout_is_refused_before_the_process_group_starts(monkeypatch, value):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(TrainingError, match=f"{TIMEOUT_ENV}={value!r}: expected a positive number of seconds"):
        with distributed_context("cpu"):
            pass
