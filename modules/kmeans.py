"""Seeded, vectorised k-means (k-means++ init + Lloyd iterations) as pure functions.

Used to initialise RQ-VAE codebooks (modules/quantize.py) and by the RQ-KMeans tokenizer
(modules/rq_kmeans.py). Shapes: x [M, Z] points, centroids [k, Z].
"""

import math
from typing import NamedTuple

import torch

INITS = ("kmeans++", "random")


class KMeansResult(NamedTuple):
    centroids: torch.Tensor  # [k, Z] float32
    assignments: torch.Tensor  # [M] int64, nearest centroid of each point (w.r.t. `centroids`)
    inertia: torch.Tensor  # [] sum of squared distances of points to their assigned centroid
    inertia_history: torch.Tensor  # [T + 1] inertia at each assignment step, last == inertia


class LloydStep(NamedTuple):
    centroids: torch.Tensor  # [k, Z] updated centroids
    assignments: torch.Tensor  # [M] assignments w.r.t. the *input* centroids
    inertia: torch.Tensor  # [] objective of the input centroids under those assignments


def squared_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance matrix ‖x‖² + ‖c‖² − 2 x·c, clamped at 0. x: [M, Z], c: [K, Z] -> [M, K]."""
    x_sq = x.pow(2).sum(-1, keepdim=True)  # [M, 1]
    c_sq = c.pow(2).sum(-1)  # [K]
    return (x_sq + c_sq - 2.0 * (x @ c.T)).clamp_min(0.0)


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """argmin_k ‖x − c_k‖² = argmin_k (‖c_k‖² − 2 x·c_k), one fused addmm (‖x‖² is constant per row).

    x: [M, Z], centroids: [k, Z] -> [M] int64.
    """
    return torch.addmm(centroids.pow(2).sum(-1), x, centroids.T, alpha=-2.0).argmin(dim=1)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each point. Returns (assignments [M] int64, exact ‖x − c‖² to it [M])."""
    assignments = nearest(x, centroids)  # [M]
    sq_dist = (x - centroids[assignments]).pow(2).sum(-1)  # [M]
    return assignments, sq_dist


def reseed_empty(
    centroids: torch.Tensor, empty: torch.Tensor, x: torch.Tensor, sq_dist: torch.Tensor
) -> torch.Tensor:
    """Move the j-th empty centroid (in index order) onto the j-th point farthest from its centroid.

    Deterministic: ties between equally far points go to the lower point index. No host sync.
    centroids: [k, Z], empty: [k] bool, x: [M, Z], sq_dist: [M] -> [k, Z].
    """
    farthest = torch.argsort(sq_dist, descending=True, stable=True)  # [M]
    rank = (torch.cumsum(empty.long(), 0) - 1).clamp_min(0)  # [k], j for the j-th empty cluster
    donors = x[farthest[rank]]  # [k, Z]
    return torch.where(empty.unsqueeze(1), donors, centroids)


def lloyd_step(x: torch.Tensor, centroids: torch.Tensor) -> LloydStep:
    """One assignment + mean update. Empty clusters are reseeded (see `reseed_empty`)."""
    k = centroids.shape[0]
    assignments, sq_dist = assign(x, centroids)
    counts = torch.bincount(assignments, minlength=k)  # [k]
    sums = torch.zeros_like(centroids).index_add_(0, assignments, x)  # [k, Z]
    means = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
    new = reseed_empty(means, counts == 0, x, sq_dist)
    return LloydStep(centroids=new, assignments=assignments, inertia=sq_dist.sum())


def rng_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Random numbers are drawn on the generator's device (a CPU generator may seed CUDA data)."""
    return fallback if generator is None else generator.device


def sample_proportional(weights: torch.Tensor, generator: torch.Generator | None, n: int = 1) -> torch.Tensor:
    """n indices drawn with replacement with probability ∝ weights [M] (>= 0); uniform if they are all 0.
    Returns [n] int64."""
    weights = torch.where(weights.sum() > 0, weights, torch.ones_like(weights))
    cdf = weights.cumsum(0)  # [M]
    u = torch.rand(n, generator=generator, device=rng_device(generator, weights.device)).to(cdf) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_max(weights.shape[0] - 1)


