import gin
import pytest
import torch
from torch.testing import assert_close

from modules.losses import vq_loss
from modules.quantize import (
    Quantize,
    code_distances,
    gumbel_softmax_weights,
    rotation_trick,
    straight_through,
)

B, Z, K = 6, 4, 8


def _quantizer(**kwargs) -> Quantize:
    q = Quantize(K, Z, **kwargs)
    with torch.no_grad():
        q.codebook.copy_(torch.randn(K, Z))
    return q


def test_codes_are_argmin_of_explicit_distance_matrix():
    q = _quantizer(estimator="ste").eval()
    r = torch.randn(B, Z)
    c = q.codebook.detach()
    dist = torch.tensor(
        [[sum((r[b, z] - c[k, z]) ** 2 for z in range(Z)) for k in range(K)] for b in range(B)]
    )
    assert_close(code_distances(r, c, normalize=False), dist)
    out = q(r)
    assert torch.equal(out.codes, dist.argmin(1))
    assert_close(out.out, c[dist.argmin(1)])  # eval: codebook[code]


def test_normalized_codes_are_argmax_cosine():
    q = _quantizer(normalize=True).eval()
    r = torch.randn(B, Z)
    c = q.codebook.detach()
    cos = torch.tensor(
        [[torch.dot(r[b], c[k]) / (r[b].norm() * c[k].norm()) for k in range(K)] for b in range(B)]
    )
    out = q(r)
    assert torch.equal(out.codes, cos.argmax(1))
    assert_close(out.out, c[cos.argmax(1)] / c[cos.argmax(1)].norm(dim=-1, keepdim=True))


def test_ste_value_is_codeword_and_gradient_is_identity():
    r = torch.randn(B, Z, requires_grad=True)
    e = torch.randn(B, Z, requires_grad=True)
    out = straight_through(r, e)
    assert_close(out, e)
    upstream = torch.randn(B, Z)
    (out * upstream).sum().backward()
    assert_close(r.grad, upstream)
    assert e.grad is None


