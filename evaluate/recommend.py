"""Top-k recommendations from a finished stage-2 run, for histories written as the dataset's item ids.

    python -m evaluate.recommend out/demo/decoder --history syn00012 syn00345 syn00078 --k 10
    python -m evaluate.recommend out/demo/decoder --histories histories.txt --k 10 > recs.jsonl

Loads the run with training.retriever.load_run, as `evaluate.run` does (its config.gin, best.pt, the
semantic_ids.pt the config names and the gin-bound dataset, whose item keys and texts name the results).
A history is oldest item first; the model sees its newest `max_items` items. Constrained beam search
returns real items ranked by their beam score, the model's log-probability
log p(item | history) = Σ_l log p(c_l | c_<l, history) (modules/generation.py).

History items are excluded by default: the beam is widened by the number of distinct history items, so k
other items remain. With mark_history they stay in the list, flagged `in_history`. Unknown item ids raise
UnknownItemError naming every one of them. Latency (tokenize + beam search, model loading excluded) is
printed per user: in the table for --history, on stderr for --histories (stdout is then JSON lines, one per
input line: history, k, latency_ms, items [{rank, item, index, title, text, score, in_history}]).
"""

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import gin
import numpy as np
import torch

from data.processed import newest
from data.schema import DataFormatError, UnknownItemError
from data.text import text_title
from modules.generation import beam_search
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch, items_to_codes
from training.cli import run_cli
from training.retriever import load_run


class Recommender(NamedTuple):
    """A finished run ready to answer: model (eval mode) and item_codes [I, C] / trie on one device;
    item_keys, item_texts: the dataset's, index = item; index_of: key -> item; beam_width: the run's own
    (train_decoder.beam_width)."""

    model: torch.nn.Module
    item_codes: torch.Tensor
    trie: PrefixTrie
    item_keys: list[str]
    item_texts: list[str]
    index_of: dict[str, int]
    beam_width: int


class Recommendation(NamedTuple):
    """One recommended item: rank (0 = best), item (dataset key), index (item index), title (None when the
    text has no title field), text, score (beam log-probability, <= 0), in_history."""

    rank: int
    item: str
    index: int
    title: str | None
    text: str
    score: float
    in_history: bool


def load_recommender(run: Path, bindings: Sequence[str] = (), device: str | None = None) -> Recommender:
    """The run's dataset, semantic IDs and best.pt model, moved to `device` (default: cuda if available)."""
    dataset, sem, model = load_run(Path(run), bindings)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size).to(device)
    keys = list(dataset.item_keys)
    return Recommender(
        model.to(device), sem.codes.to(device), trie, keys, list(dataset.item_texts),
        {key: index for index, key in enumerate(keys)}, gin.query_parameter("train_decoder.beam_width"),
    )  # fmt: skip


def item_indices(keys: Sequence[str], index_of: dict[str, int]) -> list[int]:
    """Item keys -> item indices; raises UnknownItemError naming every key not in `index_of`."""
    unknown = [key for key in keys if key not in index_of]
    if unknown:
        names = ", ".join(dict.fromkeys(unknown))
        raise UnknownItemError(f"{len(set(unknown))} unknown item id(s): {names} (not among the dataset's "
                               f"{len(index_of):,} item keys)")  # fmt: skip
    return [index_of[key] for key in keys]


def search_width(k: int, beam_width: int, n_seen: int, exclude_history: bool) -> int:
    """Beam width W for k results: at least k and the run's width, plus the n_seen distinct history items
    when they are to be dropped (W distinct items minus at most n_seen of them leaves >= k)."""
    return max(k, beam_width) + (n_seen if exclude_history else 0)


def history_batch(items: Sequence[int], max_items: int, item_codes: torch.Tensor, user_id: int) -> TokenBatch:
    """One history (item indices, oldest first) -> TokenBatch of one row: its newest max_items items,
    history [1, N, C], lengths [1], user_ids [1], target [1, C] all -1 (nothing to predict from)."""
    recent = torch.tensor(newest(list(items), max_items), dtype=torch.long, device=item_codes.device)
    history = items_to_codes(recent, item_codes).unsqueeze(0)  # [1, N, C]
    lengths = torch.tensor([len(recent)], device=item_codes.device)
    user_ids = torch.tensor([user_id], device=item_codes.device)
    target = torch.full((1, item_codes.shape[1]), -1, dtype=torch.long, device=item_codes.device)
    return TokenBatch(history, lengths, user_ids, target)


