"""Training and evaluation of every model family in the SEL and WSEL settings (docs/training.md)."""
from avel_fast.train.config import PRESETS, TrainConfig, TrainingError, default_preset, resolve_config
from avel_fast.train.engine import build_model, evaluate_run, predict, predict_scores, resume_config, train
from avel_fast.train.families import FAMILIES, ModelFamily, family_of
from avel_fast.train.progress import RichTrainProgress, TrainProgress
from avel_fast.train.seeds import resume_sweep_config, train_seeds
from avel_fast.train.schedule import CyclicCosineSchedule

__all__ = [
    "FAMILIES",
    "PRESETS",
    "CyclicCosineSchedule",
    "ModelFamily",
    "RichTrainProgress",
    "TrainConfig",
    "TrainProgress",
    "TrainingError",
    "build_model",
    "default_preset",
    "evaluate_run",
    "family_of",
    "predict",
    "predict_scores",
    "resolve_config",
    "resume_config",
    "resume_sweep_config",
    "train",
    "train_seeds",
]
