"""Semantic-ID math for cold-start items: collision codes that leave warm items' IDs as they are, and the
ε-reservation of TIGER §4 ("cold-start item recommendation").

Retrieval with cold items: beam search runs over the warm items' trie (the model has only learnt those);
of the top k, the last ⌈ε·k⌉ slots go to cold items whose RQ-VAE codes (without the collision code) share
a prefix with a retrieved item's: the deepest shared prefix first (all Q codes, as TIGER matches them,
then Q - 1, ..., down to the first code: with mostly unique Q-tuples few cold items share all Q codes with
a warm item), then the first beam that shares it, then item index. A user with fewer such cold items keeps
warm items in the unused slots.
"""

import math

import torch

from modules.semantic_ids import append_collision_code


def collision_codes_warm_first(codes: torch.Tensor, codebook_size: int, cold: torch.Tensor) -> torch.Tensor:
    """codes [I, Q] int64, cold [I] bool -> [I, C = Q + 1]. Collision ranks count the warm items first (in
    index order) and the cold ones after them, so a warm item's ID is the one it gets without cold items."""
    order = torch.cat(
        [torch.nonzero(~cold).squeeze(1), torch.nonzero(cold).squeeze(1)]
    )  # warm first, each in index order
    ranked = append_collision_code(codes[order], codebook_size)
    return torch.empty_like(ranked).index_copy_(0, order, ranked)


def n_reserved(k: int, epsilon: float) -> int:
    """Slots of the top k reserved for cold items: ⌈ε·k⌉ (ε in [0, 1])."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    return math.ceil(epsilon * k - 1e-9)


def matching_cold(
    beam_codes: torch.Tensor, cold_codes: torch.Tensor, cold_items: torch.Tensor, limit: int
) -> torch.Tensor:
    """beam_codes [B, W, C] (-1 = padding), cold_codes [Ic, C], cold_items [Ic] -> [B, limit] int64: the
    cold items that share at least their first code with a beam, deepest shared prefix (of the first
    Q = C - 1 codes) first, then the first beam that shares it, then item index; -1 pads."""
    n_beams, prefix = beam_codes.shape[1], beam_codes.shape[2] - 1
    same = beam_codes[:, :, None, :prefix] == cold_codes[None, None, :, :prefix]  # [B, W, Ic, Q]
    depth = same.int().cumprod(-1).sum(-1) * (beam_codes[:, :, :1] >= 0)  # [B, W, Ic] shared prefix
    best = depth.max(1).values  # [B, Ic]
    first_beam = (depth == best.unsqueeze(1)).int().argmax(1)  # [B, Ic] first beam at that depth
    span = int(cold_items.max()) + 1 if cold_items.numel() else 1
    key = ((prefix - best) * n_beams + first_beam) * span + cold_items  # lower = better
    top = key.topk(min(limit, key.shape[1]), dim=1, largest=False)
    chosen = torch.where(best.gather(1, top.indices) >= 1, cold_items[top.indices], -1)
    return torch.nn.functional.pad(chosen, (0, limit - chosen.shape[1]), value=-1)


def reserve_cold(warm_items: torch.Tensor, cold: torch.Tensor, k: int) -> torch.Tensor:
    """warm_items [B, W >= k] (beam order), cold [B, R] (matching_cold, -1 padded, R <= k) -> [B, k]: the
    first k - f warm items, then the f found cold items (f = valid entries of the row's `cold`)."""
    found = (cold >= 0).sum(1, keepdim=True)  # [B, 1]
    slot = torch.arange(k, device=warm_items.device).expand(warm_items.shape[0], k)  # [B, k]
    from_cold = slot >= k - found
    cold_slot = (slot - (k - found)).clamp(min=0, max=max(cold.shape[1] - 1, 0))
    cold_pick = cold.gather(1, cold_slot) if cold.shape[1] else torch.full_like(slot, -1)
    return torch.where(from_cold, cold_pick, warm_items[:, :k])
