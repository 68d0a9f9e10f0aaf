import torch
from torch.testing import assert_close

from ops.norm import rms_norm, rms_norm_reference


def test_rms_norm_fast_path_matches_reference_forward_backward():
    weight = (1 + 0.1 * torch.randn(16)).requires_grad_()
    x = torch.randn(3, 5, 16, requires_grad=True)
    fast, ref = rms_norm(x, weight, 1e-6), rms_norm_reference(x, weight, 1e-6)
    assert_close(fast, ref)
    assert_close(ref, x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight)  # the formula
    upstream = torch.randn_like(ref)
    for a, b in zip(
        torch.autograd.grad(fast, (x, weight), upstream), torch.autograd.grad(ref, (x, weight), upstream)
    ):
        assert_close(a, b)
