"""Exact scoring beside beam search: every catalogue item's full C-code log-probability, teacher-forced.

    python -m evaluate.exact out/demo/decoder [--users 1000] [--split test] [--seed 0] [--beam-width W]
                             [--bf16]

score(u, i) = Σ_l log p(c_l(i) | c_<l(i), history_u), each term the model's full-K log_softmax (the quantity
beam search ranks beams by, modules/generation.py). The exact ranking sorts all I items by it (ties: lower
item index); beam search only approximates its top W. On a seeded sample of users of a split this reports
Recall@k / NDCG@k of both rankings and the mean overlap of their top-10 lists, and writes
<run>/eval-exact-<split>.json: exact_<split>/recall@k, ndcg@k, beam_overlap@10 and beam_<split>/recall@k,
ndcg@k (metrics.json of the run is left as it is). Both rankings run in float32, as training's evaluations
do, or both under bf16 autocast with --bf16 (`precision` in the JSON; on Beauty 2.3 instead of 3.8 s
per user on an AMX Xeon).

Prefix sharing. The distribution at level l depends only on the item's first l codes, so the decoder runs
once per distinct prefix (trie node) rather than once per item and level: depth-l nodes are fed as rows of
the KV-cached decoding protocol (`start` once per user: the encoder output is reused by every row), their
log-probs extend their parents' scores (`extend_scores`), and the depth-C scores are the item scores. The
trie is walked depth first in chunks of nodes, so memory stays bounded on a full catalogue (a level of
Beauty's trie fed at once held ≈ 8 k prefixes × 16 users of key/value caches and ran out of 24 GB).
`exact_scores_reference` is the plain version: one teacher-forced `model.forward` per (user, item); tests
bind the two. Users are sampled as validation samples them (training.retriever.eval_loader).
"""

import argparse
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import gin
import torch
from einops import rearrange
from tqdm.auto import tqdm

from data.files import write_json
from evaluate.metrics import hit_rank, ranking_metrics, renamed
from evaluate.retrieval import bf16_autocast
from modules.generation import beam_search, topk_lowest_index
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch, tokenize
from training.cli import run_cli
from training.provenance import git_commit, machine
from training.retriever import eval_loader, load_run


