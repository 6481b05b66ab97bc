"""Training configuration: presets `paper` / `quick` / `smoke`, explicit overrides, validation (SPEC §4, §10).

Resolution order: the preset's values for the model and setting, then every explicit override. The result is
checked as a whole, so a bad combination is refused before anything is loaded or written.

Model switches belong to one model each: ``replicate``/``link`` to DPNet (Replicate and Link, DPNet §3.4),
``lss``/``smb`` to EDRNet (Land-Shore-Sea loss and SMB video fusion, EDRNet §3). All four need segment labels
of the training videos, so they exist only in the supervised setting (SEL); asking for one of them with the
other model or with ``setting="wsel"`` is an error, and the presets turn them off for WSEL.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from avel_fast.data.files import SETTINGS

MODELS = ("dpnet", "edrnet")
PRESETS = ("paper", "quick", "smoke")
PRECISIONS = ("fp32", "tf32", "bf16")
BACKENDS = ("fast", "reference")
OPTIMIZERS = ("adamw", "adam", "sgd")
DPNET_SWITCHES = ("replicate", "link")
EDRNET_SWITCHES = ("lss", "smb")
SWITCH_NAMES = {
    "replicate": "DPNet's Replicate", "link": "DPNet's Link", "lss": "EDRNet's Land-Shore-Sea loss",
    "smb": "EDRNet's SMB video fusion",
}


class TrainingError(ValueError):
    """A training or evaluation request that cannot run: the message names the option or file at fault."""


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
    dropout: float = 0.2  # DPNet's RGCT dropout
    standardize: bool = True  # per-dimension z-scores from the training set (avel_fast.train.data)
    replicate: bool = False
    link: bool = False
    lss: bool = False
    lss_weight: float = 0.1  # λ₂ of EDRNet's SEL objective λ₁·CE + λ₂·LSS, λ₁ = 1
    smb: bool = False
    smb_per_class: int = 250
    seed: int = 0
    data: str | None = None  # an AVE directory; None = the synthetic set
    data_seed: int = 0
    synthetic_videos: int = 4143
    synthetic_background_videos: int = 178
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "fast"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainingError(f"config: unknown field(s) {', '.join(unknown)}")
        return validate(cls(**values))


# Base learning rates and the EDRNet optimizer: chosen on the synthetic validation split with the quick
# architecture sizes (README "Training"); `quick` runs in about 4-5 minutes on 2 CPU cores.
PRESET_VALUES: dict[str, dict] = {
    "paper": dict(epochs=400, cycle=20, batch_size=48, dim=768),
    "quick": dict(epochs=30, cycle=10, batch_size=32, dim=128),
    "smoke": dict(
        epochs=2, cycle=1, batch_size=16, dim=32, synthetic_videos=120, synthetic_background_videos=12,
        smb_per_class=4,
    ),
}
EDRNET_OPTIMIZER = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4)  # Nesterov momentum 0.9
MODEL_PRESET_VALUES: dict[tuple[str, str], dict] = {
    ("paper", "dpnet"): dict(lr=1e-3, replicate=True, link=True),
    ("paper", "edrnet"): dict(**EDRNET_OPTIMIZER, lss=True, smb=True, smb_per_class=250),
    ("quick", "dpnet"): dict(lr=1e-3),
    ("quick", "edrnet"): dict(**EDRNET_OPTIMIZER, epochs=20, lss=True, visual_channels=32, smb_per_class=100),
    ("smoke", "dpnet"): dict(lr=1e-3),
    ("smoke", "edrnet"): dict(**EDRNET_OPTIMIZER, lss=True, visual_channels=16),
}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_preset() -> str:
    """`paper` on a machine with a GPU, `quick` without one (SPEC §10)."""
    return "paper" if torch.cuda.is_available() else "quick"


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise TrainingError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")


def resolve_config(model: str, *, preset: str | None = None, setting: str = "sel", **overrides) -> TrainConfig:
    """The preset's values for `model` and `setting`, then `overrides` (None values are ignored)."""
    _check_choice("model", model, MODELS)
    preset = preset or default_preset()
    _check_choice("preset", preset, PRESETS)
    _check_choice("setting", setting, SETTINGS)
    values = {"device": default_device(), **PRESET_VALUES[preset], **MODEL_PRESET_VALUES[preset, model]}
    if setting == "wsel":
        values.update(dict.fromkeys(DPNET_SWITCHES + EDRNET_SWITCHES, False))
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TrainingError(f"unknown option(s) {', '.join(unknown)}")
    explicit = {name: value for name, value in overrides.items() if value is not None}
    values.update(explicit)
    config = validate(TrainConfig(model=model, setting=setting, preset=preset, **values))
    for name, needs, unused in _DEPENDENT_OPTIONS:
        if name in explicit and unused(config):
            raise TrainingError(f"--{name.replace('_', '-')} {needs}: it would be ignored here")
    return config


_DEPENDENT_OPTIONS = (
    ("visual_channels", "is an option of edrnet (its 3x3 visual conv)", lambda c: c.model != "edrnet"),
    ("dropout", "is an option of dpnet (its RGCT dropout)", lambda c: c.model != "dpnet"),
    ("lss_weight", "needs --lss", lambda c: not c.lss),
    ("smb_per_class", "needs --smb", lambda c: not c.smb),
    ("data_seed", "seeds the synthetic data, not --data", lambda c: c.data is not None),
)
"""Explicit options that only act with another one: (name, what it needs, when it would be ignored)."""


def validate(config: TrainConfig) -> TrainConfig:
    """Raise `TrainingError` naming the option at fault; return `config` unchanged when it can run."""
    for name, choices in (
        ("model", MODELS), ("setting", SETTINGS), ("preset", PRESETS), ("precision", PRECISIONS),
        ("backend", BACKENDS), ("optimizer", OPTIMIZERS),
    ):
        _check_choice(name, getattr(config, name), choices)
    for name in ("epochs", "batch_size", "cycle", "dim", "smb_per_class", "synthetic_videos"):
        if getattr(config, name) < 1:
            raise TrainingError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.visual_channels is not None and config.visual_channels < 1:
        raise TrainingError(f"--visual-channels must be >= 1, got {config.visual_channels}")
    if config.lr <= 0 or config.weight_decay < 0 or config.lss_weight < 0:
        raise TrainingError(
            f"--lr must be > 0 and --weight-decay, --lss-weight >= 0 (got {config.lr}, {config.weight_decay}, "
            f"{config.lss_weight})"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise TrainingError(f"--dropout must be in [0, 1), got {config.dropout}")
    own, other = (DPNET_SWITCHES, EDRNET_SWITCHES) if config.model == "dpnet" else (EDRNET_SWITCHES, DPNET_SWITCHES)
    for switch in other:
        if getattr(config, switch):
            raise TrainingError(f"--{switch} ({SWITCH_NAMES[switch]}) is not an option of {config.model}")
    for switch in own:
        if getattr(config, switch) and config.setting == "wsel":
            raise TrainingError(f"--{switch} needs segment labels: use it with --setting sel, not wsel")
    if config.link and not config.replicate:
        raise TrainingError("--link needs --replicate (Link connects each video with its replica)")
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise TrainingError(f"--device {config.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {config.device}: CUDA is not available on this machine")
    return config

