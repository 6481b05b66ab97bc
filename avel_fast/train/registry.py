"""The registry of model families: ``avel-fast train NAME`` and ``config.model`` name one (docs/training.md#families).

A family module registers its family with `register` when it is imported (`avel_fast.train.families` imports the
built-in ones); this module imports none of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from avel_fast.train.errors import TrainingError

if TYPE_CHECKING:
    from avel_fast.train.families.base import ModelFamily

FAMILIES: dict[str, ModelFamily] = {}
"""Every registered family by its name."""


def register(family_class: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: add one instance of `family_class` to `FAMILIES`."""
    FAMILIES[family_class.name] = family_class()
    return family_class


def family_of(model: str) -> ModelFamily:
    try:
        return FAMILIES[model]
    except KeyError:
        raise TrainingError(f"unknown model {model!r}: expected one of {', '.join(FAMILIES)}") from None
