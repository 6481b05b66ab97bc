"""Paper-faithful reference implementations in plain PyTorch (docs/models.md): readable, each citing its equations.

These are the ground truth the fast modules of `avel_fast.nn` / `avel_fast.models` are tested against.
"""
from avel_fast.reference.ave import AudioGuidedAttention, AVEBaseline, max_mil_prob, soft_margin_on_probs
from avel_fast.reference.dpnet import DPBlock, DPNet, TemporalConv
from avel_fast.reference.edrnet import EDRNet, sinusoidal_positional_encoding
from avel_fast.reference.fusion import GatedFusion
from avel_fast.reference.lss import LSSLoss
from avel_fast.reference.mil import mil_loss, mil_pool
from avel_fast.reference.psp import PSPNet, avps_loss, bce_on_probs, mean_mil_prob
from avel_fast.reference.rgct import RELATIONS, RGCT, neighborhood_aggregation

__all__ = [
    "RELATIONS",
    "RGCT",
    "AVEBaseline",
    "AudioGuidedAttention",
    "DPBlock",
    "DPNet",
    "EDRNet",
    "GatedFusion",
    "LSSLoss",
    "PSPNet",
    "TemporalConv",
    "avps_loss",
    "bce_on_probs",
    "max_mil_prob",
    "mean_mil_prob",
    "mil_loss",
    "mil_pool",
    "neighborhood_aggregation",
    "sinusoidal_positional_encoding",
    "soft_margin_on_probs",
]
