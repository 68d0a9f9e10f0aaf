"""Scale benchmark: MovieLens-32M-shaped synthetic files through the real loader, splits and collate, and
decoder training speed on histories of up to 200 items. Prints measurements; asserts nothing.

    python -m bench.scale [--sizes 0.0625 0.25 1] [--batches 20] [--train-steps 2] [--train-modes fp32 bf16]

Per size f, a child process writes `ratings.csv` + `movies.csv` in the GroupLens ML-32M format to a temporary
folder (f x 200,948 users, the full 87,585-movie catalogue of which the Zipf draw reaches most, ~f x 32M
ratings; rows sorted by user then movieId, as in the real file, so the loader's time sort does real work);
a fresh child then measures
  load   load_movielens(root, "ml-32m"): file -> RawDataset (polars parse + sort, numbering, checks)
  split  SeqData train / valid / test at max_items = 200 (leave-one-out indexing, sliding examples)
  batch  collate of `--batches` random training batches of 256 rows; hist = mean history items per row
with wall time and the child's peak RSS after each stage (ru_maxrss is cumulative: a stage that stays under
the earlier peak repeats it; the child starts at ~0.3 GB with torch imported). held MB: RSS at the end,
i.e. what the dataset and its three splits keep. Targets at full size: load + split < 60 s, peak < 4 GB.
Training (each mode in its own child): the 1/16 file, model sizes and batch from configs/decoder_ml32m.gin,
random codes (K = 256, C = 4: speed does not depend on them), gin-bound AdamW, median seconds per step over
`--train-steps` steps after one warm-up step.
"""

import argparse
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ML32M_USERS, ML32M_ITEMS, ML32M_RATINGS = 200_948, 87_585, 32_000_204  # GroupLens ml-32m README
MAX_MOVIE_ID = 292_757  # largest MovieID in ml-32m: ids are sparse in [1, MAX_MOVIE_ID]
MIN_RATINGS, MAX_RATINGS = 20, 33_000  # every ML user has >= 20 ratings; the heaviest has ~33k
ZIPF_EXPONENT = 1.0  # item popularity ~ 1 / rank: a long tail like MovieLens
TIME_RANGE = (789_652_009, 1_697_164_147)  # first and last ml-32m timestamps


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident set size now (Linux /proc), to show what the stages keep after their peaks."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def environment() -> str:
    """CPU model, threads, torch / polars / numpy versions and the load average: printed with every table."""
    import polars as pl
    import torch

    from training.provenance import machine

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {machine()}; torch {torch.__version__}, polars {pl.__version__}, numpy {np.__version__}; "
        f"load average {load}"
    )


def user_lengths(n_users: int, rng: np.random.Generator) -> np.ndarray:
    """[U] ratings per user: 20 + a lognormal tail scaled to the ML-32M mean (159.2), capped at 33k."""
    tail = rng.lognormal(mean=0.0, sigma=1.2, size=n_users)
    tail *= (ML32M_RATINGS / ML32M_USERS - MIN_RATINGS) / tail.mean()
    return np.minimum(MIN_RATINGS + np.rint(tail).astype(np.int64), MAX_RATINGS)


