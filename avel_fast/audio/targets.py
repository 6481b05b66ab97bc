"""Pretext targets from sound summaries: z-scoring, k-means clusters, PCA sign codes (`docs/audio.md#targets`).

Owens et al. cluster the sound statistics with k-means and train the image network to predict the cluster, or
predict the sign bits of the top principal components; the seed paper clusters with K = 15 (main table) and
sees little gain past 30 (its sweep).
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

MIN_STD = 1e-8


class EmptyClusterWarning(UserWarning):
    """k-means ended with a cluster that no row is nearest to (duplicate rows)."""


class KMeansResult(NamedTuple):
    labels: torch.Tensor
    """[N] int64 cluster of each row."""
    centers: torch.Tensor
    """[K, D] in the input's dtype."""
    inertia: float
    """Σ of squared distances to the assigned centres."""


def _check_matrix(x, name: str, min_rows: int = 1) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point [N, D] matrix, got {x.dtype} shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def standardize(features) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per dimension of the training features [N, D]; std < 1e-8 becomes 1 (constant dimensions)."""
    features = _check_matrix(features, "features")
    std = features.std(dim=0, unbiased=False)
    return features.mean(dim=0), torch.where(std < MIN_STD, torch.ones_like(std), std)


def _squared_distances(x: torch.Tensor, x_sq: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    return (x_sq[:, None] - 2 * x @ centers.T + centers.square().sum(dim=1)).clamp_min_(0)


def _kmeans_plus_plus(x: torch.Tensor, x_sq: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, as scikit-learn): each step draws 2 + ⌊ln k⌋ candidates
    ∝ D² on the CPU generator and keeps the one that lowers the potential most."""
    trials = 2 + int(math.log(k))
    chosen = [int(torch.randint(x.shape[0], (1,), generator=generator))]
    closest = _squared_distances(x, x_sq, x[chosen])[:, 0]
    for _ in range(1, k):
        weights = closest.cpu()
        if not weights.sum() > 0:
            weights = torch.ones_like(weights)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator).to(x.device)
        potentials = torch.minimum(closest[:, None], _squared_distances(x, x_sq, x[candidates]))
        best = int(potentials.sum(dim=0).argmin())
        chosen.append(int(candidates[best]))
        closest = potentials[:, best]
    return x[chosen]