def greedy_candidates(k: int) -> int:
    """2 + ⌊ln k⌋: candidates per centre of greedy k-means++ (Arthur & Vassilvitskii 2007, §5; the number
    scikit-learn uses)."""
    return 2 + int(math.log(k))


def kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None, n_candidates: int | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding. x: [M, Z] -> [k, Z].

    The first centre is a uniform draw; each next one is the best of L candidates drawn ∝ D² (squared
    distance to the nearest chosen centre): the one whose addition leaves the smallest potential Σ D².
    L = n_candidates, default `greedy_candidates(k)`; L = 1 is plain k-means++. If every point already
    coincides with a chosen centre (fewer than k distinct points), candidates are drawn uniformly.
    No host sync: the choice stays on the device.
    """
    n_candidates = greedy_candidates(k) if n_candidates is None else n_candidates
    x_sq = x.pow(2).sum(-1)  # [M]
    first = torch.randint(x.shape[0], (1,), generator=generator, device=rng_device(generator, x.device))
    index = [first.to(x.device)]
    d2 = candidate_distances(x, x_sq, index[0])[:, 0]  # [M] squared distance to the nearest chosen centre
    for _ in range(k - 1):
        candidates = sample_proportional(d2, generator, n_candidates).to(x.device)  # [L]
        with_candidate = torch.minimum(d2.unsqueeze(1), candidate_distances(x, x_sq, candidates))  # [M, L]
        best = with_candidate.sum(0).argmin()  # [] the candidate that lowers the potential most
        d2 = with_candidate[:, best]
        index.append(candidates[best].reshape(1))
    return x[torch.cat(index)]


def candidate_distances(x: torch.Tensor, x_sq: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """[M, L] squared distances of x [M, Z] (‖x‖² = x_sq [M]) to the points x[candidates] ([L] indices),
    exactly 0 for each candidate's own point despite rounding."""
    c = x[candidates]  # [L, Z]
    d2 = torch.addmm(x_sq.unsqueeze(1) + c.pow(2).sum(-1), x, c.T, alpha=-2.0).clamp_min(0.0)  # [M, L]
    return d2.scatter(0, candidates.unsqueeze(0), 0.0)


def initial_centroids(
    x: torch.Tensor, k: int, init: str | torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """`init`: "kmeans++", "random" (k distinct rows) or explicit centroids [k, Z]."""
    if isinstance(init, torch.Tensor):
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"init centroids have shape {tuple(init.shape)}, expected {(k, x.shape[1])}")
        return init.detach().to(x)
    if init == "kmeans++":
        return kmeans_plus_plus(x, k, generator)
    if init == "random":
        perm = torch.randperm(x.shape[0], generator=generator, device=rng_device(generator, x.device))
        return x[perm[:k].to(x.device)]
    raise ValueError(f"unknown k-means init {init!r}; expected one of {INITS} or a tensor")


def kmeans(
    x: torch.Tensor,
    k: int,
    n_iters: int = 100,
    init: str | torch.Tensor = "kmeans++",
    generator: torch.Generator | None = None,
    tol: float | None = None,
) -> KMeansResult:
    """Lloyd's k-means on x [M, Z] (computed in float32, no gradient).

    Runs `n_iters` Lloyd steps, or stops early once the largest centroid shift (L2) is <= `tol`
    (checking `tol` costs one host sync per step; None never checks). The objective is non-increasing.
    Same inputs and generator state give the same result.
    """
    if x.ndim != 2:
        raise ValueError(f"kmeans expects x [M, Z], got shape {tuple(x.shape)}")
    if x.shape[0] < k:
        raise ValueError(f"kmeans needs at least k={k} points, got {x.shape[0]}")
    with torch.no_grad():
        x = x.detach().float()
        centroids = initial_centroids(x, k, init, generator)
        history = []
        for _ in range(n_iters):
            step = lloyd_step(x, centroids)
            history.append(step.inertia)
            shift = None if tol is None else (step.centroids - centroids).norm(dim=1).max()
            centroids = step.centroids
            if shift is not None and shift.item() <= tol:
                break
        assignments, sq_dist = assign(x, centroids)
        inertia = sq_dist.sum()
        history.append(inertia)
    return KMeansResult(centroids, assignments, inertia, torch.stack(history))
