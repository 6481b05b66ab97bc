"""SplitMix64, the generator shared with the native sampler (`csrc/rng.hpp`); both give identical streams.

Pure Python on purpose: it is the twin that the tests compare `avel_fast._sampler` against.
"""
from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
STREAM_MUL = 0xD1B54A32D192ED03


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def derive_seed(seed: int, stream: int) -> int:
    """Seed of the independent stream `stream` under `seed` (one per thread, class or video)."""
    return mix64(mix64(seed & MASK64) ^ ((stream * STREAM_MUL + 1) & MASK64))


class SplitMix64:
    """SplitMix64 (Steele, Lea & Flood 2014) with unbiased bounded draws by rejection."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK64
        return mix64(self.state)

    def below(self, n: int) -> int:
        """Uniform integer in [0, n), n >= 1."""
        threshold = (1 << 64) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n
