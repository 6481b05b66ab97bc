"""Training configuration: presets `paper` / `quick` / `smoke`, explicit overrides, validation
(docs/training.md#presets).

Resolution order: the shared preset values, the model family's values for the preset, then every explicit
override. The result is checked as a whole, so a bad combination is refused before anything is loaded or written.

Switches and valued options belong to the families that declare them (`ModelFamily.switches`, ``.options``):
``replicate``/``link`` to DPNet (Replicate and Link, DPNet §3.4), ``lss``/``smb`` to EDRNet (Land-Shore-Sea loss
and SMB video fusion, EDRNet §3), ``refine``, ``window``, ``stride``, ``tau``, ``step1_epochs`` to the AVE
baseline and PSP (temporal label refinement, docs/weak.md#label-refinement). Asking for one with another model is
an error, and so is an explicit shared option the family ignores (`ModelFamily.ignored_options`); switches that
need segment labels of the training videos (``supervised_switches``) are refused with ``setting="wsel"``, and the
presets turn them off there.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from avel_fast.data.files import SETTINGS
from avel_fast.train.errors import TrainingError
from avel_fast.train.families import FAMILIES, family_of

PRESETS = ("paper", "quick", "smoke")
PRECISIONS = ("fp32", "tf32", "bf16")
BACKENDS = ("fast", "reference")
OPTIMIZERS = ("adamw", "adam", "sgd")
REFINEMENTS = ("none", "lr", "a+lr", "dummy", "pl", "oracle")
"""``--refine``: plain training, or the label-refinement pipeline of docs/weak.md#recipes."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; stored as ``config.json`` in the run directory."""

    model: str
    setting: str = "sel"
    preset: str = "quick"
    epochs: int = 40
    batch_size: int = 48
    lr: float = 1e-3
    weight_decay: float = 1e-2
    optimizer: str = "adamw"
    cycle: int = 20
    dim: int = 768
    visual_channels: int | None = None  # EDRNet's 3x3 visual conv width (None = 512, the paper)
    dropout: float = 0.2  # DPNet's RGCT dropout, PSP's dropout
    threshold: float | None = None  # PSP's affinity pruning threshold (None = 0.099 in SEL, 0.095 in WSEL)
    standardize: bool = True  # per-dimension z-scores from the training set (avel_fast.train.data); paper: off
    replicate: bool = False
    link: bool = False
    lss: bool = False
    lss_weight: float = 0.1  # λ₂ of EDRNet's SEL objective λ₁·CE + λ₂·LSS, λ₁ = 1
    smb: bool = False
    smb_per_class: int = 250
    aux: bool = False  # AVE baseline / PSP in WSEL: + the auxiliary objective L_A (Step 1 of refine a+lr)
    refine: str = "none"  # AVE baseline / PSP in WSEL: the label-refinement pipeline (REFINEMENTS)
    window: int = 4  # N, segments per window of label refinement
    stride: int = 2  # s, stride of the windows
    tau: float = 0.05  # τ, detection threshold of the window labels
    step1_epochs: int = 200  # epochs of the pipeline's first stage; `epochs` is the stage in the run directory
    keep_video_label: bool = False  # refine lr / a+lr: all-background event videos keep their video label
    seed: int = 0
    data: str | None = None  # an AVE directory; None = the synthetic set
    eval_labels: str | None = None  # a second label file scoring the test split (docs/metrics.md#label-sets)
    data_seed: int = 0
    synthetic_videos: int = 4143
    synthetic_background_videos: int = 178
    audio_dim: int | None = None  # width of the audio features, read from the data when training (None = 128)
    features: str = "textures"  # pretext: sound summary, textures | mfcc (docs/audio.md#pretext)
    targets: str = "cluster"  # pretext: k-means clusters or PCA sign bits of the summaries
    k: int = 15  # pretext: clusters or bits
    visual_net: str = "small"  # pretext: the image network, alexnet | small
    scene_examples: int = 2400  # pretext: paired synthetic examples (train / val / test 60 / 20 / 20 %)
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "fast"
    compile: bool = False  # torch.compile the model for the training steps
    cuda_graphs: bool = False  # and replay them as CUDA graphs (torch.compile's "reduce-overhead" mode)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainingError(f"config: unknown field(s) {', '.join(unknown)}")
        return validate(cls(**values))


# Shared preset values; each family adds its own (`ModelFamily.preset_values`: base learning rates and the
# EDRNet optimizer were chosen on the synthetic validation split with the quick sizes, README "Training").
# The paper preset feeds raw features, as both papers and their public code do; quick and smoke standardise
# them, which makes the small CPU runs converge in a few epochs (docs/training.md#presets).
PRESET_VALUES: dict[str, dict] = {
    "paper": dict(epochs=400, cycle=20, batch_size=48, dim=768, standardize=False),
    "quick": dict(epochs=30, cycle=10, batch_size=32, dim=128, standardize=True),
    "smoke": dict(
        epochs=2, cycle=1, batch_size=16, dim=32, standardize=True, synthetic_videos=120,
        synthetic_background_videos=12, smb_per_class=4,
    ),
}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_preset() -> str:
    """`paper` on a machine with a GPU, `quick` without one (docs/training.md#presets)."""
    return "paper" if torch.cuda.is_available() else "quick"


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise TrainingError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")


