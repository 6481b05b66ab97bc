"""The model families the engine trains, registered in `FAMILIES` (docs/training.md#families)."""
from avel_fast.train.families.base import FAMILIES, ModelFamily, Objective, StepOutput, family_of, register
from avel_fast.train.families import ave, dpnet, edrnet, pretext, psp  # noqa: E402,F401  (registers the families)

__all__ = ["FAMILIES", "ModelFamily", "Objective", "StepOutput", "family_of", "register"]
