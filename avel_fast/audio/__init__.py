"""Ambient-sound summaries and pretext targets (`docs/audio.md`): texture statistics, MFCC, k-means, codes."""
from avel_fast.audio.filterbanks import TEXTURE_FEATURE_NAMES
from avel_fast.audio.textures import texture_envelopes, texture_statistics

__all__ = ["TEXTURE_FEATURE_NAMES", "texture_envelopes", "texture_statistics"]
