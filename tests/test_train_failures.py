"""A run that cannot go on (divergence, out of memory, a full disk, a lost torchrun process) ends in one line,
leaving its run directory resumable from its last good ``last.pt`` or removed (docs/training.md#failures)."""
import errno
import os
from math import nan

import pytest
import torch
from _sync_probe import SyncProbe
from typer.testing import CliRunner

import avel_fast.atomic
import avel_fast.train.loop as loop
from avel_fast.atomic import atomic_write
from avel_fast.cli.main import app
from avel_fast.train import family_of, resolve_config, train
from avel_fast.train.distributed import DistributedContext, JobStopped
from avel_fast.train.loop import EpochTrainer
from avel_fast.train.runner import interrupted_message
from avel_fast.train.failures import DivergenceWatch, RunFailed, resource_failure
from avel_fast.train.run_dir import load_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

DPNET, AVE = family_of("dpnet"), family_of("ave")
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
    "40000000000 bytes. Error code 12 (Cannot allocate memory)"
)


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def smoke(**options):
    return resolve_config("dpnet", preset="smoke", device="cpu", epochs=2, **options)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("dpnet", "--lr", "1e10"), "step 2 (loss nan); train again with a lower --lr (now 1e+10)"),
        (
            ("edrnet", "--lss-weight", "1e30"),
            "step 1 (loss 1.343e+30, weight norm inf after it); train again with a lower --lr (now 0.1) or "
            "--lss-weight (now 1e+30)",
        ),
    ],
)
def test_a_diverging_run_ends_in_one_line_and_leaves_nothing(tmp_path, args, what):
    out = tmp_path / "run"
    result = invoke("train", *args, "--preset", "smoke", "--device", "cpu", "--epochs", "2", "--out", out)
    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f"error: training diverged at epoch 1, {what}; no epoch had finished: removed {out}"
    ]
    assert "Traceback" not in result.output and not out.exists()


def test_a_run_diverging_after_an_epoch_keeps_its_last_good_epoch(tmp_path, monkeypatch):
    learning_rate = EpochTrainer.learning_rate
    diverging = lambda self, epoch, step: 1e10 if epoch == 1 else learning_rate(self, epoch, step)  # noqa: E731
    monkeypatch.setattr(EpochTrainer, "learning_rate", diverging)
    with pytest.raises(RunFailed, match=r"^training diverged at epoch 2, step \d+ \(loss nan\)") as failure:
        train(smoke(), tmp_path)
    assert failure.value.state == (
        f"{tmp_path / 'last.pt'} holds epoch 1: resume with avel-fast train dpnet --resume --out {tmp_path}"
    )
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    monkeypatch.setattr(EpochTrainer, "learning_rate", learning_rate)
    assert train(smoke(), tmp_path, resume=True)["epoch"] in (1, 2)  # resumable


def test_the_watch_names_the_first_bad_step_bad_weights_too_without_reading_the_device():
    watch, context, config = DivergenceWatch(torch.device("cpu")), DistributedContext(), smoke()
    steps = [(torch.tensor(loss), torch.nn.Linear(2, 2)) for loss in (1.0, 1.5, nan)]
    steps[1][1].weight.data[0, 0] = steps[2][1].weight.data[0, 0] = nan  # what a nan gradient leads to
    for step, (loss, layer) in enumerate(steps):
        with SyncProbe() as probe:
            watch.observe(step, loss, layer.parameters())
        assert probe.records == []
        if step == 0:
            watch.check(0, DPNET, config, context)  # finite: nothing
    expected = r"^training diverged at epoch 3, step 2 \(loss 1\.5, weight norm nan after it\); "
    with pytest.raises(RunFailed, match=expected):
        watch.check(2, DPNET, config, context)


@pytest.mark.parametrize(("file", "epoch", "left"), [("best.pt", 1, None), ("last.pt", 1, None), ("last.pt", 2, 1)])
def test_a_full_disk_ends_in_one_line(tmp_path, monkeypatch, file, epoch, left):
    save = loop.save_checkpoint

    def full_disk(path, state):
        if path.name == file and state["epoch"] == epoch:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", full_disk)
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--device", "cpu", "--epochs", "2", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    cause = "error: cannot write the run directory: No space left on device; free space on its disk; "
    if left is None:
        assert error_lines(result) == [cause + f"no epoch had finished: removed {out}"]
        assert not out.exists()
    else:
        resume = f"resume with avel-fast train dpnet --resume --out {out}"
        assert error_lines(result) == [cause + f"{out / 'last.pt'} holds epoch {left}: {resume}"]
        assert load_checkpoint(out / "last.pt")["epoch"] == left  # --resume drops the unsaved epoch's metrics line


