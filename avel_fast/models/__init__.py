"""DPNet and EDRNet assembled from the fast modules of `avel_fast.nn` (same signatures and `state_dict` as the
reference models)."""
from avel_fast.models.dpnet import DPNet
from avel_fast.models.edrnet import EDRNet

__all__ = ["DPNet", "EDRNet"]
