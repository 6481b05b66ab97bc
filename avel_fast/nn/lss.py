"""User-facing Land-Shore-Sea loss (SPEC §5.1)."""
from avel_fast.reference import lss as reference


class LSSLoss(reference.LSSLoss):
    """Drop-in `avel_fast.reference.LSSLoss`: same constructor and value."""