def _rotation_matrix(r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """R = I − 2wwᵀ + 2q̂ûᵀ for one pair of vectors [Z]."""
    u, q = r / r.norm(), e / e.norm()
    w = (u + q) / (u + q).norm()
    return torch.eye(r.shape[0]) - 2 * torch.outer(w, w) + 2 * torch.outer(q, u)


def test_rotation_trick_value_and_closed_form_gradient():
    r = torch.randn(B, Z, dtype=torch.float64, requires_grad=True)
    e = torch.randn(B, Z, dtype=torch.float64, requires_grad=True)
    out = rotation_trick(r, e)
    assert_close(out, e.detach())
    upstream = torch.randn(B, Z, dtype=torch.float64)
    (out * upstream).sum().backward()
    for b in range(B):
        rb, eb = r[b].detach(), e[b].detach()
        rot = _rotation_matrix(rb, eb)
        assert_close(rot.T @ rot, torch.eye(Z, dtype=torch.float64))  # a rotation ...
        assert_close(rot @ (rb / rb.norm()), eb / eb.norm())  # ... taking û to q̂
        scale = eb.norm() / rb.norm()
        assert_close(r.grad[b], scale * rot.T @ upstream[b])
    assert e.grad is None


def test_rotation_trick_opposite_vectors_still_give_codeword():
    e = torch.randn(B, Z)
    r = -2.0 * e
    assert_close(rotation_trick(r, e), e)


def test_gumbel_low_temperature_is_one_hot_on_nearest_codeword():
    codebook = 5.0 * torch.arange(K, dtype=torch.float32).unsqueeze(1).expand(K, Z)  # gaps of 100 in dist
    nearest = torch.randint(K, (B,))
    r = codebook[nearest] + 0.01 * torch.randn(B, Z)  # distance gaps >> Gumbel noise
    dist = code_distances(r, codebook, normalize=False)
    weights = gumbel_softmax_weights(dist, temperature=1e-3, generator=torch.Generator().manual_seed(0))
    assert_close(weights, torch.nn.functional.one_hot(nearest, K).float())
    assert_close(weights @ codebook, codebook[nearest])


def test_gumbel_noise_is_deterministic_under_a_seed():
    dist = torch.rand(B, K)
    a = gumbel_softmax_weights(dist, 0.5, torch.Generator().manual_seed(3))
    b = gumbel_softmax_weights(dist, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert_close(a.sum(-1), torch.ones(B))
    torch.manual_seed(4)
    c = gumbel_softmax_weights(dist, 0.5)
    torch.manual_seed(4)
    assert torch.equal(c, gumbel_softmax_weights(dist, 0.5))


def test_gumbel_estimator_sends_gradient_to_codebook_through_the_output():
    q = _quantizer(estimator="gumbel", gumbel_temperature=0.5).train()
    r = torch.randn(B, Z, requires_grad=True)
    q(r).out.sum().backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    assert r.grad.abs().sum() > 0


@pytest.mark.parametrize("estimator", ["ste", "rotation"])
def test_train_output_is_codeword_and_codebook_gets_no_gradient_from_it(estimator):
    q = _quantizer(estimator=estimator).train()
    r = torch.randn(B, Z, requires_grad=True)
    out = q(r)
    assert_close(out.out, q.codebook.detach()[out.codes])
    out.out.sum().backward()
    assert q.codebook.grad is None
    assert r.grad is not None


def test_vq_loss_value_and_which_term_trains_what():
    beta = 0.25
    r = torch.randn(B, Z, requires_grad=True)
    e = torch.randn(B, Z, requires_grad=True)
    loss = vq_loss(r, e, beta)
    expected = ((r.detach() - e.detach()) ** 2).sum(-1) + beta * ((r.detach() - e.detach()) ** 2).sum(-1)
    assert_close(loss, expected)
    loss.sum().backward()
    assert_close(e.grad, 2 * (e - r).detach())  # codebook term ‖sg(r) − e‖² only
    assert_close(r.grad, 2 * beta * (r - e).detach())  # commitment term β‖r − sg(e)‖² only


def test_module_loss_reaches_the_codebook():
    beta = 0.5
    q = _quantizer(estimator="rotation", beta=beta).train()
    r = torch.randn(B, Z, requires_grad=True)
    out = q(r)
    e = q.codebook.detach()[out.codes]
    assert_close(out.loss, (1 + beta) * ((r.detach() - e) ** 2).sum(-1))
    out.loss.sum().backward()
    expected = torch.zeros(K, Z).index_add_(0, out.codes, 2 * (e - r.detach()))
    assert_close(q.codebook.grad, expected)
    assert_close(r.grad, 2 * beta * (r.detach() - e))


def test_autocast_keeps_quantization_in_float32():
    q = _quantizer().train()
    with torch.no_grad():
        q.codebook.copy_(10.0 + 0.1 * torch.randn(K, Z))
    r = 10.0 + torch.randn(256, Z)  # bf16 distances would misrank most of these
    ref = q(r)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(r)
    assert out.out.dtype == torch.float32 and out.codes.dtype == torch.int64
    assert torch.equal(out.codes, ref.codes)
    assert_close(out.out, ref.out)


def test_kmeans_init_is_explicit_and_recorded_in_state_dict():
    q = _quantizer().train()
    before = q.codebook.detach().clone()
    q(torch.randn(B, Z))
    assert not q.initialized and torch.equal(q.codebook.detach(), before)  # forward never initialises
    data = torch.randn(64, Z)
    q.kmeans_init(data, torch.Generator().manual_seed(0))
    assert bool(q.state_dict()["initialized"])
    fresh = Quantize(K, Z)
    assert not fresh.initialized
    fresh.load_state_dict(q.state_dict())
    assert fresh.initialized and torch.equal(fresh.codebook, q.codebook)


def test_reset_dead_codes_replaces_only_unused_rows():
    q = _quantizer()
    before = q.codebook.detach().clone()
    usage = torch.tensor([3, 0, 1, 0, 5, 5, 5, 5])
    residuals = torch.randn(20, Z)
    n = q.reset_dead_codes(usage, residuals, torch.Generator().manual_seed(0))
    assert n.item() == 2
    alive = usage > 0
    assert torch.equal(q.codebook.detach()[alive], before[alive])
    for row in q.codebook.detach()[~alive]:
        assert (residuals == row).all(-1).any()


def test_gin_denylist_and_bad_estimator():
    with pytest.raises(ValueError, match="denylisted"):
        gin.parse_config("Quantize.codebook_size = 4")
    gin.parse_config('Quantize.estimator = "ste"')
    assert Quantize(K, Z).estimator == "ste"
    with pytest.raises(ValueError, match="estimator"):
        Quantize(K, Z, estimator="nearest")
