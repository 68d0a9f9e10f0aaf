"""Stage-2 speed on Beauty-shaped data: training throughput and full test-split evaluation.

    python -m bench.decoder_speed --root ../shared/data/amazon-2014-beauty \
        [--semantic-ids out/rqvae/beauty/rotation-20k/semantic_ids.pt]
        [--train-modes jagged jagged-bf16 padded]
        [--eval-users 0] [--beam 10 64] [--profile]
    python -m bench.decoder_speed --root ../shared/data/amazon-2014-beauty --architecture decoder-only \
        --train-modes windows-bf16 grouped-bf16 --beam 10 --eval-users 2000

Histories are the real Beauty test histories (last 20 items before the test target; mean ≈ 7.2 items);
codes come from a semantic-ID artifact when given, else random [I, 4] codes with K = 256. The model is the
paper configuration (`--model paper`, configs/decoder_amazon_paper.gin sizes: the headline recipe's) or the
reference one (`--model reference`), freshly initialised: speed does not depend on the weights. "padded"
feeds every row of a batch at the batch's longest history (what a padded implementation computes); "jagged"
is the model's normal length-grouped path. `--architecture decoder-only` times the decoder-only variant
(configs/recipes/decoder_only.gin sizes) on the train split's windows instead: "windows" draws them
uniformly and pads to max_items (train_decoder.length_groups = 0), "grouped" draws them as
length_groups = 8 does (training.loop.BatchOrder) and trims the padding; "-bf16" adds bf16 autocast,
"-compiled" (last) runs the steps through compile_regions as train_decoder.compile_blocks does (the printed
warm-up, one step per batch shape, holds the compilation).
Prints the CPU model and ISA, this process's fp32 / bf16 GEMM rates (bench/hardware.py), steps/s, sequences/s,
each step's GEMM FLOPs (torch's FlopCounterMode) and the share of the GEMM rate they reach, users/s and
peak RSS.
"""

import argparse
import itertools
import resource
import statistics
import time

import gin
import torch
from accelerate.utils import compile_regions

from bench.hardware import CpuAccelerator, count_flops, machine_line, probe, share, top_ops
from data.amazon import load_amazon
from data.artifact import SemanticIds
from data.processed import SeqData
from evaluate.retrieval import bf16_autocast, evaluate_retrieval
from modules.decoder_only import DecoderOnlyModel
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from modules.semantic_ids import append_collision_code
from modules.tokens import tokenize
from training.retriever import TrainBatches, eval_loader, train_step
from training.selection import sample_rows

REFERENCE = dict(embed_dim=128, d_model=512, n_heads=8, n_encoder_layers=4, n_decoder_layers=4, ffn_dim=1024,
                 dropout=0.15, user_buckets=2000)  # fmt: skip
PAPER = dict(
    embed_dim=128,
    d_model=128,
    n_heads=6,
    head_dim=64,
    n_encoder_layers=4,
    n_decoder_layers=4,
    ffn_dim=1024,
    dropout=0.1,
    user_buckets=2000,
)  # fmt: skip  (configs/decoder_amazon_paper.gin)
MODELS = {"reference": REFERENCE, "paper": PAPER}
DECODER_ONLY = dict(
    embed_dim=128,
    d_model=128,
    n_heads=6,
    head_dim=64,
    n_layers=8,
    ffn_dim=1024,
    dropout=0.1,
    user_buckets=2000,
)  # fmt: skip  (configs/recipes/decoder_only.gin)


def item_codes(dataset, path: str | None) -> torch.Tensor:
    if path:
        return SemanticIds.load(path).codes
    gen = torch.Generator().manual_seed(0)
    return append_collision_code(torch.randint(0, 256, (len(dataset.item_keys), 3), generator=gen), 256)


