"""RQ-KMeans tokenizer: residual k-means directly on item embeddings, no training.

Level 1 clusters the (optionally L2-normalized) embeddings, level 2 the residuals x − c_1, and so on.
Shapes: x [I, E], centroids [Q, K, E], codes [I, Q] int64.
"""

import gin
import torch
import torch.nn.functional as F
from torch import nn

from modules.kmeans import INITS, assign, kmeans

TOKENIZERS = ("rqvae", "rq_kmeans")  # train_rqvae.tokenizer: the RQ-VAE (modules/rqvae.py) or this


# input_dim comes from the embedding file at run time, so it is passed in code, never bound.
@gin.configurable(denylist=["input_dim"])
class RqKMeans(nn.Module):
    """Residual k-means with the same `encode_codes` contract as RqVae.

    normalize_input: L2-normalize embeddings before clustering and encoding. n_iters / init / tol: k-means
    settings of every level (see modules.kmeans.kmeans). Centroids live in buffers, so a state_dict
    round-trip restores the tokenizer.
    """

    def __init__(
        self,
        input_dim: int,
        codebook_size: int = 256,
        n_levels: int = 3,
        n_iters: int = 100,
        init: str = "kmeans++",
        normalize_input: bool = True,
        tol: float | None = None,
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown k-means init {init!r}; expected one of {INITS}")
        self.register_buffer("centroids", torch.zeros(n_levels, codebook_size, input_dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.input_dim = input_dim
        self.codebook_size = codebook_size
        self.n_levels = n_levels
        self.n_iters = n_iters
        self.init = init
        self.normalize_input = normalize_input
        self.tol = tol

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"RqKMeans expects x [B, {self.input_dim}], got {tuple(x.shape)}")
        x = x.float()
        return F.normalize(x, dim=-1) if self.normalize_input else x

    @torch.no_grad()
    def fit(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fit all levels on x [I, E] (I >= K). Returns the k-means inertia of each level, [Q]."""
        r = self._prepare(x)  # [I, E]
        inertia = []
        for level in range(self.n_levels):
            result = kmeans(r, self.codebook_size, self.n_iters, self.init, generator, self.tol)
            self.centroids[level].copy_(result.centroids)
            r = r - result.centroids[result.assignments]
            inertia.append(result.inertia)
        self.initialized.fill_(True)
        return torch.stack(inertia)

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """Codes of x [I, E], in chunks of `batch_size` rows -> [I, Q] int64."""
        if not bool(self.initialized):
            raise RuntimeError("RqKMeans.encode_codes called before fit (or before loading a fitted state)")
        chunks = []
        for xb in self._prepare(x).split(batch_size):
            codes = []
            for centroids in self.centroids:  # [K, E] per level
                c, _ = assign(xb, centroids)
                codes.append(c)
                xb = xb - centroids[c]
            chunks.append(torch.stack(codes, dim=1))  # [b, Q]
        return torch.cat(chunks) if chunks else torch.empty(0, self.n_levels, dtype=torch.long)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Σ_l centroids[l, codes[:, l]], the reconstruction of the (normalized) input. [B, Q] -> [B, E]."""
        levels = torch.arange(self.n_levels, device=codes.device)  # [Q]
        return self.centroids[levels, codes].sum(1)  # [B, Q, E] -> [B, E]
