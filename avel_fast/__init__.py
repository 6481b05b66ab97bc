"""avel_fast: fast, paper-faithful audio-visual event localization on pre-extracted AVE features.

Importing this package initialises neither CUDA nor Triton.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy `avel_fast.patch` / `avel_fast.unpatch` (= `avel_fast.nn.patch` / `unpatch`), importing torch on use."""
    if name in ("patch", "unpatch"):
        import avel_fast.nn

        return getattr(avel_fast.nn, name)
    raise AttributeError(f"module 'avel_fast' has no attribute {name!r}")
