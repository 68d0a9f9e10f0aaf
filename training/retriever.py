"""The stage-2 retriever built from a semantic-ID artifact: its settings, data, model, evaluation loaders
and train step, shared by train_decoder.py, the evaluate CLIs (evaluate.run, .exact, .recommend) and bench/.

`DecoderLoop` is the gin configurable `train_decoder`: registered here, a finished run's config.gin (which
binds `train_decoder.*`) parses without importing the training script.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gin
import numpy as np
import torch
from torch.utils.data import DataLoader

from data.artifact import SemanticIds, SemanticIdsError, check_items
from data.cold_start import cold_items
from data.files import load_tensors
from data.processed import SeqData, random_suffix, trim_padding
from data.registry import build_dataset
from data.schema import RawDataset
from evaluate.retrieval import ColdStart
from modules.decoder_only import DecoderOnlyModel  # noqa: F401  (registers it for make_model.architecture)
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from modules.tokens import tokenize
from training.bindings import resolve_macros
from training.cli import load_gin
from training.distributed import shard
from training.loop import BatchOrder, optimizer_step, target_weight
from training.schedule import inverse_sqrt
from training.selection import sample_rows


@gin.configurable("train_decoder")
@dataclass(frozen=True)
class DecoderLoop:
    """Settings of train_decoder.py's step-based loop (loop settings only; sizes live on RetrievalModel).
    batch_size is global: each of P processes takes batch_size / P rows of each batch; evaluation users are
    split and the metrics pooled.

    Selection: every eval_every steps, `eval_users` validation users drawn with `seed` (all when None) score
    the model; the `finalists` best steps keep their weights, and at the end each is re-scored on the full
    validation split, the winner becoming best.pt. `monitor_test_users` > 0 also logs test metrics on such
    a sample of test users (`test_monitor/...`, for time-to-quality curves only; never used to select).

    length_groups G > 0: batches are drawn length-grouped (training.loop.BatchOrder: each run of G batches of
    the shuffled epoch sorted by history length) and padded only to their longest history, so a model that
    pays for padding (the decoder-only variant: N + 1 items of tokens per row) computes far fewer tokens;
    each batch's loss is weighted by its share of training targets (training.loop.target_weight, with the
    model's `targets_per_row`), so every target weighs the same as under uniform shuffling.
    0 (default): uniformly shuffled batches padded to max_items.

    compile_blocks: the training steps run a copy of the model whose repeated blocks (the Transformer layers)
    are torch.compile'd once each and shared by their copies, every other child module compiled on its
    own (Accelerate's regional compilation, accelerate.utils.compile_regions); the same parameters, so
    evaluation, checkpoints and best.pt use the eager model. Length-grouped widths recompile once, then run
    with dynamic shapes. Compiling costs minutes on a CPU before the first step.

    patience P (None: off): training stops early once P validations in a row, after the best one so far,
    did not beat it (training.selection.plateaued); selection and the test pass then run as at the end of
    `iterations`, and metrics.json records the steps trained. A resumed run that had stopped stays stopped.

    Cold start (an artifact from train_rqvae.cold_start): beam search runs over the warm items and every
    evaluation also reports, for each share ε in `cold_epsilons`, the top k with ⌈ε·k⌉ slots reserved for
    cold items (evaluate/retrieval.py ColdStart; metrics eval/eps{ε}/{all,warm,cold}/...).
    """

    out_dir: str = gin.REQUIRED
    semantic_ids: str = gin.REQUIRED
    iterations: int = 200_000
    batch_size: int = 256
    log_every: int = 100
    eval_every: int = 10_000
    ckpt_every: int = 10_000
    eval_batch_size: int = 512
    eval_users: int | None = None
    finalists: int = 3
    monitor_test_users: int = 0
    beam_width: int = 10
    select_metric: str = "recall@10"
    schedule: Callable[[int], float] = inverse_sqrt
    seed: int = 42
    use_wandb: bool = True
    cold_epsilons: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    length_groups: int = 0
    compile_blocks: bool = False
    patience: int | None = None


def load_data(semantic_ids: str) -> tuple[RawDataset, SemanticIds, SeqData]:
    """The gin-bound dataset, its stage-1 artifact and the training split."""
    dataset = build_dataset()
    return dataset, load_semantic_ids(semantic_ids, dataset.item_keys), SeqData(dataset, split="train")


def retrieval_targets(sem: SemanticIds, dataset: RawDataset, epsilons: Sequence[float]):
    """(trie, ColdStart | None): the prefix trie beam search runs over (the warm items when the artifact
    withheld cold items, all items otherwise) and the cold-start evaluation settings. Raises
    SemanticIdsError when the artifact's cold items are not this dataset's."""
    if not sem.cold_items:
        return PrefixTrie.from_codes(sem.codes, sem.codebook_size), None
    expected = np.flatnonzero(cold_items(dataset.sequences, len(dataset.item_keys))).tolist()
    if expected != list(sem.cold_items):
        raise SemanticIdsError(
            f"the artifact withheld {len(sem.cold_items)} cold items, but this dataset's cold items are "
            f"{len(expected)} others: train stage 1 with train_rqvae.cold_start on the same dataset"
        )
    cold = torch.tensor(sem.cold_items, dtype=torch.long)
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size, sem.warm_items())
    return trie, ColdStart(sem.codes[cold], cold, tuple(epsilons))


def load_semantic_ids(path: str, item_keys: Sequence[str]) -> SemanticIds:
    """The stage-1 artifact, checked against the dataset's item order."""
    sem = SemanticIds.load(path)
    check_items(sem, path, item_keys)
    return sem


@gin.configurable(denylist=["sem", "max_items"])
def make_model(
    sem: SemanticIds, max_items: int, architecture: Callable[..., torch.nn.Module] = RetrievalModel
) -> torch.nn.Module:
    """The gin-configured retriever, sized by the stage-1 artifact (K, C) and the history length.
    architecture: RetrievalModel (TIGER's encoder-decoder) or `@DecoderOnlyModel`
    (modules/decoder_only.py); both follow the decoding protocol of modules/generation.py."""
    return architecture(codebook_size=sem.codebook_size, n_codes=sem.codes.shape[1], max_items=max_items)


def eval_loader(
    dataset, split: str, batch_size: int, max_users: int | None, rank: int = 0, world: int = 1,
    seed: int = 0,
) -> DataLoader:  # fmt: skip
    """`max_users` users of `split` drawn uniformly at random with `seed` (all when None; never "the first
    N", whose histories are longer than average in the P5 numbering); process `rank` of `world` gets every
    `world`-th of them (pool the per-process metrics with pool_shard_means).

    Each process visits its users shortest history first (a stable sort) and each batch is cut to its
    longest history (SeqData.collate_trimmed), so a batch of short histories does not pay for max_items of
    padding. Every metric is a mean over users, so the order leaves it unchanged."""
    data = SeqData(dataset, split=split)
    users = sample_rows(len(data), max_users, seed)
    mine = users[list(shard(len(users), rank, world))]
    by_length = np.argsort(data.history_lengths()[mine], kind="stable")
    rows = torch.utils.data.Subset(data, mine[by_length].tolist())
    return DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=data.collate_trimmed)


