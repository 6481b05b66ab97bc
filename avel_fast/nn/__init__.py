"""Fast drop-in modules: the constructors, parameters and `state_dict` of `avel_fast.reference` (docs/fast-path.md).

`patch(model)` / `unpatch(model)` swap the reference modules of any model for these and back, in place.
"""
from avel_fast.nn.attention import AudioGuidedAttention
from avel_fast.nn.dpnet import DPBlock, TemporalConv
from avel_fast.nn.fusion import GatedFusion
from avel_fast.nn.lss import LSSLoss
from avel_fast.nn.lstm import BiLSTM
from avel_fast.nn.patching import patch, unpatch
from avel_fast.nn.rgct import RGCT

__all__ = ["RGCT", "AudioGuidedAttention", "BiLSTM", "DPBlock", "GatedFusion", "LSSLoss", "TemporalConv", "patch", "unpatch"]
