"""User-facing DPNet blocks (SPEC §4.2): the reference's parameters and `state_dict`."""
from avel_fast.reference import dpnet as reference


class TemporalConv(reference.TemporalConv):
    """Drop-in `avel_fast.reference.TemporalConv`: same constructor, parameters and outputs."""


class DPBlock(reference.DPBlock):
    """Drop-in `avel_fast.reference.DPBlock`: same constructor, parameters and outputs."""
