"""Pretext targets: z-scoring, k-means (scikit-learn on the CPU; the torch implementation within 1 % of its
inertia; blob recovery, determinism, best of n_init, duplicate rows and empty clusters), PCA sign codes, and the
h5 files of features and targets (`docs/audio.md#targets`)."""
import warnings
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from avel_fast.audio import (
    ClusterTargets,
    EmptyClusterWarning,
    SoundFeatures,
    kmeans,
    pca_codes,
    pca_components,
    read_features,
    read_targets,
    sign_codes,
    standardize,
    write_features,
    write_targets,
)
from avel_fast.audio import targets as targets_module
from avel_fast.audio.targets import KMeansResult, _update_centers, torch_kmeans

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(seed=0, n=400, k=5, dim=8, spread=0.3):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=generator, dtype=torch.float64) * 10
    truth = torch.randint(k, (n,), generator=generator)
    return centres[truth] + spread * torch.randn(n, dim, generator=generator, dtype=torch.float64), truth


def test_standardize_uses_population_std_and_keeps_constant_dimensions():
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]], dtype=torch.float64)
    mean, std = standardize(x)
    torch.testing.assert_close(mean, x.mean(dim=0))
    torch.testing.assert_close(std, torch.tensor([np.std([1, 3, 5]), 1.0, np.std([2, 4, 9])], dtype=torch.float64))


def torch_path(x, k, n_init=3, seed=0):
    """The CUDA implementation, run on the CPU, with `kmeans`'s signature and dtype handling."""
    labels, centers, inertia = torch_kmeans(x.to(torch.float64), k, n_init, 100, seed)
    return KMeansResult(labels, centers.to(x.dtype), inertia)


IMPLEMENTATIONS = [pytest.param(kmeans, id="sklearn"), pytest.param(torch_path, id="torch")]


@pytest.mark.parametrize("fit", IMPLEMENTATIONS)
def test_kmeans_recovers_separated_blobs(fit):
    x, truth = blobs()
    result = fit(x, 5, seed=3)
    assert result.labels.shape == (400,) and result.centers.shape == (5, 8) and result.centers.dtype == x.dtype
    assert result.labels.dtype == torch.int64
    pairs = set(zip(truth.tolist(), result.labels.tolist()))
    assert len(pairs) == 5 and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 5
    distances = torch.cdist(x, result.centers).square()
    assert torch.equal(distances.argmin(dim=1), result.labels)
    assert result.inertia == pytest.approx(float(distances.min(dim=1).values.sum()), rel=1e-9)


@pytest.mark.parametrize("fit", IMPLEMENTATIONS)
def test_kmeans_is_deterministic_and_keeps_the_best_run(fit):
    x, _ = blobs(seed=1, k=12, spread=4.0)
    first, second = fit(x, 8, seed=7), fit(x, 8, seed=7)
    assert torch.equal(first.labels, second.labels) and first.inertia == second.inertia
    single = fit(x, 8, seed=7, n_init=1)
    assert first.inertia <= single.inertia
    assert fit(x.float(), 8, seed=7).centers.dtype == torch.float32


def test_kmeans_on_the_cpu_is_scikit_learn():
    cluster = pytest.importorskip("sklearn.cluster")
    x, _ = blobs(seed=2, n=600, k=20, dim=6, spread=6.0)
    ours = kmeans(x.float(), 10, seed=4)
    theirs = cluster.KMeans(10, n_init=3, random_state=4, tol=0.0).fit(x.float().double().numpy())
    assert torch.equal(ours.labels, torch.from_numpy(theirs.labels_).long()) and ours.inertia == theirs.inertia_
    torch.testing.assert_close(ours.centers, torch.from_numpy(theirs.cluster_centers_).float())


