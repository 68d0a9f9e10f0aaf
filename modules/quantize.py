"""One vector-quantization level: nearest-codeword lookup, gradient estimators and the VQ loss.

Shapes: r [B, Z] residual (input), codebook [K, Z], e [B, Z] chosen codeword, codes [B] int64.
"""

from typing import NamedTuple

import gin
import torch
import torch.nn.functional as F
from torch import nn

from modules.kmeans import kmeans, nearest, rng_device, squared_distances
from modules.losses import vq_loss

ESTIMATORS = ("rotation", "ste", "gumbel")


def code_distances(r: torch.Tensor, codebook: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Distance of each residual to each codeword. r [B, Z], codebook [K, Z] -> [B, K].

    Squared L2; with `normalize`, the negative cosine similarity (same argmin as the squared L2 between
    unit vectors).
    """
    if normalize:
        return -(F.normalize(r, dim=-1) @ F.normalize(codebook, dim=-1).T)
    return squared_distances(r, codebook)


def nearest_code(r: torch.Tensor, codebook: torch.Tensor, normalize: bool) -> torch.Tensor:
    """argmin of `code_distances` with fewer ops (no gradient needed). r [B, Z], codebook [K, Z] -> [B]."""
    if normalize:  # ‖r‖ is constant per row, so the argmax of r·ĉ is the argmax of the cosine
        return (r @ F.normalize(codebook, dim=-1).T).argmax(dim=-1)
    return nearest(r, codebook)


def straight_through(r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """STE: value e, gradient to r is the identity, none to e. r, e: [B, Z] -> [B, Z]."""
    return r + (e - r).detach()


def rotation_trick(r: torch.Tensor, e: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rotation trick (Fifty et al. 2024, §4.2): value e, gradient to r is λ Rᵀ·(upstream).

    û = r/‖r‖, q̂ = e/‖e‖, w = normalize(û + q̂), R = I − 2wwᵀ + 2q̂ûᵀ (rotates û onto q̂),
    λ = ‖e‖/‖r‖; R and λ are constants (stop-gradient), so out = λ[r − 2(r·w)w + 2(r·û)q̂].
    If û = −q̂ then w = 0 and R = I + 2q̂ûᵀ still maps û to q̂. r, e: [B, Z] -> [B, Z].
    """
    with torch.no_grad():
        r_norm = r.norm(dim=-1, keepdim=True).clamp_min(eps)  # [B, 1]
        e_norm = e.norm(dim=-1, keepdim=True)  # [B, 1]
        u = r / r_norm  # [B, Z]
        q = e / e_norm.clamp_min(eps)  # [B, Z]
        w = F.normalize(u + q, dim=-1, eps=eps)  # [B, Z]
        scale = e_norm / r_norm  # [B, 1]
    r_w = (r * w).sum(-1, keepdim=True)  # [B, 1]
    r_u = (r * u).sum(-1, keepdim=True)  # [B, 1]
    return (r - 2.0 * r_w * w + 2.0 * r_u * q) * scale


def gumbel_softmax_weights(
    dist: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """softmax((−dist + g)/τ) with g ~ Gumbel(0, 1) i.i.d. (g = −log E, E ~ Exp(1)). dist [B, K] -> [B, K].

    Noise comes from `generator`, or torch's global RNG when None (deterministic under torch.manual_seed).
    """
    expo = torch.empty_like(dist).exponential_(generator=generator)  # [B, K]
    gumbel = -expo.clamp_min(torch.finfo(dist.dtype).tiny).log()
    return torch.softmax((gumbel - dist) / temperature, dim=-1)


class QuantizeOutput(NamedTuple):
    out: torch.Tensor  # [B, Z] quantized value passed on (train: estimator output; eval: codebook[codes])
    codes: torch.Tensor  # [B] int64 nearest codeword
    loss: torch.Tensor  # [B] VQ loss ‖sg(r) − e‖² + β‖r − sg(e)‖²


# codebook_size and dim are fixed by the owner (RqVae passes them in code); every other argument is a gin
# binding shared by all levels.
@gin.configurable(denylist=["codebook_size", "dim"])
class Quantize(nn.Module):
    """A codebook [K, Z] with nearest-codeword lookup and a choice of gradient estimator.

    estimator: "rotation" (rotation trick), "ste" (straight-through) or "gumbel" (Gumbel-softmax mix of
    codewords at `gumbel_temperature`; 0.2 is the reference's hard-coded value, train_rqvae.py:138).
    normalize: use unit-norm codewords and cosine similarity. beta: commitment weight.
    kmeans_iters: Lloyd iterations of `kmeans_init`. Eval mode always outputs codebook[codes].
    The codebook is set only by the explicit `kmeans_init`, which flips the `initialized` buffer.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        estimator: str = "rotation",
        gumbel_temperature: float = 0.2,
        normalize: bool = False,
        beta: float = 0.25,
        kmeans_iters: int = 100,
        eps: float = 1e-8,
    ):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
        if gumbel_temperature <= 0:
            raise ValueError(f"gumbel_temperature must be > 0, got {gumbel_temperature}")
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))
        nn.init.uniform_(self.codebook, -1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.estimator = estimator
        self.gumbel_temperature = gumbel_temperature
        self.normalize = normalize
        self.beta = beta
        self.kmeans_iters = kmeans_iters
        self.eps = eps

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def codewords(self) -> torch.Tensor:
        """The codebook as used for lookup and output: [K, Z] (unit rows when `normalize`)."""
        return F.normalize(self.codebook, dim=-1) if self.normalize else self.codebook

    def forward(self, r: torch.Tensor) -> QuantizeOutput:
        """r: [B, Z] (computed in float32, outside autocast) -> QuantizeOutput."""
        with torch.autocast(device_type=r.device.type, enabled=False):
            r = r.float()
            codebook = self.codewords()  # [K, Z]
            codes = nearest_code(r.detach(), codebook.detach(), self.normalize)  # [B]
            e = F.embedding(codes, codebook)  # [B, Z], differentiable w.r.t. the codebook
            loss = vq_loss(r, e, self.beta)  # [B]
            if not self.training:
                out = e
            elif self.estimator == "ste":
                out = straight_through(r, e)
            elif self.estimator == "rotation":
                out = rotation_trick(r, e, self.eps)
            else:  # gumbel: a soft mix of codewords, differentiable w.r.t. r and the codebook
                dist = code_distances(r, codebook, self.normalize)  # [B, K]
                out = gumbel_softmax_weights(dist, self.gumbel_temperature) @ codebook  # [B, Z]
        return QuantizeOutput(out=out, codes=codes, loss=loss)

    @torch.no_grad()
    def encode(self, r: torch.Tensor) -> torch.Tensor:
        """Nearest codeword index. r: [B, Z] -> [B] int64."""
        return nearest_code(r.float(), self.codewords(), self.normalize)

    @torch.no_grad()
    def kmeans_init(self, residuals: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to k-means centroids of `residuals` [M, Z] (M >= K) and mark it initialized."""
        points = F.normalize(residuals.float(), dim=-1) if self.normalize else residuals
        result = kmeans(points, self.codebook_size, n_iters=self.kmeans_iters, generator=generator)
        self.codebook.copy_(result.centroids)
        self.initialized.fill_(True)

    @torch.no_grad()
    def reset_dead_codes(
        self, usage: torch.Tensor, residuals: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Replace every codeword with zero usage by a random row of `residuals`.

        usage: [K] counts (e.g. over the last N steps), residuals: [M, Z] inputs of this level.
        Returns the number of codewords replaced ([] int64). Optimizer moments of those rows are kept.
        """
        dead = usage <= 0  # [K]
        device = rng_device(generator, residuals.device)
        picks = torch.randint(residuals.shape[0], (self.codebook_size,), generator=generator, device=device)
        donors = residuals[picks.to(residuals.device)].to(self.codebook)  # [K, Z]
        self.codebook.copy_(torch.where(dead.unsqueeze(1), donors, self.codebook))
        return dead.sum()