def train_batches(test: SeqData, codes: torch.Tensor, batch_size: int, padded: bool, n: int = 8):
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        rows = torch.randint(0, len(test), (batch_size,), generator=gen).tolist()
        seq = test.collate([test[i] for i in rows])
        if padded:  # every row at the batch's longest history: the work of a padded implementation
            longest = int(seq.lengths.max())
            fill = seq.items[:, :1].expand(-1, test.max_items)
            items = torch.where(seq.items >= 0, seq.items, fill)[:, :longest]
            seq = seq._replace(items=items, lengths=torch.full_like(seq.lengths, longest))
        batches.append((tokenize(*seq, codes), None))
    return batches


def window_batches(train: SeqData, codes: torch.Tensor, batch_size: int, grouped: bool, model, n: int = 8):
    """The first n (batch, loss weight) pairs of train_decoder.py's batches over the windows."""
    batches = TrainBatches(train, codes, model, batch_size, seed=0, length_groups=8 if grouped else 0)
    return [batches(step) for step in range(n)]


def make_step(model, bf16: bool, compiled: bool = False):
    """train_decoder.py's step on `model` with a fresh fused AdamW: step((batch, loss weight), net) trains
    `net` (default: compile_regions(model) when compiled, else model; both share the parameters)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.035, fused=True)
    model.train()
    step_model = compile_regions(model) if compiled else model

    def step(pair, net=step_model):
        train_step(net, optimizer, None, *pair[:1], CpuAccelerator(bf16), pair[1])

    return step


def bench_train(model, batches, bf16: bool, windows: int = 3, steps: int = 4, compiled: bool = False):
    """batches: (batch, loss weight or None) pairs -> (median steps/s over `windows` windows of `steps`
    steps, GEMM FLOPs of one step, seconds of the warm-up pass over every batch). compiled: the steps run
    compile_regions(model), as train_decoder.compile_blocks does; FLOPs are counted on the eager model,
    and the warm-up pass (one step per batch shape) holds the compilation."""
    step = make_step(model, bf16, compiled)
    flops = count_flops(lambda: step(batches[0], model))
    t0 = time.perf_counter()
    for pair in batches if compiled else batches[:1]:
        step(pair)
    warm_up = time.perf_counter() - t0
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for i in range(steps):
            step(batches[(w * steps + i) % len(batches)])
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates), flops, warm_up


def profile_train(model, batches, bf16: bool) -> str:
    """The top ops by self CPU time (bench.hardware.top_ops) over one eager step per batch, after one
    warm-up step."""
    step = make_step(model, bf16)
    step(batches[0])

    def every_batch():
        for pair in batches:
            step(pair)

    return top_ops(every_batch)


def eval_batches(dataset, users: int, batch_size: int, order: str):
    """A seeded sample of `users` test users (0: all) as batches. order "sorted": train_decoder.py's own
    loader (eval_loader: shortest history first, batches trimmed); "padded": the same users in split
    order, batches padded to max_items (the loader before 2026-12-03)."""
    max_users = users if users > 0 else None
    if order == "sorted":
        return eval_loader(dataset, "test", batch_size, max_users)
    test = SeqData(dataset, "test")
    rows = torch.utils.data.Subset(test, sample_rows(len(test), max_users, 0).tolist())
    return torch.utils.data.DataLoader(rows, batch_size=batch_size, collate_fn=test.collate)


def bench_eval(model, loader, codes: torch.Tensor, beam: int, bf16: bool) -> tuple[float, dict, int]:
    """Beam search over `loader` -> (wall s, metrics, GEMM FLOPs of a second, counted pass)."""
    trie = PrefixTrie.from_codes(codes, 256)

    def run():
        return evaluate_retrieval(model, loader, codes, trie, beam_width=beam, disable_progress=True)

    with bf16_autocast("cpu", bf16):
        t0 = time.perf_counter()
        metrics = run()
        wall = time.perf_counter() - t0
        flops = count_flops(run)
    return wall, metrics, flops


def report_eval(model, dataset, codes: torch.Tensor, args, gemm: dict[str, float]) -> None:
    """One line per (beam width, batch order) of --beam x --eval-orders: users/s, GFLOP/user, GEMM share."""
    precision = "bf16" if args.eval_bf16 else "fp32"
    for beam, order in itertools.product(args.beam, args.eval_orders):
        users = args.eval_users if beam <= 10 else args.beam64_users
        loader = eval_batches(dataset, users, args.eval_batch_size, order)
        wall, metrics, flops = bench_eval(model, loader, codes, beam, args.eval_bf16)
        n = int(metrics["eval/users"])
        print(
            f"eval beam {beam:>3}, {order}: {n} users in {wall:.1f} s = {n / wall:.0f} users/s "
            f"({wall / n * 1e3:.2f} ms/user), {flops / n / 1e9:.2f} GFLOP/user = "
            f"{share(flops, 1 / wall, gemm[precision]):.0%} of the {precision} GEMM rate; "
            f"recall@10 {metrics['eval/recall@10']:.4f}"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", required=True, help="Beauty folder (P5 layout)")
    parser.add_argument("--semantic-ids", default=None)
    parser.add_argument("--train-modes", nargs="*", default=["jagged", "jagged-bf16", "padded"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--beam", nargs="*", type=int, default=[10, 64])
    parser.add_argument("--eval-users", type=int, default=0, help="0 = the whole test split")
    parser.add_argument("--beam64-users", type=int, default=2048, help="users for beams wider than 10")
    parser.add_argument("--eval-batch-size", type=int, default=1024)
    parser.add_argument("--eval-bf16", action="store_true")
    parser.add_argument(
        "--eval-orders", nargs="*", choices=["sorted", "padded"], default=["sorted"],
        help="evaluation batches: length-sorted and trimmed (train_decoder.py's), or padded in split order",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true", help="after each train mode, its top ops by self CPU time"
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="paper", help="encoder-decoder sizes")
    parser.add_argument(
        "--architecture", choices=["encoder-decoder", "decoder-only"], default="encoder-decoder"
    )
    args = parser.parse_args(argv)
    dataset = load_amazon(args.root, "beauty")
    gin.bind_parameter("SeqData.max_items", 20)  # configs/data/beauty.gin
    test, codes = SeqData(dataset, "test"), item_codes(dataset, args.semantic_ids)
    torch.manual_seed(0)
    if args.architecture == "decoder-only":
        model = DecoderOnlyModel(codebook_size=256, n_codes=codes.shape[1], **DECODER_ONLY)
        train = SeqData(dataset, "train", max_items=20, train_examples="windows")
    else:
        model = RetrievalModel(codebook_size=256, n_codes=codes.shape[1], **MODELS[args.model])
    n_params = sum(p.numel() for p in model.parameters())
    gemm = probe()
    print(f"machine: {machine_line()}; {args.model} model {n_params / 1e6:.2f} M parameters")
    print("GEMM probe (1024^3, this process): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gemm.items()))
    for mode in args.train_modes:
        if args.architecture == "decoder-only":
            batches = window_batches(train, codes, args.batch_size, mode.startswith("grouped"), model)
        else:
            batches = train_batches(test, codes, args.batch_size, padded=mode.startswith("padded"))
        bf16 = "bf16" in mode
        rate, flops, warm_up = bench_train(model, batches, bf16=bf16, compiled=mode.endswith("compiled"))
        tokens = statistics.mean(int(b.lengths.sum()) * codes.shape[1] for b, _ in batches) / args.batch_size
        width = statistics.mean(b.history.shape[1] for b, _ in batches)  # items per row computed
        rate_of = gemm["bf16" if bf16 else "fp32"]
        print(f"train {mode:>12}: {rate:.3f} steps/s = {rate * args.batch_size:.0f} sequences/s "
              f"(batch {args.batch_size}, {tokens:.1f} history tokens/row, padded to {width:.1f} items); "
              f"{flops / 1e9:.1f} GFLOP/step "
              f"= {flops * rate / 1e9:.0f} GFLOP/s = {share(flops, rate, rate_of):.0%} of the "
              f"{'bf16' if bf16 else 'fp32'} GEMM rate, {share(flops, rate, max(gemm.values())):.0%} of the "
              f"best; warm-up {warm_up:.0f} s")  # fmt: skip
        if args.profile:
            print(profile_train(model, batches, bf16))
    report_eval(model, dataset, codes, args, gemm)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
