import gin
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from modules.rq_kmeans import RqKMeans

E, Q, K = 16, 3, 8


def _fitted(seed: int = 0, **kwargs) -> tuple[RqKMeans, torch.Tensor, torch.Tensor]:
    x = torch.randn(96, E, generator=torch.Generator().manual_seed(seed))
    model = RqKMeans(E, codebook_size=K, n_levels=Q, n_iters=20, **kwargs)
    inertia = model.fit(x, torch.Generator().manual_seed(seed))
    return model, x, inertia


def test_codes_are_valid_and_reproduce_the_fit():
    model, x, inertia = _fitted()
    codes = model.encode_codes(x)
    assert codes.shape == (96, Q) and codes.dtype == torch.int64
    assert ((codes >= 0) & (codes < K)).all()
    # encoding the training data walks the same residual chain as fit: the final residual energy is the
    # last level's k-means inertia, and each level's inertia is at most the previous one
    residual = F.normalize(x, dim=-1) - model.decode(codes)
    assert_close((residual**2).sum(), inertia[-1], rtol=1e-4, atol=1e-4)
    assert (inertia[1:] <= inertia[:-1]).all()


def test_encoding_is_nearest_centroid_level_by_level():
    model, x, _ = _fitted(normalize_input=False)
    codes = model.encode_codes(x, batch_size=10)
    r = x.clone()
    for level in range(Q):
        c = model.centroids[level]
        dist = ((r.unsqueeze(1) - c.unsqueeze(0)) ** 2).sum(-1)  # [I, K]
        assert torch.equal(codes[:, level], dist.argmin(1))
        r = r - c[codes[:, level]]


def test_state_round_trips_and_fit_is_seeded():
    model, x, _ = _fitted(seed=1)
    fresh = RqKMeans(E, codebook_size=K, n_levels=Q)
    with pytest.raises(RuntimeError, match="before fit"):
        fresh.encode_codes(x)
    fresh.load_state_dict(model.state_dict())
    assert bool(fresh.initialized)
    assert torch.equal(fresh.encode_codes(x), model.encode_codes(x))
    again, _, _ = _fitted(seed=1)
    assert torch.equal(again.centroids, model.centroids)


def test_gin_configures_and_rejects_input_dim():
    gin.parse_config(["RqKMeans.codebook_size = 4", "RqKMeans.n_levels = 2"])
    model = RqKMeans(E)
    assert model.centroids.shape == (2, 4, E)
    with pytest.raises(ValueError, match="denylisted"):
        gin.parse_config("RqKMeans.input_dim = 3")
