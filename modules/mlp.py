"""A plain MLP: the RQ-VAE encoder (E -> ... -> Z) and its mirrored decoder (Z -> ... -> E)."""

from collections.abc import Sequence

import gin
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# dims / activation / normalize_output are decided by the owner (RqVae passes them in code), so they are not
# gin bindings here; dropout and bias are, and apply to every MLP built.
@gin.configurable(denylist=["dims", "activation", "normalize_output"])
class MLP(nn.Module):
    """Linear layers between consecutive `dims`, `activation` (+ dropout) between them, none after the last.

    dims: [d_0, ..., d_L] with L >= 1. normalize_output: L2-normalize the last layer's output.
    forward: x [..., d_0] -> [..., d_L].
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str = "silu",
        dropout: float = 0.0,
        normalize_output: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2:
            raise ValueError(f"MLP needs at least an input and an output dim, got {dims}")
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out, bias=bias))
            if i < len(dims) - 2:
                layers.append(make_activation(activation))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.dims = dims
        self.normalize_output = normalize_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)  # [..., d_L]
        return F.normalize(y, dim=-1) if self.normalize_output else y
