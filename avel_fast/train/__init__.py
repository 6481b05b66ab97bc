"""Training and evaluation of DPNet and EDRNet in the SEL and WSEL settings (SPEC §4-6, §8, §10)."""
from avel_fast.train.config import PRESETS, TrainConfig, TrainingError, default_preset, resolve_config
from avel_fast.train.engine import build_model, evaluate_run, predict, resume_config, train
from avel_fast.train.progress import RichTrainProgress, TrainProgress
from avel_fast.train.schedule import CyclicCosineSchedule

__all__ = [
    "PRESETS",
    "CyclicCosineSchedule",
    "RichTrainProgress",
    "TrainConfig",
    "TrainProgress",
    "TrainingError",
    "build_model",
    "default_preset",
    "evaluate_run",
    "predict",
    "resolve_config",
    "resume_config",
    "train",
]