def trie_links(trie: PrefixTrie, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-(level+1) nodes as (parent [P_{l+1}] depth-level node, code [P_{l+1}] appended), both int64,
    indexed by the child's node number."""
    table = trie.children[level]  # [P_l, K]
    parent, code = (table >= 0).nonzero(as_tuple=True)
    child = table[parent, code].long()
    order = torch.empty_like(child)
    order[child] = torch.arange(len(child), device=child.device)
    return parent[order], code[order]


def extend_scores(
    scores: torch.Tensor, log_probs: torch.Tensor, parent: torch.Tensor, code: torch.Tensor
) -> torch.Tensor:
    """scores [B, P] of depth-l nodes, log_probs [B, P, K] of their next code, (parent, code) [P'] of the
    depth-(l+1) nodes -> [B, P'] = scores[:, parent] + log_probs[:, parent, code]."""
    return scores[:, parent] + log_probs[:, parent, code]


def items_from_leaves(leaf_scores: torch.Tensor, leaf_item: torch.Tensor) -> torch.Tensor:
    """leaf_scores [B, P_C] of the depth-C nodes, leaf_item [P_C] their items -> [B, I] in item order."""
    out = torch.empty_like(leaf_scores)
    out[:, leaf_item] = leaf_scores
    return out


def topk_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [B, k], b [B, k'] item lists (-1 = padding) -> [B] float: |items of a that are in b| / k."""
    shared = (a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2) & (a >= 0)  # [B, k]
    return shared.float().sum(dim=1) / a.shape[1]


def _feed(model, state, n_users: int, n_parents: int, parent: torch.Tensor, code: torch.Tensor):
    """state rows are user-major over n_parents nodes -> (log_probs [B, P', K], state) of the child nodes
    (parent, code) [P'], whose rows are again user-major."""
    users = torch.arange(n_users, device=parent.device)
    rows = rearrange(users[:, None] * n_parents + parent[None, :], "b p -> (b p)")
    state = model.reorder(state, rows)
    logits, state = model.step(state, code.repeat(n_users))  # [B·P', K]
    return rearrange(logits.float().log_softmax(-1), "(b p) k -> b p k", b=n_users), state


@torch.inference_mode()
def exact_scores(model, batch: TokenBatch, trie: PrefixTrie, chunk: int = 1024) -> torch.Tensor:
    """Every item's teacher-forced log-probability for every row of `batch` -> [B, I] float32.
    The trie is walked depth first, `chunk` nodes of a level per decoder call, so at most C-1 chunks of
    B·chunk decoder rows are held at once, whatever the catalogue's size."""
    assert trie.n_codes >= 2, "exact_scores needs C >= 2 codes per item"
    links = [trie_links(trie, level) for level in range(trie.n_codes)]
    state = model.start(batch)
    logits, state = model.step(state, None)  # [B, K]
    n_users = logits.shape[0]
    root = torch.zeros(1, dtype=torch.long, device=logits.device)
    leaf_scores = logits.new_empty(n_users, trie.n_nodes[-1], dtype=torch.float32)  # [B, P_C]
    walk = _Walk(model, links, trie.n_nodes, chunk, leaf_scores)
    root_scores = torch.zeros(n_users, 1, device=logits.device)  # [B, P_0 = 1]
    walk.descend(state, root_scores, logits.float().log_softmax(-1)[:, None], root, 0)
    return items_from_leaves(leaf_scores, trie.leaf_item)


class _Walk(NamedTuple):
    """The fixed parts of one exact_scores walk: links[l] = trie_links(trie, l), sizes[l] the number of
    depth-l nodes (PrefixTrie.n_nodes), the leaf scores it fills."""

    model: torch.nn.Module
    links: list[tuple[torch.Tensor, torch.Tensor]]
    sizes: list[int]
    chunk: int
    leaf_scores: torch.Tensor  # [B, P_C], written by depth-C node

    def descend(self, state, scores: torch.Tensor, log_probs: torch.Tensor, nodes: torch.Tensor, level: int):
        """nodes [P] depth-`level` node ids, their rows of `state` (user-major), scores [B, P] and next-code
        log_probs [B, P, K] -> their children's scores, fed chunk by chunk down to the leaves."""
        parent, code = self.links[level]  # every depth-(level+1) node
        local = torch.full((self.sizes[level],), -1, dtype=torch.long, device=nodes.device)
        local[nodes] = torch.arange(len(nodes), device=nodes.device)
        children = (local[parent] >= 0).nonzero().squeeze(1)  # depth-(level+1) ids under `nodes`
        child_parent, child_code = local[parent[children]], code[children]
        child_scores = extend_scores(scores, log_probs, child_parent, child_code)  # [B, P']
        if level + 1 == len(self.links):
            self.leaf_scores[:, children] = child_scores
            return
        n_users = scores.shape[0]
        for first in range(0, len(children), self.chunk):
            part = slice(first, first + self.chunk)
            next_log_probs, next_state = _feed(
                self.model, state, n_users, len(nodes), child_parent[part], child_code[part]
            )
            self.descend(next_state, child_scores[:, part], next_log_probs, children[part], level + 1)


@torch.inference_mode()
def exact_scores_reference(model, batch: TokenBatch, item_codes: torch.Tensor) -> torch.Tensor:
    """Plain reference for `exact_scores`: one teacher-forced forward per (row, item) -> [B, I] float32,
    Σ_l log_softmax(logits[l])[c_l]. item_codes: [I, C]. Re-encodes the history I times: tests only."""
    rows = []
    for b in range(batch.history.shape[0]):
        n = item_codes.shape[0]
        one = TokenBatch(
            batch.history[b : b + 1].expand(n, -1, -1), batch.lengths[b : b + 1].expand(n),
            batch.user_ids[b : b + 1].expand(n), item_codes,
        )  # fmt: skip
        log_probs = model(one).logits.log_softmax(-1)  # [I, C, K]
        rows.append(log_probs.gather(2, item_codes.unsqueeze(2)).squeeze(2).sum(1))
    return torch.stack(rows)


@torch.inference_mode()
def compare(
    model, loader: Iterable, item_codes: torch.Tensor, trie: PrefixTrie, beam_width: int,
    ks: Sequence[int] = (1, 5, 10), chunk: int = 1024,
) -> dict[str, float]:  # fmt: skip
    """Exact ranking and beam search on every batch of `loader` (SeqBatch-like, on item_codes' device)
    -> exact/recall@k, exact/ndcg@k, beam/... (k > 1 for ndcg), exact/beam_overlap@10 (mean |beam top-10
    ∩ exact top-10| / 10), exact_s, beam_s (wall seconds of each) and users."""
    assert beam_width >= max(ks), f"beam_width {beam_width} < max k {max(ks)}"
    model.eval()
    exact_ranks, beam_ranks, overlaps, wall = [], [], [], {"exact": 0.0, "beam": 0.0}
    for seq in tqdm(loader, desc="exact"):
        seq = seq._replace(**{f: getattr(seq, f).to(item_codes.device) for f in seq._fields})
        tokens = tokenize(seq.items, seq.lengths, seq.user_ids, seq.targets, item_codes)
        start = time.perf_counter()
        exact_top = topk_lowest_index(exact_scores(model, tokens, trie, chunk), max(ks))  # [B, k]
        wall["exact"] += time.perf_counter() - start
        start = time.perf_counter()
        beam_items = beam_search(model, tokens, trie, beam_width).items  # [B, W]
        wall["beam"] += time.perf_counter() - start
        exact_ranks.append(hit_rank(exact_top, seq.targets))
        beam_ranks.append(hit_rank(beam_items, seq.targets))
        overlaps.append(topk_overlap(beam_items[:, :10], exact_top[:, :10]))
    metrics = ranking_metrics(torch.cat(exact_ranks), ks, prefix="exact/")
    metrics.update(ranking_metrics(torch.cat(beam_ranks), ks, prefix="beam/"))
    metrics["exact/beam_overlap@10"] = float(torch.cat(overlaps).mean())
    metrics.update({f"{name}_s": seconds for name, seconds in wall.items()})
    metrics["users"] = len(torch.cat(exact_ranks))
    return metrics


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished train_decoder.py output directory (config.gin, best.pt)")
    parser.add_argument("--users", type=int, default=1000, help="users sampled from the split (default 1000)")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user sample (default 0)")
    parser.add_argument("--beam-width", type=int, default=None, help="default: the run's beam width")
    parser.add_argument("--batch-size", type=int, default=16, help="users per batch (default 16)")
    parser.add_argument("--chunk", type=int, default=1024, help="trie nodes per decoder call (default 1024)")
    parser.add_argument("--bf16", action="store_true", help="both rankings under bf16 autocast")
    parser.add_argument("--gin", action="append", default=[], help="extra bindings after the run's config")
    args = parser.parse_args(argv)
    if args.beam_width is not None and args.beam_width < 10:
        parser.error(f"--beam-width {args.beam_width}: must be >= 10, the largest k reported")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(argv)
    run = Path(args.run)
    dataset, sem, model = load_run(run, args.gin)
    width = args.beam_width or gin.query_parameter("train_decoder.beam_width")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = eval_loader(dataset, args.split, args.batch_size, args.users, seed=args.seed)  # seeded sample
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size).to(device)
    with bf16_autocast(device.type, args.bf16):
        scores = compare(model.to(device), loader, sem.codes.to(device), trie, width, chunk=args.chunk)
    row = renamed(renamed(scores, f"exact_{args.split}", "exact"), f"beam_{args.split}", "beam")
    row.update({
        "split": args.split, "seed": args.seed, "beam_width": width, "items": len(dataset.item_keys),
        "precision": "bf16" if args.bf16 else "fp32",
        "run": str(run), "commit": git_commit(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    })  # fmt: skip
    write_json(run / f"eval-exact-{args.split}.json", row)
    print(summary_table(row, args.split))
    return row


def summary_table(row: dict, split: str) -> str:
    """Exact beside beam metrics, one per line, then the top-10 overlap and the wall times."""
    names = [k.split("/")[1] for k in row if k.startswith(f"beam_{split}/")]
    head = f"{split}, {row['users']:,} users, {row['precision']}"
    lines = [f"{head} {'exact':>8} {'beam ' + str(row['beam_width']):>8}"]
    lines += [f"{n:<16} {row[f'exact_{split}/{n}']:>8.4f} {row[f'beam_{split}/{n}']:>8.4f}" for n in names]
    lines.append(f"top-10 overlap {row[f'exact_{split}/beam_overlap@10']:.4f}; exact {row['exact_s']:.1f} s, "
                 f"beam {row['beam_s']:.1f} s")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
