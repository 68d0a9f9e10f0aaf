import gin
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from modules.kmeans import kmeans
from modules.rqvae import RqVae
from modules.rqvae_metrics import (
    code_perplexity,
    code_usage,
    codes_summary,
    collision_rate,
    id_entropy,
    max_collision_group,
    mean_latent_norm,
    p_unique_ids,
    residual_norms,
)

E, Z, Q, K = 16, 4, 3, 8


def _model(**kwargs) -> RqVae:
    return RqVae(E, latent_dim=Z, hidden_dims=[16], codebook_size=K, n_levels=Q, **kwargs)


def _data(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(8, E, generator=g)
    x = centers[torch.arange(n) % 8] + 0.3 * torch.randn(n, E, generator=g)
    return F.normalize(x, dim=-1)


def _initialized_model(**kwargs) -> RqVae:
    model = _model(**kwargs)
    assert model.kmeans_init(_data(), torch.Generator().manual_seed(0))
    return model


def test_output_shapes_and_dtypes():
    out = _initialized_model()(_data(10))
    assert out.recon.shape == (10, E) and out.latent.shape == (10, Z) and out.quantized.shape == (10, Z)
    assert out.codes.shape == (10, Q) and out.codes.dtype == torch.int64
    assert out.residuals.shape == (10, Q, Z)
    assert out.loss.shape == out.recon_loss.shape == out.quant_loss.shape == ()
    assert ((out.codes >= 0) & (out.codes < K)).all()


def test_latent_is_sum_of_level_codewords_plus_final_residual():
    model = _initialized_model().eval()
    out = model(_data(20))
    r = out.latent
    total = torch.zeros_like(r)
    for level, quantizer in enumerate(model.levels):
        codebook = quantizer.codebook.detach()
        assert_close(out.residuals[:, level], r)
        dist = ((r.unsqueeze(1) - codebook.unsqueeze(0)) ** 2).sum(-1)  # [B, K]
        assert torch.equal(out.codes[:, level], dist.argmin(1))
        total = total + codebook[out.codes[:, level]]
        r = r - codebook[out.codes[:, level]]
    assert_close(out.quantized, total)
    assert_close(out.latent, total + r)


def test_train_mode_rotation_value_equals_codewords():
    model = _initialized_model().train()
    out = model(_data(20))
    codewords = sum(q.codebook.detach()[out.codes[:, i]] for i, q in enumerate(model.levels))
    assert_close(out.quantized, codewords, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_losses_by_hand(reduction):
    beta = 0.25
    model = _initialized_model(recon_reduction=reduction).eval()
    x = _data(12)
    out = model(x)
    sq_err = (out.recon - x) ** 2
    recon = (sq_err.sum(-1) if reduction == "sum" else sq_err.mean(-1)).mean()
    quant = sum(
        (1 + beta) * ((out.residuals[:, i] - q.codebook.detach()[out.codes[:, i]]) ** 2).sum(-1)
        for i, q in enumerate(model.levels)
    ).mean()
    assert_close(out.recon_loss, recon)
    assert_close(out.quant_loss, quant)
    assert_close(out.loss, recon + quant)


def test_decoder_output_normalization_is_real_and_optional():
    x = _data(5)
    assert_close(_model()(x).recon.norm(dim=-1), torch.ones(5))
    raw = _model(normalize_decoder_output=False)
    out = raw(x)
    assert_close(out.recon, raw.decoder.net(out.quantized))


@pytest.mark.parametrize("estimator", ["rotation", "ste", "gumbel"])
def test_every_parameter_gets_a_gradient(estimator):
    gin.parse_config(f'Quantize.estimator = "{estimator}"')
    model = _initialized_model().train()
    model(_data(32)).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_kmeans_init_is_level_by_level_on_residuals():
    model = _model()
    x = _data()
    assert not model.initialized
    assert model.kmeans_init(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        r = model.encoder(x)
        for quantizer in model.levels:
            expected = kmeans(r, K, n_iters=quantizer.kmeans_iters, generator=g)
            assert_close(quantizer.codebook.detach(), expected.centroids)
            r = r - expected.centroids[expected.assignments]
    assert model.initialized


def test_forward_never_initializes():
    model = _model().train()
    before = [q.codebook.detach().clone() for q in model.levels]
    model(_data(16))
    assert not model.initialized
    assert all(torch.equal(b, q.codebook.detach()) for b, q in zip(before, model.levels))


def test_init_state_round_trips_and_loaded_model_does_not_reinit():
    model = _initialized_model()
    state = model.state_dict()
    assert all(bool(state[f"levels.{i}.initialized"]) for i in range(Q))
    fresh = _model()
    fresh.load_state_dict(state)
    assert fresh.initialized
    assert not fresh.kmeans_init(_data(seed=1), torch.Generator().manual_seed(9))
    for a, b in zip(fresh.levels, model.levels):
        assert torch.equal(a.codebook, b.codebook)


def test_encode_codes_matches_eval_forward_and_keeps_mode():
    model = _initialized_model().train()
    x = _data()
    codes = model.encode_codes(x, batch_size=7)
    assert model.training
    model.eval()
    assert torch.equal(codes, model(x).codes)


def test_overfits_64_vectors():
    torch.manual_seed(0)
    model = _initialized_model().train()
    x = _data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = model(x)
    # unit vectors: recon_loss 0.2 means a mean cosine similarity of 0.9 between input and reconstruction
    assert final.recon_loss.item() < 0.2
    assert p_unique_ids(final.codes).item() > 0.5


def test_gin_builds_and_rejects_input_dim():
    gin.parse_config(["RqVae.codebook_size = 4", "RqVae.n_levels = 2", 'Quantize.estimator = "ste"'])
    model = RqVae(E)
    assert len(model.levels) == 2 and model.levels[0].codebook.shape == (4, 32)
    assert model.levels[1].estimator == "ste"
    with pytest.raises(ValueError, match="denylisted"):
        gin.parse_config("RqVae.input_dim = 3")


def test_code_metrics_by_hand():
    codes = torch.tensor([[0, 1], [0, 1], [2, 3], [0, 1], [4, 4]])
    assert p_unique_ids(codes).item() == pytest.approx(3 / 5)
    assert collision_rate(codes).item() == pytest.approx(3 / 5)
    assert max_collision_group(codes).item() == 3
    assert_close(code_usage(codes, 8), torch.tensor([3 / 8, 3 / 8]))
    p = torch.tensor([3 / 5, 1 / 5, 1 / 5])
    entropy = -(p * p.log()).sum()
    assert_close(code_perplexity(codes, 8), entropy.exp().repeat(2))
    assert_close(id_entropy(codes), entropy)
    summary = codes_summary(codes, 8)
    assert summary["max_collision_group"] == 3 and summary["usage_level1"] == pytest.approx(3 / 8)
    assert (
        collision_rate(torch.arange(6).view(3, 2)).item() == 0 and max_collision_group(codes[:1]).item() == 1
    )


def test_norm_metrics_by_hand():
    latent = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert mean_latent_norm(latent).item() == pytest.approx(3.0)
    residuals = torch.stack([latent, 2 * latent], dim=1)  # [B=2, Q=2, Z=2]
    assert_close(residual_norms(residuals), torch.tensor([3.0, 6.0]))