def write_synthetic_ml32m(root: str, fraction: float, seed: int = 0) -> dict:
    """ratings.csv (userId,movieId,rating,timestamp) + movies.csv (movieId,title,genres) in `root`."""
    import polars as pl

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(MAX_MOVIE_ID, ML32M_ITEMS, replace=False) + 1).astype(np.int32)  # [I]
    lengths = user_lengths(max(1, round(ML32M_USERS * fraction)), rng)  # [U]
    n = int(lengths.sum())
    users = np.repeat(np.arange(1, len(lengths) + 1, dtype=np.int32), lengths)  # [R]
    popularity = 1.0 / np.arange(1, ML32M_ITEMS + 1) ** ZIPF_EXPONENT
    by_rank = rng.permutation(ML32M_ITEMS)  # popularity rank -> movie, unrelated to the MovieID order
    movies = movie_ids[by_rank[rng.choice(ML32M_ITEMS, n, p=popularity / popularity.sum())]]  # [R]
    order = np.lexsort((movies, users))  # the GroupLens file is sorted by user, then movieId
    frame = pl.DataFrame(
        {
            "userId": users,
            "movieId": movies[order],
            "rating": (rng.integers(1, 11, n, dtype=np.int8) / 2).astype(np.float32),
            "timestamp": rng.integers(*TIME_RANGE, n, dtype=np.int64),
        }
    )
    del users, movies, order
    frame.write_csv(Path(root) / "ratings.csv")
    genres = np.array(
        ["Action", "Comedy", "Drama", "Sci-Fi|Thriller", "Animation|Children", "(no genres listed)"]
    )
    pl.DataFrame(
        {
            "movieId": movie_ids,
            "title": [f"Movie {m}, The ({1900 + m % 124})" for m in movie_ids.tolist()],
            "genres": genres[movie_ids % len(genres)],
        }
    ).write_csv(Path(root) / "movies.csv")
    size_mb = (Path(root) / "ratings.csv").stat().st_size / 2**20
    return {"users": len(lengths), "ratings": n, "file_mb": size_mb, "write_s": time.perf_counter() - t0}


def measure_data(root: str, n_batches: int, batch_size: int, max_items: int, seed: int = 0) -> dict:
    """load -> split -> batch on the files in `root`; wall time and peak RSS after each stage."""
    from data.movielens import load_movielens
    from data.processed import SPLITS, SeqData

    out = {"start_mb": peak_rss_mb()}
    t0 = time.perf_counter()
    dataset = load_movielens(root, "ml-32m")
    out.update(load_s=time.perf_counter() - t0, load_mb=peak_rss_mb(), items=len(dataset.item_keys))
    t0 = time.perf_counter()
    splits = {split: SeqData(dataset, split, max_items=max_items) for split in SPLITS}
    out.update(split_s=time.perf_counter() - t0, split_mb=peak_rss_mb(), examples=len(splits["train"]))
    train = splits["train"]
    rows = np.random.default_rng(seed).integers(0, len(train), (n_batches, batch_size))
    t0, history = time.perf_counter(), 0
    for batch_rows in rows:
        history += int(train.collate([train[i] for i in batch_rows.tolist()]).lengths.sum())
    out.update(
        batch_ms=(time.perf_counter() - t0) / n_batches * 1e3, batch_mb=peak_rss_mb(), held_mb=rss_mb()
    )
    out["history"] = history / rows.size
    return out


def measure_train(root: str, mode: str, steps: int, batch_size: int | None, seed: int = 0) -> dict:
    """Seconds per decoder training step (configs/decoder_ml32m.gin sizes) on real-shaped histories.
    mode: "fp32" | "bf16" (autocast); batch_size None = the config's."""
    import gin
    import torch

    from bench.hardware import CpuAccelerator
    from data.movielens import load_movielens
    from data.processed import SeqData
    from modules.model import RetrievalModel
    from modules.semantic_ids import append_collision_code
    from modules.tokens import tokenize
    from training.cli import load_gin
    from training.loop import adamw
    from training.retriever import train_step  # registers train_decoder, which decoder_ml32m.gin binds

    load_gin(["configs/decoder_ml32m.gin"], [])
    dataset = load_movielens(root, "ml-32m")
    train = SeqData(dataset, "train")
    batch_size = batch_size or gin.query_parameter("train_decoder.batch_size")
    gen = torch.Generator().manual_seed(seed)
    codes = append_collision_code(torch.randint(0, 256, (len(dataset.item_keys), 3), generator=gen), 256)
    rows = torch.randint(0, len(train), (steps + 1, batch_size), generator=gen).tolist()
    batches = [tokenize(*train.collate([train[i] for i in r]), codes) for r in rows]
    torch.manual_seed(seed)
    model = RetrievalModel(codebook_size=256, n_codes=codes.shape[1], max_items=train.max_items)
    optimizer = adamw(model.parameters())
    start_mb, times = rss_mb(), []
    for batch in batches:  # the first step is the warm-up
        t0 = time.perf_counter()
        train_step(model, optimizer, None, batch, CpuAccelerator(mode == "bf16"))  # train_decoder.py's step
        times.append(time.perf_counter() - t0)
    return {
        "batch": batch_size,
        "history": statistics.mean(float(b.lengths.float().mean()) for b in batches),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "step_s": statistics.median(times[1:]),
        "start_mb": start_mb,
        "peak_mb": peak_rss_mb(),
    }


