import pytest
import torch
from torch.testing import assert_close

from ops.prefix_attention import prefix_attention, prefix_attention_reference


@pytest.mark.parametrize("own", [0, 1, 3])
def test_prefix_attention_equals_per_row_reference(own):
    gen = torch.Generator().manual_seed(0)
    users, rows, heads, prefix, dim = 3, 4, 2, 6, 8
    q = torch.randn(users, rows, heads, dim, generator=gen)
    prefix_k, prefix_v = torch.randn(2, users, heads, prefix, dim, generator=gen)
    prefix_valid = torch.arange(prefix) < torch.tensor([[2], [6], [4]])  # [B, S]
    own_k, own_v = torch.randn(2, users, rows, heads, own, dim, generator=gen)
    args = (q, prefix_k, prefix_v, prefix_valid, own_k, own_v)
    assert_close(prefix_attention(*args), prefix_attention_reference(*args))


def test_invalid_prefix_keys_get_no_weight():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 1, 4, generator=gen)
    prefix_k, prefix_v = torch.randn(2, 1, 1, 5, 4, generator=gen)
    valid = torch.tensor([[True, True, False, False, False]])
    own_k, own_v = torch.randn(2, 1, 2, 1, 1, 4, generator=gen)
    out = prefix_attention(q, prefix_k, prefix_v, valid, own_k, own_v)
    changed = prefix_v.clone()
    changed[..., 2:, :] = 1e3
    assert_close(prefix_attention(q, prefix_k, changed, valid, own_k, own_v), out)