def test_out_of_memory_ends_in_one_line(tmp_path, monkeypatch):
    def build(self, config):
        raise RuntimeError(CPU_OOM)  # what `train dpnet --dim 100000` gets for its 40 GB weight

    monkeypatch.setattr(type(DPNET), "build", build)
    out = tmp_path / "run"
    result = invoke("train", "dpnet", "--preset", "smoke", "--device", "cpu", "--dim", "100000", "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert error_lines(result) == [
        "error: out of memory on cpu; train with a smaller --batch-size (now 16) or --dim (now 100000); "
        "no epoch had finished: nothing was written"
    ]
    assert not out.exists()


def test_the_advice_names_the_family_s_own_options():
    """Out of memory: ``--dim`` only where the family has one; divergence: EDRNet's ``--lss-weight`` with ``--lss``."""
    oom = torch.OutOfMemoryError("CUDA out of memory")
    ave = resolve_config("ave", preset="smoke", setting="wsel", device="cpu")
    assert resource_failure(oom, AVE, ave).advice == "train with a smaller --batch-size (now 16)"
    dpnet_advice = resource_failure(oom, DPNET, smoke()).advice
    assert dpnet_advice == "train with a smaller --batch-size (now 16) or --dim (now 32)"
    edrnet = family_of("edrnet")
    for lss, options in ((False, ()), (True, ("lss_weight",))):
        config = resolve_config("edrnet", preset="smoke", device="cpu", lss=lss)
        assert edrnet.failure_options(config, "divergence") == options


def test_out_of_memory_in_a_later_epoch_keeps_the_last_one(tmp_path, monkeypatch):
    step = EpochTrainer.step

    def failing_step(self, epoch, *args):
        if epoch == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return step(self, epoch, *args)

    monkeypatch.setattr(EpochTrainer, "step", failing_step)
    with pytest.raises(RunFailed, match=r"^out of memory on cpu; .*; .*last\.pt holds epoch 1: resume with"):
        train(smoke(), tmp_path)


def test_other_errors_pass_through(tmp_path, monkeypatch):
    monkeypatch.setattr(type(DPNET), "build", lambda self, config: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(smoke(), tmp_path / "run")
    assert resource_failure(RuntimeError("Connection reset by peer"), DPNET, smoke()) is None  # not under torchrun


def test_atomic_write_interrupted_just_after_the_move(tmp_path, monkeypatch):
    replace = os.replace

    def interrupted(source, target):
        replace(source, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(avel_fast.atomic.os, "replace", interrupted)
    path = tmp_path / "file"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda stream: stream.write(b"new"))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.parametrize(
    ("world", "per_node", "launcher"),
    [("2", "2", "torchrun --nproc-per-node=2"), ("4", "2", "torchrun --nnodes=2 --nproc-per-node=2")],
)
def test_the_resume_hints_under_torchrun_show_the_torchrun_command(tmp_path, monkeypatch, world, per_node, launcher):
    config = resolve_config("ave", preset="smoke", setting="wsel", refine="lr", device="cpu")
    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", per_node)
    assert interrupted_message(tmp_path, config).startswith("interrupted before the first epoch ended: ")
    (tmp_path / "step1").mkdir()  # a label-refinement pipeline past its first stage
    command = f"{launcher} -m avel_fast train ave --resume --out {tmp_path}"
    assert interrupted_message(tmp_path, config) == f"interrupted; resume with {command}"
    lost = resource_failure(RuntimeError("[gloo/transport/tcp/pair.cc:537] Connection reset by peer"), AVE, config)
    assert lost.cause == "a process of the torchrun job stopped (Connection reset by peer)"
    stopped = resource_failure(JobStopped("this process got SIGTERM"), AVE, config)
    assert stopped.cause == "a process of the torchrun job stopped (this process got SIGTERM)"