def resolve_config(model: str, *, preset: str | None = None, setting: str = "sel", **overrides) -> TrainConfig:
    """The preset's values for `model` and `setting`, then `overrides` (None values are ignored)."""
    family = family_of(model)
    preset = preset or default_preset()
    _check_choice("preset", preset, PRESETS)
    _check_choice("setting", setting, SETTINGS)
    values = {"device": default_device(), **PRESET_VALUES[preset], **family.preset_values(preset, setting)}
    if setting == "wsel":
        values.update(dict.fromkeys(family.supervised_switches, False))
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TrainingError(f"unknown option(s) {', '.join(unknown)}")
    explicit = {name: value for name, value in overrides.items() if value is not None}
    values.update(explicit)
    dependent = family.dependent_preset_values(preset, values)
    values.update({name: value for name, value in dependent.items() if name not in explicit})
    config = validate(TrainConfig(model=model, setting=setting, preset=preset, **values))
    for name in explicit:
        if name in family.ignored_options:
            raise TrainingError(
                f"--{name.replace('_', '-')} is not used by {model} ({family.ignored_options[name]}): "
                "it would be ignored here"
            )
        owners = [other for other in FAMILIES.values() if name in other.options]
        if owners and family not in owners:
            names = " and ".join(owner.name for owner in owners)
            raise TrainingError(
                f"--{name.replace('_', '-')} is an option of {names} ({owners[0].options[name]}): "
                "it would be ignored here"
            )
    for name, needs, unused in _DEPENDENT_OPTIONS:
        if name in explicit and unused(config):
            raise TrainingError(f"--{name.replace('_', '-')} {needs}: it would be ignored here")
    return config


_DEPENDENT_OPTIONS = (
    ("lss_weight", "needs --lss", lambda c: not c.lss),
    ("smb_per_class", "needs --smb", lambda c: not c.smb),
    ("data_seed", "seeds the synthetic data, not --data", lambda c: c.data is not None),
    ("window", "needs --refine lr, a+lr or dummy, or --aux", lambda c: c.refine in ("none", "pl") and not c.aux),
    ("stride", "needs --refine lr, a+lr or dummy, or --aux", lambda c: c.refine in ("none", "pl") and not c.aux),
    ("tau", "needs --refine lr or a+lr", lambda c: c.refine not in ("lr", "a+lr")),
    ("step1_epochs", "needs --refine lr, a+lr or pl", lambda c: c.refine in ("none", "dummy", "oracle")),
    ("keep_video_label", "needs --refine lr or a+lr", lambda c: c.keep_video_label and c.refine not in ("lr", "a+lr")),
)
"""Explicit options that only act with another one: (name, what it needs, when it would be ignored)."""


_NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    **dict.fromkeys(
        (
            "epochs", "batch_size", "cycle", "dim", "visual_channels", "smb_per_class", "synthetic_videos", "window",
            "stride", "step1_epochs", "k", "scene_examples", "audio_dim",
        ),
        (1, math.inf, True),
    ),
    "synthetic_background_videos": (0, math.inf, True),
    "seed": (0, 2**64, True),
    "data_seed": (0, 2**64, True),
    "lr": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, True),
    "lss_weight": (0.0, math.inf, True),
    "dropout": (0.0, 1.0, True),
    "tau": (0.0, math.inf, True),
    "threshold": (0.0, math.inf, True),
}
"""Every numeric option: (low, high, whether low is allowed); the value must be finite and below high."""
DATA_FIXED_OPTIONS = ("audio_dim",)
"""Options the training data fixes (`ModelFamily.data_values`): None in a new config, recorded in ``config.json``."""
_OPTIONAL_NUMBERS = ("visual_channels", "audio_dim", "threshold")
"""Numeric options that may also be None: the paper's width, the width read from the data, PSP's default."""


def _check_number(name: str, value, low: float, high: float, low_allowed: bool) -> None:
    above = low <= value if low_allowed else low < value
    if not (math.isfinite(value) and above and value < high):
        lower = f"{'>=' if low_allowed else '>'} {low}"
        wanted = lower if high == math.inf else f"{lower} and < {high}"
        raise TrainingError(f"--{name.replace('_', '-')} must be a finite number {wanted}, got {value}")


def validate(config: TrainConfig) -> TrainConfig:
    """Raise `TrainingError` naming the option at fault; return `config` unchanged when it can run."""
    for name, choices in (
        ("model", tuple(FAMILIES)), ("setting", SETTINGS), ("preset", PRESETS), ("precision", PRECISIONS),
        ("backend", BACKENDS), ("optimizer", OPTIMIZERS), ("refine", REFINEMENTS),
    ):
        _check_choice(name, getattr(config, name), choices)
    for name, limits in _NUMBER_RANGES.items():
        value = getattr(config, name)
        if not (value is None and name in _OPTIONAL_NUMBERS):
            _check_number(name, value, *limits)
    family = family_of(config.model)
    for other in FAMILIES.values():
        for switch, what in other.switches.items():
            if getattr(config, switch) and switch not in family.switches:
                raise TrainingError(f"--{switch} ({what}) is not an option of {config.model}")
    for switch in family.supervised_switches:
        if getattr(config, switch) and config.setting == "wsel":
            raise TrainingError(f"--{switch} needs segment labels: use it with --setting sel, not wsel")
    if config.setting not in family.settings:
        raise TrainingError(
            f"--setting {config.setting} is not an option of {config.model} (it trains in {', '.join(family.settings)})"
        )
    family.validate(config)
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise TrainingError(f"--device {config.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {config.device}: CUDA is not available on this machine")
    if config.cuda_graphs and device.type != "cuda":
        raise TrainingError(f"--cuda-graphs needs a CUDA device (got --device {config.device}): it replays GPU work")
    return config

