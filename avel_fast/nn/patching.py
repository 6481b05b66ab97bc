"""Swap reference modules for their fast twins inside any model, in place, keeping the weights."""
from __future__ import annotations

from torch import nn

from avel_fast import reference
from avel_fast.nn.attention import AudioGuidedAttention
from avel_fast.nn.dpnet import DPBlock, TemporalConv
from avel_fast.nn.fusion import GatedFusion
from avel_fast.nn.lss import LSSLoss
from avel_fast.nn.lstm import BiLSTM
from avel_fast.nn.rgct import RGCT

FAST_OF = {
    reference.RGCT: RGCT,
    reference.TemporalConv: TemporalConv,
    reference.DPBlock: DPBlock,
    reference.GatedFusion: GatedFusion,
    reference.LSSLoss: LSSLoss,
    reference.AudioGuidedAttention: AudioGuidedAttention,
    reference.ave.BiLSTM: BiLSTM,
}
REFERENCE_OF = {fast: ref for ref, fast in FAST_OF.items()}


def swap_classes(model: nn.Module, mapping: dict[type, type]) -> nn.Module:
    """Reassign ``__class__`` of every submodule (and `model` itself) whose exact type is a key of `mapping`."""
    for module in model.modules():
        replacement = mapping.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
    return model


def patch(model: nn.Module) -> nn.Module:
    """Make every reference RGCT/TemporalConv/DPBlock/GatedFusion/LSSLoss/AudioGuidedAttention/BiLSTM in `model`
    the fast class, in place.

    Parameters, buffers and hooks are untouched (the fast classes add none), so `state_dict` is unchanged;
    subclasses of the reference classes defined by users are left alone. Returns `model`.
    """
    return swap_classes(model, FAST_OF)


def unpatch(model: nn.Module) -> nn.Module:
    """Undo `patch`: every fast module of `model` becomes its reference class again, in place. Returns `model`."""
    return swap_classes(model, REFERENCE_OF)