def in_child(fn, *args):
    """fn(*args) in a fresh spawned process, so each measurement has its own peak RSS."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


DATA_HEADER = (
    f"{'size':>6} {'users':>8} {'items':>6} {'ratings':>11} {'file MB':>8} | {'load s':>6} {'MB':>6} | "
    f"{'split s':>7} {'MB':>6} {'train ex.':>11} | {'batch ms':>8} {'MB':>6} {'hist':>5} | {'held MB':>7}"
)


def data_row(fraction: float, m: dict, g: dict) -> str:
    return (
        f"{fraction:>6.4g} {m['users']:>8,} {g['items']:>6,} {m['ratings']:>11,} {m['file_mb']:>8.0f} | "
        f"{g['load_s']:>6.1f} {g['load_mb']:>6.0f} | {g['split_s']:>7.1f} {g['split_mb']:>6.0f} "
        f"{g['examples']:>11,} | {g['batch_ms']:>8.1f} {g['batch_mb']:>6.0f} {g['history']:>5.0f} | "
        f"{g['held_mb']:>7.0f}"
    )


def verdict(got: dict) -> str:
    """Full-size targets: load + split < 60 s, peak RSS < 4 GB."""
    wall, peak = got["load_s"] + got["split_s"], got["batch_mb"]
    return (
        f"full size: load + split {wall:.1f} s (target < 60 s: {'met' if wall < 60 else 'MISSED'}), "
        f"peak RSS {peak / 1024:.2f} GB (target < 4 GB: {'met' if peak < 4096 else 'MISSED'})"
    )


def train_row(mode: str, g: dict, steps: int) -> str:
    rate = 1 / g["step_s"]
    return (
        f"  {mode:>5}: {g['step_s']:.1f} s/step = {rate:.3f} steps/s = {g['batch'] * rate:.1f} seq/s "
        f"(batch {g['batch']}, mean history {g['history']:.0f} items, {g['params_m']:.1f} M parameters, "
        f"median of {steps} after a warm-up step; RSS {g['start_mb']:.0f} MB before, "
        f"peak {g['peak_mb']:.0f} MB)"
    )


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="*", type=float, default=[1 / 16, 1 / 4, 1.0], help="of ML-32M")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-items", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=2, help="timed steps per mode; 0 skips training")
    parser.add_argument("--train-modes", nargs="*", default=["fp32"], help="fp32 and/or bf16")
    parser.add_argument("--train-batch", type=int, default=None, help="default: decoder_ml32m.gin's")
    parser.add_argument("--tmp", default=None, help="folder for the generated files (default: system temp)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.sizes:
        print(f"{environment()}\ndata pipeline (batches of {args.batch_size})\n{DATA_HEADER}", flush=True)
    for fraction in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as root:
            made = in_child(write_synthetic_ml32m, root, fraction)
            got = in_child(measure_data, root, args.batches, args.batch_size, args.max_items)
        print(data_row(fraction, made, got), flush=True)
        if fraction == 1.0:
            print(verdict(got), flush=True)
    if args.train_steps > 0 and args.train_modes:
        print(f"{environment()}\ndecoder training step, configs/decoder_ml32m.gin sizes, 1/16-size data")
        with tempfile.TemporaryDirectory(dir=args.tmp) as root:
            in_child(write_synthetic_ml32m, root, 1 / 16)
            for mode in args.train_modes:
                got = in_child(measure_train, root, mode, args.train_steps, args.train_batch)
                print(train_row(mode, got, args.train_steps), flush=True)


if __name__ == "__main__":
    main()
