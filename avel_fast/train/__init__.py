"""Training and evaluation of every model family in the SEL and WSEL settings (docs/training.md)."""
from avel_fast.train import families  # noqa: F401  (registers the built-in families before anything is resolved)
from avel_fast.train.config import PRESETS, TrainConfig, default_preset, resolve_config
from avel_fast.train.errors import TrainingError
from avel_fast.train.families import ModelFamily
from avel_fast.train.options import FamilyOptions, option
from avel_fast.train.predict import predict, predict_scores
from avel_fast.train.progress import PlainTrainProgress, RichTrainProgress, TrainProgress
from avel_fast.train.registry import FAMILIES, family_of, register
from avel_fast.train.runner import build_model, evaluate_run, resume_config, train
from avel_fast.train.schedule import CyclicCosineSchedule
from avel_fast.train.seeds import resume_sweep_config, train_seeds

__all__ = [
    "FAMILIES",
    "PRESETS",
    "CyclicCosineSchedule",
    "FamilyOptions",
    "ModelFamily",
    "PlainTrainProgress",
    "RichTrainProgress",
    "TrainConfig",
    "TrainProgress",
    "TrainingError",
    "build_model",
    "default_preset",
    "evaluate_run",
    "family_of",
    "option",
    "predict",
    "predict_scores",
    "register",
    "resolve_config",
    "resume_config",
    "resume_sweep_config",
    "train",
    "train_seeds",
]
