"""User-facing gated fusion (SPEC §4.2): the reference's parameters and `state_dict`."""
from avel_fast.reference import fusion as reference


class GatedFusion(reference.GatedFusion):
    """Drop-in `avel_fast.reference.GatedFusion`: same constructor, parameters and outputs."""
