"""`avel-fast audio textures|mfcc|clusters` end to end on tiny WAV files, a long file in bounded memory, and their
refusals of bad input."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.audio import SoundFeatures, read_features, read_targets, texture_statistics, write_features
import avel_fast.audio as audio_package
from avel_fast.audio import targets as targets_module
from avel_fast.audio.targets import KMeansResult
from avel_fast.cli.main import app

soundfile = pytest.importorskip("soundfile")
pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, ["audio", *(str(arg) for arg in args)], env={"COLUMNS": "200"})


def write_wav(path, seconds, rate, channels=1, seed=0):
    samples = np.random.default_rng(seed).normal(0, 0.1, (round(seconds * rate), channels)).astype(np.float32)
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)


def one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.output


def test_textures_of_one_stereo_file_are_its_mono_mix(tmp_path):
    mono = write_wav(tmp_path / "a.wav", 1.2, 22_050, channels=2)
    result = invoke("textures", tmp_path / "a.wav", tmp_path / "t.h5")
    assert result.exit_code == 0, result.output
    data = read_features(tmp_path / "t.h5")
    assert data.features.shape == (1, 502) and data.names == ("a.wav",) and data.kind == "textures"
    np.testing.assert_allclose(data.features[0], texture_statistics(mono, 22_050).numpy(), atol=1e-6)


def test_per_segment_textures_mfcc_and_clusters_of_a_directory(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for index, rate in enumerate((16_000, 8_000, 16_000)):
        write_wav(clips / f"v{index}.wav", 10.0, rate, seed=index)
    (clips / "notes.txt").write_text("ignored")
    result = invoke("textures", clips, tmp_path / "t.h5", "--per-segment", "--method", "decimated")
    assert result.exit_code == 0, result.output
    data = read_features(tmp_path / "t.h5")
    assert data.features.shape == (3, 10, 502) and data.names == ("v0.wav", "v1.wav", "v2.wav")
    assert data.method == "decimated"
    result = invoke("mfcc", clips, tmp_path / "m.h5", "--per-segment")
    assert result.exit_code == 0, result.output
    assert read_features(tmp_path / "m.h5").features.shape == (3, 10, 3240)
    result = invoke("clusters", tmp_path / "t.h5", tmp_path / "c.h5", "--k", "4", "--codes", "5")
    assert result.exit_code == 0, result.output
    targets = read_targets(tmp_path / "c.h5")
    assert targets.labels.shape == (3, 10) and set(targets.labels.ravel()) == {0, 1, 2, 3}
    assert targets.codes.shape == (3, 10, 5) and targets.centers.shape == (4, 502)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f.attrs["k"] == 4 and f.attrs["seed"] == 0


def test_mfcc_of_whole_clips_of_different_lengths_is_refused(tmp_path):
    write_wav(tmp_path / "a.wav", 1.0, 16_000)
    write_wav(tmp_path / "b.wav", 1.5, 16_000)
    one_line_error(invoke("mfcc", tmp_path, tmp_path / "m.h5"), "--per-segment")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize(
    ("setup", "args", "text"),
    [
        (lambda d: None, ("textures", "{d}/missing", "{d}/o.h5"), "no such file or directory"),
        (lambda d: (d / "in").mkdir(), ("textures", "{d}/in", "{d}/o.h5"), "no .wav files"),
        (lambda d: (d / "bad.wav").write_bytes(b"RIFF0000junk"), ("textures", "{d}/bad.wav", "{d}/o.h5"),
         "not a readable sound file"),
        (lambda d: write_wav(d / "short.wav", 0.5, 16_000), ("textures", "{d}/short.wav", "{d}/o.h5"), "too short"),
        (lambda d: write_wav(d / "a.wav", 1.2, 16_000), ("textures", "{d}/a.wav", "{d}/o.h5", "--method", "x"),
         "method"),
        (lambda d: write_wav(d / "a.wav", 1.2, 16_000), ("mfcc", "{d}/a.wav", "{d}/o.h5", "--dtype", "half"),
         "--dtype"),
        (lambda d: write_wav(d / "a.wav", 5.0, 16_000), ("mfcc", "{d}/a.wav", "{d}/o.h5", "--per-segment"),
         "too short"),
        (lambda d: (d / "o.h5").write_text("x"), ("textures", "{d}/o.h5", "{d}/o.h5"), "exists"),
        (lambda d: write_wav(d / "a.wav", 1.2, 16_000), ("textures", "{d}/a.wav", "{d}/o.h5", "--device", "gpu"),
         "not a torch device"),
        (lambda d: None, ("clusters", "{d}/missing.h5", "{d}/o.h5"), "file not found"),
        (lambda d: (d / "f.h5").write_text("x"), ("clusters", "{d}/f.h5", "{d}/o.h5"), "not an HDF5 file"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, setup, args, text):
    setup(tmp_path)
    before = {path.name for path in tmp_path.iterdir()}
    one_line_error(invoke(*(arg.format(d=tmp_path) for arg in args)), text)
    assert {path.name for path in tmp_path.iterdir()} == before


def test_clusters_refuses_more_clusters_than_rows(tmp_path):
    write_wav(tmp_path / "a.wav", 1.2, 16_000)
    assert invoke("textures", tmp_path / "a.wav", tmp_path / "t.h5").exit_code == 0
    one_line_error(invoke("clusters", tmp_path / "t.h5", tmp_path / "c.h5", "--k", "2"), "exceeds the 1 feature rows")
    assert not (tmp_path / "c.h5").exists()


def duplicate_features(path):
    rows = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    write_features(path, SoundFeatures(np.tile(rows, (4, 1)), tuple(f"c{i}.wav" for i in range(12)), "mfcc", "x"))


def test_clusters_refuses_more_clusters_than_distinct_rows(tmp_path):
    duplicate_features(tmp_path / "f.h5")
    one_line_error(invoke("clusters", tmp_path / "f.h5", tmp_path / "c.h5", "--k", "4"),
                   f"{tmp_path / 'f.h5'}: k = 4 exceeds the 3 distinct rows")
    assert not (tmp_path / "c.h5").exists()
    assert invoke("clusters", tmp_path / "f.h5", tmp_path / "c.h5", "--k", "3").exit_code == 0


def test_clusters_warns_of_an_empty_cluster(tmp_path, monkeypatch):
    duplicate_features(tmp_path / "f.h5")

    def one_cluster_empty(points, k, n_init, max_iter, seed):
        return KMeansResult(torch.arange(points.shape[0]) % (k - 1), points[:k], 1.0)

    monkeypatch.setattr(targets_module, "sklearn_kmeans", one_cluster_empty)
    result = invoke("clusters", tmp_path / "f.h5", tmp_path / "c.h5", "--k", "3")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "warning: k-means: 1 of the K = 3 clusters are empty (3 distinct rows)"


LIMITED = """
import resource, sys
import numpy, soundfile, torch
import avel_fast.audio
from avel_fast.cli.main import app
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmPeak")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (peak + int(sys.argv[1]), peak + int(sys.argv[1])))
sys.argv = ["avel-fast", *sys.argv[2:]]
app()
"""


@pytest.mark.slow
def test_textures_of_a_long_file_run_in_bounded_memory(tmp_path):
    """`docs/audio.md#long-files`: a minute of audio under an address-space limit of 512 MB above what the
    imports take (measured: 0.30 GB; with the dense filterbank and all 32 bands at 20 kHz at once, 0.95 GB)."""
    write_wav(tmp_path / "long.wav", 60.0, 16_000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", LIMITED, str(512 << 20), "audio", "textures",
                             tmp_path / "long.wav", tmp_path / "t.h5"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert read_features(tmp_path / "t.h5").features.shape == (1, 502)


@pytest.mark.parametrize("error", [MemoryError("Unable to allocate 2.1 GiB for an array"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory\n(more)")])
def test_a_resource_error_is_one_line_naming_the_file(tmp_path, monkeypatch, error):
    write_wav(tmp_path / "a.wav", 1.2, 16_000)

    def fail(*args, **options):
        raise error

    monkeypatch.setattr(audio_package, "texture_statistics", fail)
    one_line_error(invoke("textures", tmp_path / "a.wav", tmp_path / "t.h5"),
                   f"{tmp_path / 'a.wav'}: out of memory or another resource ({str(error).splitlines()[0]})")
    assert not (tmp_path / "t.h5").exists()


def test_a_per_segment_error_names_the_file(tmp_path):
    write_wav(tmp_path / "a.wav", 5.0, 16_000)
    one_line_error(invoke("textures", tmp_path / "a.wav", tmp_path / "t.h5", "--per-segment"),
                   f"{tmp_path / 'a.wav'}: waveform too short")