def _scores(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """‖c‖² − 2·x·c [N, K]: the squared distances less the per-row constant ‖x‖², one GEMM."""
    return torch.addmm(centers.square().sum(dim=1)[None], x, centers.T, alpha=-2)


def _update_centers(x: torch.Tensor, labels: torch.Tensor, own: torch.Tensor, k: int) -> torch.Tensor:
    """Cluster means; an empty cluster takes the point farthest from its own centre (`own`: [N] squared
    distances to the assigned centres)."""
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    centers = sums / counts.clamp_min(1)[:, None]
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        own = own.clone()
        for cluster in empty:
            farthest = int(own.argmax())
            centers[cluster] = x[farthest]
            own[farthest] = -1
    return centers


def _lloyd(x, x_sq, centers, max_iter):
    labels = None
    for _ in range(max_iter):
        best, assigned = _scores(x, centers).min(dim=1)
        if labels is not None and torch.equal(assigned, labels):
            break
        labels = assigned
        centers = _update_centers(x, labels, best + x_sq, centers.shape[0])
    best, labels = _scores(x, centers).min(dim=1)
    return labels, centers, float((best + x_sq).clamp_min_(0).sum())


def torch_kmeans(points: torch.Tensor, k: int, n_init: int, max_iter: int, seed: int) -> KMeansResult:
    """The torch k-means of `kmeans` on CUDA, on float64 `points` of any device: greedy k-means++, Lloyd until
    the assignments stop changing, best of `n_init` by inertia; deterministic for a seed on the CPU."""
    points_sq = points.square().sum(dim=1)
    generator = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(n_init):
        run = _lloyd(points, points_sq, _kmeans_plus_plus(points, points_sq, k, generator), max_iter)
        if best is None or run[2] < best[2]:
            best = run
    return KMeansResult(*best)


def sklearn_kmeans(points: torch.Tensor, k: int, n_init: int, max_iter: int, seed: int) -> KMeansResult:
    """The CPU k-means of `kmeans`: scikit-learn's `KMeans` (greedy k-means++, Lloyd to strict convergence,
    `random_state=seed`) on float64 `points`."""
    try:
        from sklearn.cluster import KMeans
    except ImportError as err:
        raise ImportError("k-means on the CPU needs scikit-learn: pip install -e '.[audio]'") from err
    fit = KMeans(k, init="k-means++", n_init=n_init, max_iter=max_iter, tol=0.0, random_state=seed).fit(
        points.numpy()
    )
    return KMeansResult(torch.from_numpy(fit.labels_).long(), torch.from_numpy(fit.cluster_centers_),
                        float(fit.inertia_))


def _distinct_rows(x: torch.Tensor) -> int:
    return torch.unique(x, dim=0).shape[0]


def _check_distinct(x: torch.Tensor, k: int) -> None:
    """ValueError when `k` exceeds the distinct rows of `x`; distinct values of one projection bound their number
    from below, so the exact count (a row sort) runs only when that bound is under `k`."""
    projection = torch.linspace(1.0, 2.0, x.shape[1], dtype=x.dtype, device=x.device)
    if torch.unique(x @ projection).numel() >= k:
        return
    distinct = _distinct_rows(x)
    if k > distinct:
        raise ValueError(f"k = {k} exceeds the {distinct} distinct rows (equal rows share a cluster)")


def kmeans(x, k: int, *, n_init: int = 3, max_iter: int = 100, seed: int = 0) -> KMeansResult:
    """k-means of the rows of `x` [N, D] in float64 (`docs/audio.md#kmeans`): scikit-learn's `KMeans` for x on
    the CPU, `torch_kmeans` on CUDA; k-means++ init, best of `n_init` runs by inertia, deterministic for a seed.

    Raises ValueError when `k` exceeds the distinct rows; warns (`EmptyClusterWarning`) when a cluster ends empty.
    """
    for name, value in (("k", k), ("n_init", n_init), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    x = _check_matrix(x, "x", min_rows=k)
    points = x.detach().to(torch.float64)
    _check_distinct(points, k)
    fit = torch_kmeans if points.is_cuda else sklearn_kmeans
    labels, centers, inertia = fit(points, k, n_init, max_iter, seed)
    empty = k - labels.unique().numel()
    if empty:
        warnings.warn(f"k-means: {empty} of the K = {k} clusters are empty ({_distinct_rows(points)} distinct rows)",
                      EmptyClusterWarning, stacklevel=2)
    return KMeansResult(labels, centers.to(x.dtype), inertia)


def pca_components(train, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], components [bits, D]) of the training matrix: top right-singular vectors of the centred
    matrix, each signed so that its largest-|·| loading is positive (reproducible across LAPACK builds)."""
    train = _check_matrix(train, "train", min_rows=2)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= min(train.shape):
        raise ValueError(f"bits must be an integer in 1..{min(train.shape)} (min of N and D), got {bits!r}")
    points = train.to(torch.float64)
    mean = points.mean(dim=0)
    components = torch.linalg.svd(points - mean, full_matrices=False).Vh[:bits]
    signs = components.gather(1, components.abs().argmax(dim=1, keepdim=True)).sign()
    return mean, components * signs


def pca_codes(z, bits: int = 30, *, train=None) -> torch.Tensor:
    """Owens' binary codes: uint8 [N, bits] signs of (z − mean)·Vᵀ, V the top `bits` principal directions of
    `train` (default: `z` itself)."""
    z = _check_matrix(z, "z")
    return sign_codes(z, *pca_components(z if train is None else train, bits))


def sign_codes(z, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """uint8 [N, bits]: 1 where (z − mean)·componentᵀ > 0 (`pca_components` gives mean and components)."""
    z = _check_matrix(z, "z")
    if components.shape[1] != z.shape[1]:
        raise ValueError(f"z has {z.shape[1]} dimensions but the components have {components.shape[1]}")
    return ((z.to(torch.float64) - mean) @ components.T > 0).to(torch.uint8)
