"""Ambient-sound supervision (`docs/audio.md`): sound-texture statistics and MFCC of raw audio, batched in torch,
and the pretext targets (k-means clusters, PCA sign codes) of Owens et al. as reproduced by the seed paper."""
from avel_fast.audio.files import (
    ClusterTargets,
    SoundFeatures,
    read_features,
    read_targets,
    read_wav,
    wav_files,
    write_features,
    write_targets,
)
from avel_fast.audio.filterbanks import TEXTURE_FEATURE_NAMES
from avel_fast.audio.mfcc import mfcc, mfcc_vector
from avel_fast.audio.segments import segment_windows
from avel_fast.audio.targets import (
    EmptyClusterWarning,
    KMeansResult,
    kmeans,
    pca_codes,
    pca_components,
    sign_codes,
    standardize,
)
from avel_fast.audio.textures import texture_envelopes, texture_statistics

__all__ = [
    "TEXTURE_FEATURE_NAMES",
    "ClusterTargets",
    "EmptyClusterWarning",
    "KMeansResult",
    "SoundFeatures",
    "kmeans",
    "mfcc",
    "mfcc_vector",
    "pca_codes",
    "pca_components",
    "read_features",
    "read_targets",
    "read_wav",
    "segment_windows",
    "sign_codes",
    "standardize",
    "texture_envelopes",
    "texture_statistics",
    "wav_files",
    "write_features",
    "write_targets",
]
