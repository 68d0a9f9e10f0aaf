import torch
from torch.testing import assert_close

from ops.dropout import dropout


def test_dropout_identity_when_off_and_masks_with_rescale_when_on():
    x = torch.randn(200, 100, requires_grad=True)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    assert_close(y[kept], x[kept] / 0.7)
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.01  # 20,000 draws: std of the fraction ≈ 0.003
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert_close(grad, kept.float() / 0.7)
