"""Embedding benchmark: items/s, peak RSS and cache-hit load time per model, on one dataset's item texts.

    python -m bench.embed --dataset beauty --root ../shared/data/amazon-2014-beauty \
        --models all-mpnet-base-v2 all-MiniLM-L6-v2

Each model runs in a fresh (spawned) process, so its peak RSS is its own. The first call embeds and writes
the cache (the same file data.embed.item_embeddings reads later); the second call is timed as a cache hit.
When the cache already exists, encoding is not re-timed unless --force (which deletes that cache file).
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from data.schema import RawDataset

DATASETS = ("beauty", "sports", "toys", "ml1m", "synthetic")


class BenchResult(NamedTuple):
    model: str
    n_texts: int
    dim: int
    prepare_s: float  # resolving the model (assembling mpnet from its parts the first time)
    embed_s: float | None  # cache miss: model load + encode + cache write; None when already cached
    hit_s: float  # cache hit: read the cached tensor
    peak_rss_mb: float
    cache_file: str


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo and the core count."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown"
        )
    except OSError:
        name = "unknown"
    return f"{name} ({os.cpu_count()} cores visible)"


def load_bench_dataset(dataset: str, root: str) -> RawDataset:
    from data.amazon import load_amazon
    from data.movielens import load_sequence_file
    from data.synthetic import load_synthetic

    if dataset == "ml1m":
        derived = Path(root) / "derived" / "ml-1m_user_sequences_derived.txt.gz"
        return load_sequence_file(str(derived), str(Path(root) / "movies.dat"), name="ml-1m")
    if dataset == "synthetic":
        return load_synthetic(n_items=1000, n_users=2000)
    return load_amazon(root, dataset)


def bench_model(texts: list[str], model: str, cache_dir: str, batch_size: int, force: bool) -> BenchResult:
    """Runs in a child process: prepare, embed (miss), embed again (hit)."""
    import torch

    from data import embed

    identity = embed.model_identity(model)
    path = embed.cache_path(Path(cache_dir), identity, embed.cache_key(identity, texts))
    if force and path.exists():
        path.unlink()
    cached = path.exists()
    start = time.perf_counter()
    if not cached:
        embed.resolve_model(model, Path(cache_dir))
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    vectors = embed.embed_texts(texts, model=model, cache_dir=cache_dir, batch_size=batch_size)
    embed_s = None if cached else time.perf_counter() - start
    start = time.perf_counter()
    embed.embed_texts(texts, model=model, cache_dir=cache_dir, batch_size=batch_size)
    hit_s = time.perf_counter() - start
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(texts)), atol=1e-4)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return BenchResult(model, len(texts), vectors.shape[1], prepare_s, embed_s, hit_s, peak_mb, str(path))


def report(result: BenchResult) -> str:
    speed = (
        f"{result.n_texts / result.embed_s:.1f} items/s ({result.embed_s:.1f} s incl. model load)"
        if result.embed_s is not None
        else "already cached (use --force to time encoding)"
    )
    return (
        f"{result.model}: {result.n_texts} texts -> dim {result.dim}; "
        f"prepare {result.prepare_s:.1f} s; {speed}; "
        f"peak RSS {result.peak_rss_mb:.0f} MB; cache hit {result.hit_s * 1000:.1f} ms; {result.cache_file}"
    )


def main(argv: Sequence[str] | None = None) -> list[BenchResult]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--root", default="", help="dataset folder (not needed for synthetic)")
    parser.add_argument("--models", nargs="+", default=["all-mpnet-base-v2", "all-MiniLM-L6-v2"])
    parser.add_argument("--cache-dir", default=None, help="default: $TIGER_CACHE_DIR or <repo>/cache")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--force", action="store_true", help="delete existing cache files to time encoding")
    args = parser.parse_args(argv)
    for name, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(name, value)
    import torch

    from data.embed import default_cache_dir

    cache_dir = str(args.cache_dir or default_cache_dir())
    texts = list(load_bench_dataset(args.dataset, args.root).item_texts)
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; cuda {torch.cuda.is_available()}")
    print(f"dataset {args.dataset}: {len(texts)} item texts; batch size {args.batch_size}; cache {cache_dir}")
    results = []
    for model in args.models:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(bench_model, texts, model, cache_dir, args.batch_size, args.force).result()
        print(report(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
