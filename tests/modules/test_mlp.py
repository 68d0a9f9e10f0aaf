import gin
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from modules.mlp import MLP


def test_layers_and_formula():
    mlp = MLP([16, 8, 4], activation="silu")
    linears = [m for m in mlp.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 8), (8, 4)]
    assert all(m.bias is None for m in linears)
    x = torch.randn(5, 16)
    w1, w2 = linears[0].weight, linears[1].weight
    expected = F.silu(x @ w1.T) @ w2.T  # activation between layers, none after the last
    assert_close(mlp(x), expected)


def test_normalized_output_is_unit_norm():
    mlp = MLP([16, 8, 4], activation="relu", normalize_output=True)
    x = torch.randn(7, 16)
    raw = mlp.net(x)
    out = mlp(x)
    assert_close(out, raw / raw.norm(dim=-1, keepdim=True))
    assert_close(out.norm(dim=-1), torch.ones(7))


def test_single_layer_has_no_activation():
    mlp = MLP([6, 3])
    assert len(mlp.net) == 1
    x = torch.randn(2, 6)
    assert_close(mlp(x), x @ mlp.net[0].weight.T)


def test_dropout_only_in_train_mode():
    mlp = MLP([16, 32, 4], dropout=0.5)
    x = torch.randn(3, 16)
    mlp.eval()
    assert_close(mlp(x), mlp(x))
    mlp.train()
    assert not torch.allclose(mlp(x), mlp(x))


def test_gin_binds_bias_and_rejects_owner_arguments():
    gin.parse_config("MLP.bias = True")
    assert MLP([4, 2]).net[0].bias is not None
    with pytest.raises(ValueError, match="denylisted"):
        gin.parse_config('MLP.activation = "relu"')


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        MLP([4, 4, 2], activation="swishy")
    with pytest.raises(ValueError):
        MLP([4])
