"""A training step reads no tensor value back to the host (docs/distributed.md): on CUDA under
``torch.cuda.set_sync_debug_mode("error")``; on the CPU every read of a tensor value inside the step raises,
except those of torch's own optimizers (their step counters live on the host on every device)."""
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from avel_fast import nn as fast_nn
from avel_fast.data.dataset import video_labels_from_segments
from avel_fast.reference import mil_loss
from avel_fast.train import TrainingError, resolve_config, train
from avel_fast.train.config import validate
from avel_fast.train.loop import EpochTrainer
from avel_fast.train.families.dpnet import ReplicaObjective
from avel_fast.train.run_dir import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")
ALLOWED_CALLERS = (str(Path(torch.__file__).parent),)
RUNS = [
    ("dpnet", dict(replicate=True, link=True)),
    ("edrnet", dict(smb=True)),
    ("dpnet", dict(setting="wsel")),
]


@pytest.fixture
def guarded_steps(monkeypatch):
    """Inside `EpochTrainer.step`, the `HOST_READS` of any tensor raise unless called from `ALLOWED_CALLERS`."""
    inside = []

    def guarded(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if inside and not caller.startswith(ALLOWED_CALLERS):
                raise AssertionError(f"Tensor.{name} read inside a training step, from {caller}")
            return original(self, *args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, guarded(name))
    step = EpochTrainer.step

    def guarded_step(self, *args):
        inside.append(True)
        try:
            return step(self, *args)
        finally:
            inside.pop()

    monkeypatch.setattr(EpochTrainer, "step", guarded_step)


@pytest.mark.parametrize(("model", "options"), RUNS)
def test_cpu_training_steps_read_no_tensor_value(tmp_path, guarded_steps, model, options):
    report = train(resolve_config(model, preset="smoke", device="cpu", epochs=1, **options), tmp_path)
    assert report["epoch"] == 1


def test_the_cpu_guard_catches_a_read(tmp_path, guarded_steps, monkeypatch):
    objective = ReplicaObjective.__call__

    def reading_objective(self, batch, epoch, step):  # what the replica sampler did before: rows via .cpu()
        batch.index.cpu()
        return objective(self, batch, epoch, step)

    monkeypatch.setattr(ReplicaObjective, "__call__", reading_objective)
    config = resolve_config("dpnet", preset="smoke", device="cpu", epochs=1, replicate=True)
    with pytest.raises(AssertionError, match=r"Tensor\.cpu read inside a training step"):
        train(config, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("model", "options"), RUNS)
def test_cuda_training_steps_do_not_synchronize(tmp_path, monkeypatch, model, options, precision):
    """Epoch 1 warms up (Triton compiles, pinned buffers); every step of epoch 2 runs with syncs as errors."""
    step = EpochTrainer.step
    checked = []

    def strict_step(self, epoch, *args):
        if epoch == 0:
            return step(self, epoch, *args)
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(self, epoch, *args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        checked.append(epoch)

    monkeypatch.setattr(EpochTrainer, "step", strict_step)
    config = resolve_config(model, preset="smoke", device="cuda", epochs=2, precision=precision, **options)
    train(config, tmp_path)
    assert checked and set(checked) == {1}
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            torch.ones(1, device="cuda").item()  # the mode catches a read
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graphs_are_refused_without_cuda_and_under_torchrun(monkeypatch):
    with pytest.raises(TrainingError, match="--cuda-graphs needs a CUDA device"):
        resolve_config("dpnet", preset="smoke", device="cpu", cuda_graphs=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match="--cuda-graphs runs on a single process"):
        validate(dataclasses.replace(resolve_config("dpnet", preset="smoke", device="cpu"), cuda_graphs=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("options", [dict(compile=True), dict(cuda_graphs=True)])
def test_cuda_compiled_training_follows_the_eager_losses(tmp_path, options):
    losses = {}
    for name, extra in (("eager", {}), ("compiled", options)):
        config = resolve_config("dpnet", preset="smoke", device="cuda", replicate=True, link=True, dropout=0.0, **extra)
        train(config, tmp_path / name)
        losses[name] = [record["train_loss"] for record in read_metrics(tmp_path / name)]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)


def test_label_checks_turned_off_give_the_same_losses():
    """The training loop skips the label checks that read values (its labels were checked when loaded)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 29, generator=generator)
    labels = torch.randint(0, 29, (3, 10), generator=generator)
    video_labels = video_labels_from_segments(labels).float()
    assert mil_loss(logits, video_labels, check_labels=False) == mil_loss(logits, video_labels)
    with pytest.raises(ValueError, match="non-negative"):
        mil_loss(logits, -video_labels)
    features = torch.randn(3, 10, 16, generator=generator)
    assert fast_nn.LSSLoss(check_labels=False)(features, labels) == fast_nn.LSSLoss()(features, labels)
    with pytest.raises(ValueError, match="labels must lie in 0..28"):
        fast_nn.LSSLoss()(features, labels + 29)