@torch.inference_mode()
def recommend(
    rec: Recommender, history: Sequence[str], k: int = 10, mark_history: bool = False, user_id: int = 0
) -> list[Recommendation]:
    """The top-k items for one history of item keys (oldest first), best first. user_id matters only for a
    model with a user token (RetrievalModel.user_buckets > 0)."""
    if not history:
        raise ValueError("a history needs at least one item")
    items = item_indices(history, rec.index_of)
    seen = set(items)
    width = search_width(k, rec.beam_width, len(seen), exclude_history=not mark_history)
    batch = history_batch(items, rec.model.max_items, rec.item_codes, user_id)
    out = beam_search(rec.model, batch, rec.trie, width)  # items, log_probs: [1, W]
    found = [(i, s) for i, s in zip(out.items[0].tolist(), out.log_probs[0].tolist()) if i >= 0]
    if not mark_history:
        found = [(i, s) for i, s in found if i not in seen]
    return [_named(rec, rank, item, score, item in seen) for rank, (item, score) in enumerate(found[:k])]


def _named(rec: Recommender, rank: int, item: int, score: float, in_history: bool) -> Recommendation:
    text = rec.item_texts[item]
    return Recommendation(rank, rec.item_keys[item], item, text_title(text), text, score, in_history)


def timed(rec: Recommender, history: Sequence[str], **options) -> tuple[list[Recommendation], float]:
    """recommend(...) and its wall time in seconds (a GPU is synchronised: the results are on the host)."""
    start = time.perf_counter()
    recs = recommend(rec, history, **options)
    return recs, time.perf_counter() - start


def read_histories(path: Path) -> list[list[str]]:
    """One history per line: item keys separated by whitespace and/or commas; blank lines are refused
    (one output line per input line), naming the file and line."""
    histories = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        keys = line.replace(",", " ").split()
        if not keys:
            raise DataFormatError(f"{path}:{number}: empty history")
        histories.append(keys)
    return histories


def check_known(histories: Sequence[Sequence[str]], index_of: dict[str, int], path: Path | None) -> None:
    """Raises UnknownItemError for the first history holding unknown ids (`path:line` first, from a file)."""
    for number, history in enumerate(histories, start=1):
        try:
            item_indices(history, index_of)
        except UnknownItemError as err:
            raise UnknownItemError(f"{path}:{number}: {err}" if path else str(err)) from None


def as_json(history: Sequence[str], k: int, recs: list[Recommendation], seconds: float) -> str:
    """One JSON line: the history, k, latency_ms and the items (every Recommendation field)."""
    items = [r._asdict() for r in recs]
    return json.dumps({"history": list(history), "k": k, "latency_ms": 1e3 * seconds, "items": items})


def table(recs: list[Recommendation]) -> str:
    """Human-readable rows: rank (1-based), item, score, marked history items, title (or the text)."""
    lines = [f"{'rank':>4}  {'item':<12} {'score':>8}  title"]
    for r in recs:
        mark = " (in history)" if r.in_history else ""
        lines.append(f"{r.rank + 1:>4}  {r.item:<12} {r.score:>8.3f}  {r.title or r.text}{mark}")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished train_decoder.py output directory (config.gin, best.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--history", nargs="+", metavar="ITEM", help="one history, oldest item first")
    source.add_argument("--histories", type=Path, metavar="FILE", help="one history per line -> JSON lines")
    parser.add_argument("--k", type=int, default=10, help="items to return (default 10)")
    parser.add_argument("--mark-history", action="store_true", help="keep history items, flagged")
    parser.add_argument("--user-id", type=int, default=0, help="for models with a user token (default 0)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--gin", action="append", default=[], help="extra bindings after the run's config")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k {args.k}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[list[Recommendation]]:
    args = parse(argv)
    histories = [args.history] if args.history else read_histories(args.histories)
    start = time.perf_counter()
    rec = load_recommender(args.run, args.gin, args.device)
    print(f"loaded {args.run} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    check_known(histories, rec.index_of, args.histories)  # fail before any work
    options = {"k": args.k, "mark_history": args.mark_history, "user_id": args.user_id}
    results, seconds = [], []
    for history in histories:
        recs, wall = timed(rec, history, **options)
        results.append(recs)
        seconds.append(wall)
        if args.history:
            print(table(recs))
            print(f"latency: {1e3 * wall:.1f} ms for a {len(history)}-item history")
        else:
            print(as_json(history, args.k, recs, wall), flush=True)
            print(f"user {len(results)}: {1e3 * wall:.1f} ms", file=sys.stderr)
    if len(seconds) > 1:
        print(latency_summary(seconds), file=sys.stderr)
    return results


def latency_summary(seconds: Sequence[float]) -> str:
    """Median, mean and max of the per-user wall times, in ms."""
    ms = 1e3 * np.asarray(seconds)
    return (f"latency per user over {len(ms)} users: median {np.median(ms):.1f} ms, mean {ms.mean():.1f} ms, "
            f"max {ms.max():.1f} ms")  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
