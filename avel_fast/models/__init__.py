"""DPNet, EDRNet, the AVE baseline and PSP assembled from the fast modules of `avel_fast.nn` (same signatures and
`state_dict` as the reference models)."""
from avel_fast.models.ave import AVEBaseline
from avel_fast.models.dpnet import DPNet
from avel_fast.models.edrnet import EDRNet
from avel_fast.models.psp import PSPNet

__all__ = ["AVEBaseline", "DPNet", "EDRNet", "PSPNet"]
