"""The configuration of a training run: the options every family shares, the family's own options, the presets
`paper` / `quick` / `smoke` (docs/training.md#options, docs/training.md#presets).

Resolution order: the shared preset values, the family's values for the preset (`FamilyOptions.preset_values`),
then every explicit override; the result is checked as a whole (`validate`: the shared options here, the family's
in its `FamilyOptions.validate`), so a bad request is refused before anything is loaded or written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from avel_fast.data.files import SETTINGS
from avel_fast.train.distributed import launched_by_torchrun
from avel_fast.train.errors import TrainingError
from avel_fast.train.options import FamilyOptions, check_fields, flag, option, option_names
from avel_fast.train.registry import FAMILIES, family_of

PRESETS = ("paper", "quick", "smoke")
PRECISIONS = ("fp32", "tf32", "bf16")
OPTIMIZERS = ("adamw", "adam", "sgd")
SEED_LIMIT = 2**64


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; stored as ``config.json`` in the run directory. `options` holds the
    family's own (`FamilyOptions`); `flat` and `replace` address both kinds by name."""

    model: str = option(None, "The model family.", command=False)
    setting: str = option("sel", "sel (supervised, default) or wsel (weakly).", choices=SETTINGS)
    preset: str = option(
        "quick", "paper | quick | smoke; default paper with a GPU, quick without.", choices=PRESETS
    )
    epochs: int = option(40, "Training epochs.", low=1)
    batch_size: int = option(48, "Examples per mini-batch, over all processes.", low=1)
    lr: float = option(1e-3, "Base learning rate (the schedule multiplies it).", low=0.0, above=True)
    weight_decay: float = option(1e-2, "Weight decay.", low=0.0)
    optimizer: str = option("adamw", "adamw | adam | sgd (Nesterov momentum 0.9).", choices=OPTIMIZERS)
    seed: int = option(0, "Seed of the run (initialisation, batch order, augmentations).", low=0, high=SEED_LIMIT)
    data: str | None = option(None, "The data directory (docs/data.md); default: synthetic data.")
    data_seed: int = option(0, "Seed of the synthetic data.", low=0, high=SEED_LIMIT)
    synthetic_videos: int = option(4143, "Videos of the synthetic AVE.", low=1, command=False)
    synthetic_background_videos: int = option(178, "Its background-only videos.", low=0, command=False)
    device: str = option("cpu", "cpu, cuda, cuda:N; default cuda when present.")
    precision: str = option("fp32", "fp32 | tf32 (CUDA) | bf16 (autocast).", choices=PRECISIONS)
    compile: bool = option(False, "torch.compile the model.")
    cuda_graphs: bool = option(False, "CUDA only: compile and replay the steps as CUDA graphs.")
    options: FamilyOptions = option(None, "The family's options.", command=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """Every option by name, the family's beside the shared ones."""
        shared = {name: value for name, value in vars(self).items() if name != "options"}
        return {**shared, **vars(self.options)}

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes`, shared or the family's options by name (`dataclasses.replace` of both)."""
        own = {name: changes.pop(name) for name in list(changes) if name in option_names(self.options)}
        return dataclasses.replace(self, **changes, options=dataclasses.replace(self.options, **own))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config of a ``config.json``, also the flat one of a run written before per-family options (its
        other families' options, which had no effect, left out); checked as a whole."""
        values = dict(values)
        family = family_of(values.get("model"))
        options = values.pop("options", None)
        if options is None:
            options = {name: values.pop(name) for name in list(values) if name in option_names(family.options_class)}
            legacy = {name for other in FAMILIES.values() for name in option_names(other.options_class)}
            values = {name: value for name, value in values.items() if name in SHARED or name not in legacy}
        unknown = sorted(set(values) - set(SHARED))
        if unknown:
            raise TrainingError(f"unknown field(s) {', '.join(unknown)}")
        unknown = sorted(set(options) - option_names(family.options_class))
        if unknown:
            raise TrainingError(f"{', '.join(unknown)}: not an option of {family.name}")
        return validate(cls(**values, options=family.options_class(**options)))


SHARED = tuple(spec.name for spec in dataclasses.fields(TrainConfig) if spec.name != "options")
"""The shared options by name."""


PRESET_VALUES: dict[str, dict] = {
    "paper": dict(epochs=400, batch_size=48),
    "quick": dict(epochs=30, batch_size=32),
    "smoke": dict(epochs=2, batch_size=16, synthetic_videos=120, synthetic_background_videos=12),
}
"""Shared preset values; each family adds its own (`FamilyOptions.preset_values`: base learning rates and the
EDRNet optimizer were chosen on the synthetic validation split with the quick sizes, README "Training")."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_preset() -> str:
    """`paper` on a machine with a GPU, `quick` without one (docs/training.md#presets)."""
    return "paper" if torch.cuda.is_available() else "quick"


def resolve_config(model: str, *, preset: str | None = None, setting: str = "sel", **overrides) -> TrainConfig:
    """The preset's values for `model` and `setting`, then `overrides` by option name (None values are ignored);
    an option the family does not have is refused."""
    family = family_of(model)
    preset = preset or default_preset()
    partial = TrainConfig(model=model, setting=setting, preset=preset)
    check_fields(partial)
    own = option_names(family.options_class)
    explicit = {name: value for name, value in overrides.items() if value is not None}
    for name in explicit:
        if name not in own and name not in SHARED:
            owners = [other.name for other in FAMILIES.values() if name in option_names(other.options_class)]
            where = f" (an option of {' and '.join(owners)})" if owners else ""
            raise TrainingError(f"{flag(name)} is not an option of {model}{where}")
    options = family.options_class
    values = {"device": default_device(), **PRESET_VALUES[preset], **options.preset_values(preset, setting)}
    if setting == "wsel":
        values.update(dict.fromkeys(options.supervised, False))
    values.update(explicit)
    dependent = options.dependent_values(preset, values)
    values.update({name: value for name, value in dependent.items() if name not in explicit})
    config = TrainConfig(model=model, setting=setting, preset=preset, options=options()).replace(**values)
    return validate(config, frozenset(explicit))


def validate(config: TrainConfig, explicit: frozenset[str] = frozenset()) -> TrainConfig:
    """Raise `TrainingError` naming the option at fault; return `config` unchanged when it can run. The shared
    options are checked here, the family's by its `FamilyOptions.validate` (`explicit`: the options the user gave)."""
    family = family_of(config.model)
    check_fields(config)
    if config.setting not in family.settings:
        raise TrainingError(
            f"--setting {config.setting} is not an option of {config.model} (it trains in {', '.join(family.settings)})"
        )
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise TrainingError(f"--device {config.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {config.device}: CUDA is not available on this machine")
    if config.cuda_graphs and launched_by_torchrun():
        raise TrainingError("--cuda-graphs runs on a single process: leave it out under torchrun")
    if config.cuda_graphs and device.type != "cuda":
        raise TrainingError(f"--cuda-graphs needs a CUDA device (got --device {config.device}): it replays GPU work")
    if "data_seed" in explicit and config.data is not None:
        raise TrainingError("--data-seed seeds the synthetic data, not --data: it would be ignored here")
    config.options.validate(config, explicit)
    return config
