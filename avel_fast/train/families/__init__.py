"""The built-in model families, registered in `FAMILIES` when imported (docs/training.md#families)."""
from avel_fast.train.families import ave, dpnet, edrnet, pretext, psp  # noqa: F401  (registers the families)
from avel_fast.train.families.base import ModelFamily, Objective, SegmentOptions
from avel_fast.train.registry import FAMILIES, family_of, register

__all__ = ["FAMILIES", "ModelFamily", "Objective", "SegmentOptions", "family_of", "register"]
