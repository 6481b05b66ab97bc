"""Ambient-sound benchmarks (`docs/audio.md#performance`): texture statistics, MFCC and k-means.

"audio/textures": 8 clips of 3.75 s at 16 kHz; "reference" is the per-clip float64 numpy reference
(`avel_fast.reference.textures`), "exact" / "decimated" the batched torch paths in float32 on the CPU (default
chunk 1), "exact-cuda" / "decimated-cuda" on CUDA (skipped without a GPU). "audio/textures-cuda-512" is the
CUDA throughput on 512 clips (clips/s in extra_info). "audio/mfcc": 8 clips of 3.75 s at 22 050 Hz; "reference"
is librosa 0.11 called per clip, "fast" the batched torch MFCC. "audio/kmeans": 33 390 x 128 (the size of AVE's
per-segment audio features), K = 30, n_init = 3; "reference" is `kmeans` on the CPU (scikit-learn), "torch" /
"torch-cuda" the torch implementation `kmeans` uses on CUDA, run on the CPU / on CUDA; each row's inertia is in
extra_info. Everything on one CPU thread for both sides: torch's intra-op pool and, through threadpoolctl, the
BLAS and OpenMP pools of numpy, librosa and scikit-learn.
"""
import contextlib
import importlib

import numpy as np
import pytest
import torch

from _device import CUDA, record, synchronize
from avel_fast.audio import kmeans, mfcc, texture_statistics
from avel_fast.audio.targets import torch_kmeans
from avel_fast.reference.textures import texture_statistics_clip

CLIPS, SCENE_RATE, MFCC_RATE, SECONDS = 8, 16_000, 22_050, 3.75
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for module in ("librosa", "sklearn.cluster"):  # load their pools before limiting them
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def assert_one_thread() -> None:
    """Both sides of a comparison run on one thread (torch's pool and every BLAS / OpenMP pool loaded)."""
    from threadpoolctl import threadpool_info

    pools = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    assert torch.get_num_threads() == 1 and set(pools.values()) <= {1}, pools


def noise_clips(count: int, rate: int) -> np.ndarray:
    """AM noise clips (full-scale float32), a stand-in for ambient sound."""
    rng = np.random.default_rng(0)
    t = np.arange(round(SECONDS * rate)) / rate
    rates = rng.uniform(0.5, 32, (count, 1))
    return (rng.normal(0, 0.1, (count, t.size)) * (1 + 0.8 * np.sin(2 * np.pi * rates * t))).astype(np.float32)


@pytest.fixture(scope="module")
def texture_clips():
    return noise_clips(CLIPS, SCENE_RATE)


def test_textures_reference(benchmark, texture_clips):
    record(benchmark, "audio/textures", "reference")
    benchmark.pedantic(lambda: [texture_statistics_clip(clip, SCENE_RATE) for clip in texture_clips], rounds=3,
                       warmup_rounds=1)


@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_textures_cpu(benchmark, texture_clips, method):
    clips = torch.from_numpy(texture_clips)
    record(benchmark, "audio/textures", method)
    benchmark.pedantic(lambda: texture_statistics(clips, SCENE_RATE, method=method), rounds=5, warmup_rounds=1)


def run_cuda(clips: torch.Tensor, method: str):
    out = texture_statistics(clips, SCENE_RATE, method=method)
    synchronize()
    return out


@needs_cuda
@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_textures_cuda(benchmark, texture_clips, method):
    clips = torch.from_numpy(texture_clips).cuda()
    record(benchmark, "audio/textures", f"{method}-cuda")
    benchmark.pedantic(run_cuda, args=(clips, method), rounds=10, warmup_rounds=2)


@needs_cuda
@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_textures_cuda_throughput(benchmark, method):
    clips = torch.from_numpy(noise_clips(512, SCENE_RATE)).cuda()
    record(benchmark, "audio/textures-cuda-512", method)
    benchmark.pedantic(run_cuda, args=(clips, method), rounds=5, warmup_rounds=1)
    benchmark.extra_info["clips_per_second"] = 512 / benchmark.stats.stats.median


@pytest.fixture(scope="module")
def mfcc_clips():
    return noise_clips(CLIPS, MFCC_RATE)


def test_mfcc_librosa(benchmark, mfcc_clips):
    librosa = pytest.importorskip("librosa")
    librosa.feature.mfcc(y=mfcc_clips[0], sr=MFCC_RATE)  # numba compilation outside the timing
    assert_one_thread()
    record(benchmark, "audio/mfcc", "reference")
    benchmark.pedantic(lambda: [librosa.feature.mfcc(y=clip, sr=MFCC_RATE) for clip in mfcc_clips], rounds=5,
                       warmup_rounds=1)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_mfcc_fast(benchmark, mfcc_clips, device):
    clips = torch.from_numpy(mfcc_clips).to(device)
    assert_one_thread()

    def run():
        out = mfcc(clips, MFCC_RATE)
        synchronize()
        return out

    record(benchmark, "audio/mfcc", "fast" if device == "cpu" else "fast-cuda")
    benchmark.pedantic(run, rounds=10, warmup_rounds=2)


@pytest.fixture(scope="module")
def kmeans_points():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(30, 128, generator=generator) * 2
    return centres[torch.randint(30, (33_390,), generator=generator)] + 3 * torch.randn(33_390, 128,
                                                                                      generator=generator)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_kmeans_torch(benchmark, kmeans_points, device):
    points = kmeans_points.to(device=device, dtype=torch.float64)
    assert_one_thread()
    record(benchmark, "audio/kmeans", "torch" if device == "cpu" else "torch-cuda")
    result = benchmark.pedantic(lambda: torch_kmeans(points, 30, 3, 100, 0), rounds=3, warmup_rounds=0)
    benchmark.extra_info["inertia"] = result.inertia


def test_kmeans_sklearn(benchmark, kmeans_points):
    pytest.importorskip("sklearn")
    assert_one_thread()
    record(benchmark, "audio/kmeans", "reference")
    result = benchmark.pedantic(lambda: kmeans(kmeans_points, 30, n_init=3, seed=0), rounds=3, warmup_rounds=0)
    benchmark.extra_info["inertia"] = result.inertia