def split_targets(loader: DataLoader) -> torch.Tensor:
    """[U] int64 targets of the whole split behind an eval_loader (every user, whatever the sample or
    process), without collating it a second time: what the popularity baseline is scored on."""
    return torch.from_numpy(loader.dataset.dataset.targets())


def train_batch(train_data: SeqData, rows: torch.Tensor, item_codes: torch.Tensor, crop_seed: int = 0,
                trim: bool = False):  # fmt: skip
    """The tokenized training batch of `rows` (indices into train_data), on item_codes' device. With
    SeqData.train_examples = "subsequence" each history is cut by random_suffix, drawn from `crop_seed`;
    `trim` cuts the padding to the batch's longest history (a length-grouped batch order makes it small)."""
    seq = train_data.collate([train_data[i] for i in rows.tolist()])
    if train_data.train_examples == "subsequence":
        seq = random_suffix(seq, torch.Generator().manual_seed(crop_seed))
    if trim:
        seq = trim_padding(seq)
    return tokenize(*(t.to(item_codes.device) for t in seq), item_codes)


class TrainBatches:
    """train_decoder.py's training batches, a pure function of the step: BatchOrder over train_data's
    examples (length-grouped when length_groups > 0, DecoderLoop's docstring), tokenized by `train_batch`
    (trimmed when grouped), each with its loss weight (training.loop.target_weight when grouped, else None).
    model: the retriever, for its `targets_per_row`; rank / world: this process of P (BatchOrder)."""

    def __init__(self, train_data: SeqData, item_codes: torch.Tensor, model, batch_size: int, seed: int,
                 length_groups: int = 0, rank: int = 0, world: int = 1):  # fmt: skip
        lengths = torch.from_numpy(train_data.history_lengths())  # [X]
        self.order = BatchOrder(
            len(train_data), batch_size, seed, rank, world, lengths=lengths, length_groups=length_groups
        )
        self.targets_per_row = model.targets_per_row(lengths)  # [X] float
        self.train_data, self.item_codes, self.seed = train_data, item_codes, seed
        self.grouped = length_groups > 0

    def __call__(self, step: int):
        """-> (TokenBatch of the step's rows on item_codes' device, its loss weight [] or None)."""
        rows = self.order.indices(step)
        batch = train_batch(self.train_data, rows, self.item_codes, (self.seed << 32) + step, self.grouped)
        if not self.grouped:
            return batch, None
        return batch, target_weight(self.targets_per_row, rows).to(self.item_codes.device)


def train_step(model, optimizer, scheduler, batch, accelerator, loss_weight=None) -> dict[str, torch.Tensor]:
    """training.loop.optimizer_step on a tokenized batch -> the loss and its per-level terms (on device)."""
    out = optimizer_step(model, optimizer, scheduler, batch, accelerator, loss_weight)
    return {"train/loss": out.loss, **{f"train/loss_level{c}": v for c, v in enumerate(out.loss_per_level)}}


def load_run(run: Path, bindings: Sequence[str]):
    """(dataset, semantic IDs, model with best.pt weights) of a finished run."""
    for needed in ("config.gin", "best.pt"):
        if not (run / needed).exists():
            raise FileNotFoundError(f"{run / needed} not found: is {run} a finished train_decoder.py run?")
    load_gin([str(run / "config.gin")], bindings)
    semantic_ids = resolve_macros(gin.query_parameter("train_decoder.semantic_ids"))  # %SEMANTIC_IDS
    dataset, sem, train_data = load_data(semantic_ids)
    model = make_model(sem, train_data.max_items)
    model.load_state_dict(load_tensors(run / "best.pt")["model"])
    return dataset, sem, model.eval()
