"""RQ-VAE (TIGER stage 1): MLP encoder -> Q residual quantization levels -> MLP decoder.

Shapes: x [B, E] item embedding, latent [B, Z], codes [B, Q] int64, residuals [B, Q, Z].
"""

import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import gin
import torch
from torch import nn

from modules.losses import RECON_REDUCTIONS, reconstruction_loss
from modules.mlp import MLP
from modules.quantize import Quantize


class ResidualQuantization(NamedTuple):
    quantized: torch.Tensor  # [B, Z] Σ_l out_l
    codes: torch.Tensor  # [B, Q] int64
    residuals: torch.Tensor  # [B, Q, Z] input of each level; residuals[:, 0] == latent
    loss: torch.Tensor  # [B] Σ_l VQ loss


class RqVaeOutput(NamedTuple):
    recon: torch.Tensor  # [B, E] decoder output
    latent: torch.Tensor  # [B, Z] float32 encoder output
    quantized: torch.Tensor  # [B, Z] Σ_l out_l, the decoder input
    codes: torch.Tensor  # [B, Q] int64
    loss: torch.Tensor  # [] recon_loss + quant_loss
    recon_loss: torch.Tensor  # [] batch mean of the per-item reconstruction loss
    quant_loss: torch.Tensor  # [] batch mean of Σ_l VQ loss (commitment part = quant_loss / (1 + β))
    residuals: torch.Tensor  # [B, Q, Z] input of each level


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run a block with `module` in eval mode, restoring its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@gin.configurable(denylist=["input_dim"])
class RqVae(nn.Module):
    """Residual-quantized VAE. Encoder input_dim -> hidden_dims -> latent_dim; decoder mirrors it.

    normalize_decoder_output: L2-normalize the reconstruction (as the reference; inputs are expected to be
    unit-norm text embeddings). recon_reduction: "sum" (reference) or "mean" of the squared error over the
    E features, per item; the batch is always averaged. Each level is a `Quantize` (gin-bound estimator,
    beta, ...). The codebooks are set only by the explicit `kmeans_init`.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 32,
        hidden_dims: Sequence[int] = (512, 256, 128),
        codebook_size: int = 256,
        n_levels: int = 3,
        activation: str = "silu",
        normalize_decoder_output: bool = True,
        recon_reduction: str = "sum",
    ):
        super().__init__()
        if recon_reduction not in RECON_REDUCTIONS:
            raise ValueError(
                f"unknown recon_reduction {recon_reduction!r}; expected one of {RECON_REDUCTIONS}"
            )
        dims = [input_dim, *hidden_dims, latent_dim]
        self.encoder = MLP(dims, activation=activation)
        self.decoder = MLP(dims[::-1], activation=activation, normalize_output=normalize_decoder_output)
        self.levels = nn.ModuleList(Quantize(codebook_size, latent_dim) for _ in range(n_levels))
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.codebook_size = codebook_size
        self.n_levels = n_levels
        self.recon_reduction = recon_reduction

    @property
    def initialized(self) -> bool:
        """True once every level has been k-means initialised (read from state_dict buffers; host sync)."""
        return all(bool(level.initialized) for level in self.levels)

    def quantize(self, latent: torch.Tensor) -> ResidualQuantization:
        """r_0 = latent; level l quantizes r_l and r_{l+1} = r_l − out_l. latent: [B, Z] float32."""
        r = latent
        outs, codes, residuals, losses = [], [], [], []
        for level in self.levels:
            q = level(r)
            residuals.append(r)
            outs.append(q.out)
            codes.append(q.codes)
            losses.append(q.loss)
            r = r - q.out
        return ResidualQuantization(
            quantized=torch.stack(outs).sum(0),  # [B, Z]
            codes=torch.stack(codes, dim=1),  # [B, Q]
            residuals=torch.stack(residuals, dim=1),  # [B, Q, Z]
            loss=torch.stack(losses).sum(0),  # [B]
        )

    def forward(self, x: torch.Tensor) -> RqVaeOutput:
        """x: [B, E] item embeddings -> RqVaeOutput. No host syncs; compile-friendly."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"RqVae expects x [B, {self.input_dim}], got {tuple(x.shape)}")
        latent = self.encoder(x).float()  # [B, Z]
        rq = self.quantize(latent)
        recon = self.decoder(rq.quantized)  # [B, E]
        recon_loss = reconstruction_loss(recon.float(), x.float(), self.recon_reduction).mean()
        quant_loss = rq.loss.mean()
        return RqVaeOutput(
            recon=recon,
            latent=latent,
            quantized=rq.quantized,
            codes=rq.codes,
            loss=recon_loss + quant_loss,
            recon_loss=recon_loss,
            quant_loss=quant_loss,
            residuals=rq.residuals,
        )

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> bool:
        """Initialise the codebooks level by level with k-means on x [M, E] (M >= K).

        Level 1 is fitted on the latents, level 2 on the residuals left by the fitted level 1, etc.
        A model whose `initialized` buffers are set (e.g. loaded from a checkpoint) is left untouched.
        Returns whether it ran.
        """
        if self.initialized:
            return False
        with eval_mode(self):
            r = self.encoder(x).float()  # [M, Z]
            for level in self.levels:
                level.kmeans_init(r, generator)
                r = r - level(r).out
        return True

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """Eval-mode codes of x [I, E], in chunks of `batch_size` rows -> [I, Q] int64."""
        with eval_mode(self):
            chunks = [self.quantize(self.encoder(xb).float()).codes for xb in x.split(batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, self.n_levels, dtype=torch.long)

    @torch.no_grad()
    def reset_dead_codes(
        self, x: torch.Tensor, usage: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reset unused codewords level by level to residuals of x [M, E]; usage: [Q, K] counts.

        Off unless the training loop calls it. Returns the number of codewords reset per level, [Q].
        """
        n_reset = []
        with eval_mode(self):
            r = self.encoder(x).float()  # [M, Z]
            for level, level_usage in zip(self.levels, usage):
                n_reset.append(level.reset_dead_codes(level_usage, r, generator))
                r = r - level(r).out
        return torch.stack(n_reset)
