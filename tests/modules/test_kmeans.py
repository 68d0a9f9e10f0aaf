import itertools
import time

import pytest
import torch
from torch.testing import assert_close

from modules.kmeans import assign, kmeans, kmeans_plus_plus, lloyd_step, squared_distances


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_squared_distances_and_assign_match_explicit_matrix():
    x, c = torch.randn(9, 4), torch.randn(5, 4)
    explicit = torch.tensor(
        [[sum((x[i, d] - c[j, d]) ** 2 for d in range(4)) for j in range(5)] for i in range(9)]
    )
    assert_close(squared_distances(x, c), explicit)
    assignments, sq_dist = assign(x, c)
    assert torch.equal(assignments, explicit.argmin(1))
    assert_close(sq_dist, explicit.min(1).values)


def _best_split_inertia(x: torch.Tensor) -> tuple[float, set]:
    """Exhaustive 2-means: every assignment of the points into two non-empty clusters."""
    best, best_split = float("inf"), None
    for labels in itertools.product([0, 1], repeat=x.shape[0]):
        lab = torch.tensor(labels)
        if lab.sum() in (0, len(labels)):
            continue
        cost = sum(((x[lab == j] - x[lab == j].mean(0)) ** 2).sum().item() for j in (0, 1))
        if cost < best:
            best, best_split = cost, frozenset(i for i in range(len(labels)) if labels[i] == labels[0])
    return best, best_split


def test_matches_exhaustive_optimum_on_tiny_problem():
    x = torch.tensor([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [3.0, 3.0], [3.2, 2.7], [2.6, 3.1]])
    best, best_split = _best_split_inertia(x)
    result = kmeans(x, 2, n_iters=20, generator=_gen(0))
    assert result.inertia.item() == pytest.approx(best, rel=1e-5)
    a = result.assignments
    assert frozenset(i for i in range(6) if a[i] == a[0]) == best_split


def test_objective_never_increases():
    x = torch.randn(300, 4)
    for init in ("random", "kmeans++"):
        history = kmeans(x, 8, n_iters=30, init=init, generator=_gen(1)).inertia_history
        assert history.shape == (31,)
        assert (history[1:] <= history[:-1] * (1 + 1e-6) + 1e-6).all(), history


def test_converged_result_is_a_lloyd_fixed_point():
    x = torch.randn(200, 3)
    result = kmeans(x, 6, n_iters=200, generator=_gen(2), tol=0.0)
    a, c = result.assignments, result.centroids
    assert torch.equal(a, squared_distances(x, c).argmin(1))
    for j in range(6):
        assert_close(c[j], x[a == j].mean(0))
    assert_close(result.inertia, ((x - c[a]) ** 2).sum())


def test_empty_clusters_are_reseeded_on_farthest_points_deterministically():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [0.0, 2.0]])
    far = torch.tensor([[100.0, 100.0], [-100.0, 100.0]])
    init = torch.cat([torch.zeros(1, 2), far])  # clusters 1 and 2 attract no point
    step = lloyd_step(x, init)
    # all points go to centroid 0; farthest from it: (5, 0) then (0, 2)
    assert torch.equal(step.assignments, torch.zeros(4, dtype=torch.long))
    assert_close(step.centroids[0], x.mean(0))
    assert_close(step.centroids[1], x[2])
    assert_close(step.centroids[2], x[3])
    again = lloyd_step(x, init)
    assert torch.equal(again.centroids, step.centroids)
    result = kmeans(x, 3, n_iters=5, init=init)
    assert torch.bincount(result.assignments, minlength=3).min() > 0


def test_kmeans_plus_plus_picks_every_distinct_point_when_k_equals_m():
    x = torch.randn(8, 3)
    centroids = kmeans_plus_plus(x, 8, _gen(3))
    assert_close(squared_distances(x, centroids).min(1).values, torch.zeros(8), atol=1e-5, rtol=0)
    result = kmeans(x, 8, n_iters=3, generator=_gen(3))
    assert result.inertia.item() == pytest.approx(0.0, abs=1e-5)


def test_seeded_runs_are_identical_and_bad_inputs_raise():
    x = torch.randn(100, 4)
    a, b = kmeans(x, 5, generator=_gen(7)), kmeans(x, 5, generator=_gen(7))
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)
    with pytest.raises(ValueError, match="at least k"):
        kmeans(x[:3], 5)
    with pytest.raises(ValueError, match="init"):
        kmeans(x, 5, init="forgy")


@pytest.mark.slow
def test_catalogue_sized_kmeans_is_fast():
    x = torch.randn(11_500, 32)
    start = time.perf_counter()
    kmeans(x, 256, n_iters=100, generator=_gen(0))
    assert time.perf_counter() - start < 3.0
