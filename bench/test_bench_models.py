"""Model benchmarks (docs/fast-path.md#speed): a DPNet and an EDRNet training step and a full quick-preset DPNet epoch,
`avel_fast.reference` vs the fast models (`avel_fast.models`, same parameters) vs ``torch.compile(reference)`` vs
``torch.compile(fast)`` (``fast+compile``).

Steps: forward (eval, no grad) and forward+backward of the paper's SEL loss (DPNet: cross-entropy on 48 videos
and their 48 linked replicas, ``group_size=2``; EDRNet: cross-entropy + 0.1·LSS on 48 videos of 7x7 maps).
Sizes: the paper's (D = 768, 512 visual channels) on CUDA; D = 256 and 64 EDRNet visual channels on CPU. The
training step runs in fp32 and, on CUDA, under bf16 autocast (``--precision bf16``). The epoch is one epoch of
`avel-fast train dpnet --preset quick` (the engine's own loop, synthetic data).
"""
import pytest
import torch
import torch.nn.functional as F

from _device import CUDA, DEVICE, DIM, record, synchronize
from avel_fast import models, nn as fast_nn, reference
from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.train import TrainProgress, build_model, family_of, resolve_config
from avel_fast.train.families.edrnet import EDRNetOptions
from avel_fast.train.loop import EpochTrainer, build_optimizer
from avel_fast.train.runtime import seed_everything

VISUAL_CHANNELS = None if CUDA else 64
VIDEOS, SEGMENTS = 48, 10
IMPLS = ["reference", "fast", "compile", "fast+compile"]
MODELS = {"dpnet": (reference.DPNet, models.DPNet), "edrnet": (reference.EDRNet, models.EDRNet)}


def build(impl: str, name: str):
    """(callable model, module holding the parameters, LSS loss) for `impl`, the same weights for every impl."""
    if impl.endswith("compile") and not CUDA:
        pytest.skip("torch.compile of a whole model takes minutes to warm up on 2 CPU cores; measured on CUDA only")
    kwargs = dict(dim=DIM) if name == "dpnet" else dict(dim=DIM, visual_channels=VISUAL_CHANNELS)
    reference_class, fast_class = MODELS[name]
    torch.manual_seed(0)
    ref = reference_class(**kwargs).to(DEVICE)
    lss = reference.LSSLoss() if impl in ("reference", "compile") else fast_nn.LSSLoss()
    if impl == "reference":
        return ref, ref, lss
    if impl == "compile":
        return torch.compile(ref), ref, lss
    fast = fast_class(**kwargs).to(DEVICE)
    fast.load_state_dict(ref.state_dict())
    return (fast if impl == "fast" else torch.compile(fast)), fast, lss


def inputs(name: str):
    """Audio, visual (pooled for DPNet, 7x7 maps for EDRNet) and segment labels; DPNet rows come in pairs."""
    rows = 2 * VIDEOS if name == "dpnet" else VIDEOS
    generator = torch.Generator().manual_seed(0)
    visual_shape = (VISUAL_SHAPE[-1],) if name == "dpnet" else VISUAL_SHAPE
    audio = torch.randn(rows, SEGMENTS, AUDIO_DIM, generator=generator)
    visual = torch.randn(rows, SEGMENTS, *visual_shape, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (rows, SEGMENTS), generator=generator)
    return audio.to(DEVICE), visual.to(DEVICE), labels.to(DEVICE)


def loss_of(name: str, model, lss, audio, visual, labels) -> torch.Tensor:
    """The paper's SEL objective for one batch (module docstring)."""
    if name == "dpnet":
        logits = model(audio, visual, group_size=2)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    logits, features = model(audio, visual, return_features=True)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten()) + EDRNetOptions.lss_weight * lss(features, labels)


@pytest.mark.parametrize("name", ["dpnet", "edrnet"])
@pytest.mark.parametrize("impl", IMPLS)
def test_model_forward(benchmark, impl, name):
    model, owner, _ = build(impl, name)
    owner.eval()
    audio, visual, _ = inputs(name)
    kwargs = dict(group_size=2) if name == "dpnet" else {}

    def forward():
        with torch.no_grad():
            logits = model(audio, visual, **kwargs)
        synchronize()
        return logits

    record(benchmark, f"{name}-step/fwd", impl)
    logits = benchmark.pedantic(forward, rounds=5, warmup_rounds=1)
    assert logits.shape == (len(audio), SEGMENTS, NUM_CLASSES)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["dpnet", "edrnet"])
@pytest.mark.parametrize("impl", IMPLS)
def test_model_forward_backward(benchmark, impl, name, precision):
    if precision == "bf16" and not CUDA:
        pytest.skip("bf16 autocast steps are measured on CUDA (the CPU has no fast bf16 arithmetic)")
    model, owner, lss = build(impl, name)
    owner.train()
    batch = inputs(name)

    def step():
        owner.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE, torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_of(name, model, lss, *batch)
        loss.backward()
        synchronize()
        return loss

    record(benchmark, f"{name}-step/fwd+bwd" if precision == "fp32" else f"{name}-step-bf16/fwd+bwd", impl)
    loss = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert torch.isfinite(loss)


@pytest.fixture(scope="module")
def quick_dpnet_data():
    return family_of("dpnet").load_data(resolve_config("dpnet", preset="quick", device=DEVICE))


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_quick_dpnet_epoch(benchmark, impl, quick_dpnet_data):
    config = resolve_config("dpnet", preset="quick", device=DEVICE, backend=impl)
    seed_everything(config.seed)
    model = build_model(config)
    trainer = EpochTrainer(family_of("dpnet"), model, build_optimizer(config, model), quick_dpnet_data, config,
                           TrainProgress())

    record(benchmark, "dpnet-quick-epoch", impl)
    loss, accuracy, _ = benchmark.pedantic(lambda: trainer.run(0), rounds=3, warmup_rounds=1)
    assert loss > 0 and 0.0 <= accuracy <= 1.0