def benchmark_like(rows):
    """The first rows of bench/test_bench_audio.py's k-means data (30 overlapping Gaussian clusters in 128-d)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(30, 128, generator=generator) * 2
    truth = torch.randint(30, (33_390,), generator=generator)[:rows]
    return centres[truth] + 3 * torch.randn(33_390, 128, generator=generator)[:rows]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: blobs(seed=0, n=3000, k=30, dim=16, spread=1.0)[0], id="30-separated-blobs"),
        pytest.param(lambda: benchmark_like(4000), id="benchmark-data-4000-rows"),
    ],
)
def test_torch_kmeans_is_within_one_percent_of_sklearn(data):
    """The torch path (CUDA) holds scikit-learn's inertia within 1 % (plain k-means++ seeding: 2.8x on the
    blobs, +1.2 % on the benchmark rows)."""
    cluster = pytest.importorskip("sklearn.cluster")
    x = data().to(torch.float64)
    theirs = cluster.KMeans(30, n_init=3, random_state=0, tol=0.0).fit(x.numpy()).inertia_
    assert torch_path(x, 30).inertia <= 1.01 * theirs


@pytest.mark.parametrize("fit", IMPLEMENTATIONS)
def test_kmeans_of_duplicate_rows(fit):
    x = torch.tensor([[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]], dtype=torch.float64).repeat(20, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(x, 3, seed=1)
    assert result.inertia == pytest.approx(0, abs=1e-20)
    assert len(set(zip(x[:, 0].tolist(), result.labels.tolist()))) == 3
    with pytest.raises(ValueError, match="k = 4 exceeds the 3 distinct rows"):
        kmeans(x, 4)


def test_an_empty_cluster_is_a_warning_naming_k_and_the_distinct_rows(monkeypatch):
    x = torch.arange(12, dtype=torch.float64).reshape(6, 2)

    def one_cluster_empty(points, k, n_init, max_iter, seed):
        return KMeansResult(torch.tensor([0, 0, 1, 1, 2, 2]), points[:k], 4.0)

    monkeypatch.setattr(targets_module, "sklearn_kmeans", one_cluster_empty)
    with pytest.warns(EmptyClusterWarning, match=r"1 of the K = 4 clusters are empty \(6 distinct rows\)"):
        kmeans(x, 4)


def test_empty_cluster_takes_the_farthest_point():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0], [30.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])
    own = (x[:, 0] - torch.tensor([0.5, 0.5, 17.0, 17.0, 17.0], dtype=torch.float64)).square()
    centers = _update_centers(x, labels, own, 3)
    torch.testing.assert_close(centers, torch.tensor([[0.5], [17.0], [30.0]], dtype=torch.float64))


def test_pca_codes_do_not_depend_on_the_svd_sign_convention():
    x, _ = blobs(seed=4, dim=10, spread=3.0)
    mean, components = pca_components(x, 4)
    centred = (x - x.mean(dim=0)).numpy()
    _, vectors = np.linalg.eigh(centred.T @ centred)
    reference = vectors[:, ::-1][:, :4].T
    reference *= np.sign(reference[np.arange(4), np.abs(reference).argmax(axis=1)])[:, None]
    np.testing.assert_allclose(components.numpy(), reference, atol=1e-8)
    codes = pca_codes(x, 4)
    assert codes.dtype == torch.uint8 and codes.shape == (400, 4)
    assert torch.equal(codes, ((torch.from_numpy(centred) @ components.T) > 0).to(torch.uint8))
    assert torch.equal(pca_codes(-x, 4), 1 - codes)  # the components of -x are re-signed to the same ones
    assert torch.equal(sign_codes(x[:7], mean, components), codes[:7])
    assert torch.equal(pca_codes(x[:7], 4, train=x), codes[:7])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kmeans(torch.zeros(3, 2), 4), "at least 4 rows"),
        (lambda: kmeans(torch.zeros(5, 2), 0), "k must be"),
        (lambda: kmeans(torch.zeros(5), 2), r"\[N, D\]"),
        (lambda: kmeans(torch.full((5, 2), float("nan")), 2), "NaN"),
        (lambda: kmeans(torch.zeros(5, 2), 2, n_init=0), "n_init"),
        (lambda: pca_codes(torch.zeros(5, 3), 4), "bits"),
        (lambda: pca_codes(torch.zeros(5, 3), 2, train=torch.zeros(5, 4)), "dimensions"),
        (lambda: standardize(torch.zeros(5, dtype=torch.int64)), "floating-point"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- files -------------------------------------------------------------------------------------------------------

def features(shape=(3, 10, 502)):
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return SoundFeatures(values, tuple(f"clip{i}.wav" for i in range(shape[0])), "textures", "exact")


def targets(codes=True):
    rng = np.random.default_rng(1)
    return ClusterTargets(
        labels=rng.integers(0, 4, (3, 10)), centers=rng.normal(size=(4, 6)).astype(np.float32),
        mean=np.zeros(6, np.float32), std=np.ones(6, np.float32), seed=5, inertia=12.5,
        codes=rng.integers(0, 2, (3, 10, 2)).astype(np.uint8) if codes else None,
        components=rng.normal(size=(2, 6)) if codes else None,
    )


def test_features_and_targets_round_trip(tmp_path):
    written = features()
    write_features(tmp_path / "f.h5", written)
    read = read_features(tmp_path / "f.h5")
    assert np.array_equal(read.features, written.features) and read.names == written.names
    assert (read.kind, read.method) == ("textures", "exact")
    with h5py.File(tmp_path / "f.h5") as f:
        assert f["avadataset"].shape == (3, 10, 502)  # the AVE key: can stand in for audio_feature.h5
    for with_codes in (True, False):
        write_targets(tmp_path / "t.h5", targets(with_codes))
        read_back = read_targets(tmp_path / "t.h5")
        expected = targets(with_codes)
        assert np.array_equal(read_back.labels, expected.labels) and read_back.seed == 5
        assert read_back.inertia == 12.5 and (read_back.codes is None) == (not with_codes)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "t.h5"
    write_targets(path, targets())
    broken = replace(targets(), codes=np.full((3, 10, 2), None, dtype=object))  # h5py cannot store it
    with pytest.raises(TypeError):
        write_targets(path, broken)
    assert read_targets(path).seed == 5
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_features(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        read_features(tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(ValueError, match="'avadataset' missing"):
        read_features(tmp_path / "empty.h5")
    with pytest.raises(ValueError, match="'labels' missing"):
        read_targets(tmp_path / "empty.h5")
    bad = features()
    for problem, data in (
        ("NaN or inf", SoundFeatures(np.full((2, 5), np.nan, np.float32), ("a", "b"), "textures", "exact")),
        ("2 names for 3", SoundFeatures(bad.features, bad.names[:2], "textures", "exact")),
        ("kind", SoundFeatures(bad.features, bad.names, "vggish", "exact")),
        (r"\[V, D\]", SoundFeatures(bad.features[0, 0], bad.names, "textures", "exact")),
    ):
        with pytest.raises(ValueError, match=problem):
            write_features(tmp_path / "bad.h5", data)
    assert not (tmp_path / "bad.h5").exists()
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 4\)"):
        write_targets(tmp_path / "bad.h5", replace(targets(), labels=np.full((3, 10), 4)))
