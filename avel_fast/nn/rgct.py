"""User-facing RGCT (SPEC §4.1): the reference's parameters and `state_dict`, made fast in the kernels work."""
from avel_fast.reference import rgct as reference


class RGCT(reference.RGCT):
    """Drop-in `avel_fast.reference.RGCT`: same constructor, parameters and outputs; adds no parameters."""
