"""How an option of a training run is declared and checked (docs/training.md#options).

Every option is a field of a frozen dataclass declared with `option`: its help text, for a number its range, for a
name its choices. The shared options are the fields of `avel_fast.train.config.TrainConfig`; each family's own
are the fields of its `FamilyOptions` subclass, with its per-preset values and its one `validate`. The command of
a family (``avel-fast train NAME``) is built from these declarations.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import numpy as np

from avel_fast.train.errors import TrainingError

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest float32: a real-valued option is used in float32 (the optimizer, the losses), so it must fit."""


def option(
    default,
    help: str,
    *,
    low: float | None = None,
    high: float = math.inf,
    above: bool = False,
    upto: bool = False,
    choices: tuple[str, ...] | None = None,
    command: bool = True,
):
    """A dataclass field declaring an option: `help` is its line in ``--help``; a number must be finite with
    ``low <= value < high`` (``low < value`` with `above`, ``value <= high`` with `upto`; a ``None`` default means
    "left to the family"); a name one of `choices`. ``command=False``: set by the presets or the data, no
    command-line option."""
    metadata = dict(help=help, low=low, high=high, above=above, upto=upto, choices=choices, command=command)
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The command-line spelling of an option: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def option_names(options) -> frozenset[str]:
    """The option names of a dataclass of options, class or instance."""
    return frozenset(spec.name for spec in dataclasses.fields(options))


def value_type(owner: type, name: str) -> type:
    """The type of option `name` of the dataclass `owner`, ``Optional`` left out (``int | None`` -> int)."""
    hint = typing.get_type_hints(owner)[name]
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


def check_number(name: str, value, low: float, high: float, above: bool, upto: bool) -> None:
    """`TrainingError` naming the option unless `value` is finite, in range and, for a real number, a float32."""
    inside = (low < value if above else low <= value) and (value <= high if upto else value < high)
    if not (math.isfinite(value) and inside):
        lower = f"{'>' if above else '>='} {low}"
        wanted = lower if high == math.inf else f"{lower} and {'<=' if upto else '<'} {high}"
        raise TrainingError(f"{flag(name)} must be a finite number {wanted}, got {value}")
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:
        raise TrainingError(
            f"{flag(name)} {value:g} overflows float32, in which it is used (largest {FLOAT32_MAX:.4g})"
        )


def check_fields(values) -> None:
    """Check every declared range and choice of the dataclass instance `values` (module docstring)."""
    for spec in dataclasses.fields(values):
        value, meta = getattr(values, spec.name), spec.metadata
        if value is None and spec.default is None:
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise TrainingError(
                f"unknown {spec.name.replace('_', '-')} {value!r}: expected one of {', '.join(meta['choices'])}"
            )
        if meta.get("low") is not None:
            check_number(spec.name, value, meta["low"], meta["high"], meta["above"], meta["upto"])


@dataclass(frozen=True)
class FamilyOptions:
    """The options of one family (module docstring). A subclass declares its fields with `option`, gives its values
    per preset in `preset_values` and checks its combinations in `validate`."""

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        """The family's values of `preset`: its own options and the shared ones it sets (e.g. its optimizer)."""
        return {}

    @classmethod
    def dependent_values(cls, preset: str, values: dict) -> dict:
        """Preset values that depend on other resolved options `values` (explicit options still win)."""
        return {}

    supervised: typing.ClassVar[tuple[str, ...]] = ()
    """Switches that need segment labels of the training videos: off in the WSEL presets, refused in WSEL."""
    needs: typing.ClassVar[tuple[tuple[str, str, typing.Callable], ...]] = ()
    """Options that only act with another one: (name, what it needs, when it would be ignored given the config);
    an explicit value is refused when it would be ignored."""

    def validate(self, config, explicit: frozenset[str] = frozenset()) -> None:
        """Raise `TrainingError` naming the option at fault: ranges and choices, switches that need segment labels,
        `explicit` options that would be ignored; a subclass adds its combinations."""
        check_fields(self)
        for name in self.supervised:
            if getattr(self, name) and config.setting == "wsel":
                raise TrainingError(f"{flag(name)} needs segment labels: use it with --setting sel, not wsel")
        for name, needs, unused in self.needs:
            if name in explicit and unused(config):
                raise TrainingError(f"{flag(name)} {needs}: it would be ignored here")
