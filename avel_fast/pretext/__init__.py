"""The ambient-sound pretext task (`docs/audio.md#pretext`): paired synthetic scenes or a directory of (image,
sound) pairs, image networks, sound-derived targets, and the linear probe / NMI evaluations (Owens et al., as
reproduced by the seed paper)."""
from avel_fast.pretext.evaluation import (
    TARGET_KINDS,
    PretextTargets,
    linear_probe,
    network_features,
    nmi,
    pretext_loss,
    pretext_targets,
    recalibrate_batchnorm,
)
from avel_fast.pretext.networks import VISUAL_NETS, VisualNet, build_visual_net
from avel_fast.pretext.pairs import ScenePairs, read_pairs
from avel_fast.pretext.scenes import SceneRecipe, SyntheticScenes, scene_recipes, synthetic_scenes

__all__ = [
    "TARGET_KINDS",
    "VISUAL_NETS",
    "PretextTargets",
    "SceneRecipe",
    "ScenePairs",
    "SyntheticScenes",
    "VisualNet",
    "build_visual_net",
    "linear_probe",
    "network_features",
    "nmi",
    "pretext_loss",
    "pretext_targets",
    "read_pairs",
    "recalibrate_batchnorm",
    "scene_recipes",
    "synthetic_scenes",
]
