"""Multi-process training: the helpers that split and pool work, and `accelerate launch` with 2 CPU processes.

The launched tests start real gloo process groups (`accelerate launch --multi_gpu --num_processes 2`, which
on a machine without CUDA runs on the CPU; see training.distributed.make_accelerator).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_decoder
from training.distributed import pool_shard_means, shard
from training.logger import make_logger
from training.loop import BatchOrder, MetricSums

REPO = Path(__file__).resolve().parents[2]


def test_batch_order_splits_the_global_batch_evenly():
    full = BatchOrder(40, 8, seed=3).indices(5)
    parts = [BatchOrder(40, 8, seed=3, rank=r, world=4).indices(5) for r in range(4)]
    assert [len(p) for p in parts] == [2, 2, 2, 2]
    assert torch.equal(torch.stack(parts, 1).reshape(-1), full)  # every world-th row of the same batch
    with pytest.raises(ValueError, match="divisible"):
        BatchOrder(40, 6, seed=3, rank=0, world=4)


def test_shard_partitions_rows():
    parts = [shard(7, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(7))
    with pytest.raises(ValueError, match="2 rows"):
        shard(2, 0, 3)


def test_pooled_shard_means_equal_the_mean_over_all_users():
    hits = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # per-user values, 7 users
    shards = [hits[list(shard(7, r, 2))] for r in range(2)]  # 4 and 3 users
    local = [{"eval/recall": s.mean().item(), "eval/users": len(s)} for s in shards]
    sent = []  # what each process would contribute to the all-reduce

    def capture(t):
        sent.append(t)
        return t

    for metrics in local:
        pool_shard_means(metrics, "eval/users", capture)
    pooled = [pool_shard_means(m, "eval/users", lambda t: sent[0] + sent[1]) for m in local]
    assert pooled[0] == pooled[1]
    assert pooled[0]["eval/users"] == 7
    assert pooled[0]["eval/recall"] == pytest.approx(hits.mean().item())  # 4/7, not (2/4 + 2/3) / 2


def test_metric_sums_reduce_before_flush():
    other = torch.tensor([5.0])  # the other process's interval mean
    sums = MetricSums(reduce=lambda t: (t + other) / 2)
    sums.add({"train/loss": torch.tensor(1.0)})
    sums.add({"train/loss": torch.tensor(2.0)})
    assert sums.flush() == {"train/loss": pytest.approx((1.5 + 5.0) / 2)}


def test_only_the_main_process_writes_logs(tmp_path):
    other = make_logger(tmp_path, "p", {}, use_wandb=True, is_main=False)
    other.log({"train/loss": 1.0}, 1)
    other.close()
    assert list(tmp_path.iterdir()) == []  # no metrics.jsonl, no wandb run


# --- launched runs -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(script: str, *args: str, cache: Path, processes: int = 2) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes N script args` from the repo root (CPU: gloo)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TIGER_CACHE_DIR": str(cache),
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "offline",
    }
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), script, *args]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


PROBE = """
import json, sys
import torch
from training.distributed import cross_process, make_accelerator, pool_shard_means
acc = make_accelerator()
rank = acc.process_index
mean = cross_process(acc, "mean")(torch.tensor([float(rank)])).item()
local = {"eval/x": float(rank), "eval/users": rank + 1}
pooled = pool_shard_means(local, "eval/users", cross_process(acc, "sum"))
result = {"rank": rank, "world": acc.num_processes, "mean": mean, **pooled}
open(f"{sys.argv[1]}/rank{rank}.json", "w").write(json.dumps(result))
acc.end_training()
"""


def test_two_launched_processes_form_one_group(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    launch(str(script), str(tmp_path), cache=tmp_path)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # ranks 0 and 1 of one group (not two single-process runs); mean of ranks 0.5; pooled (0·1 + 1·2) / 3
    assert [(r["rank"], r["world"]) for r in results] == [(0, 2), (1, 2)]
    for r in results:
        assert r["mean"] == 0.5 and r["eval/x"] == pytest.approx(2 / 3) and r["eval/users"] == 3


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(single: Path, multi: Path, keys: tuple[str, ...]) -> None:
    """Same logged rows (steps, once each) and the same metrics within float32 reduction noise."""
    one, two = rows(single), rows(multi)
    assert [r["step"] for r in two] == [r["step"] for r in one]  # no duplicate lines from the second process
    for a, b in zip(one, two):
        assert set(a) == set(b)
        for key in (k for k in keys if k in a):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)


@pytest.mark.slow
def test_two_process_rqvae_matches_one_process(tmp_path, debug_stage1, embed_cache):
    launch("train_rqvae.py", "configs/rqvae_debug.gin", "--gin", f'train_rqvae.out_dir = "{tmp_path}"',
           cache=embed_cache)  # fmt: skip
    keys = ("train/loss", "rqvae/recon_loss", "eval/recon_loss", "eval/quant_loss")
    assert_same_run(debug_stage1, tmp_path, keys)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 60
    assert (tmp_path / "semantic_ids.pt").exists() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_two_process_decoder_matches_one_process_at_the_same_global_batch(
    tmp_path, debug_stage1, embed_cache
):
    # dropout off: with it, each process draws its own masks and only the distribution would match
    bindings = ["--gin", f'train_decoder.semantic_ids = "{debug_stage1 / "semantic_ids.pt"}"',
                "--gin", "RetrievalModel.dropout = 0.0"]  # fmt: skip
    single, multi = tmp_path / "one", tmp_path / "two"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIGER_CACHE_DIR", str(embed_cache))
        train_decoder.main(
            ["configs/decoder_debug.gin", "--gin", f'train_decoder.out_dir = "{single}"', *bindings]
        )
    launch("train_decoder.py", "configs/decoder_debug.gin", "--gin", f'train_decoder.out_dir = "{multi}"',
           *bindings, cache=embed_cache)  # fmt: skip
    keys = ("train/loss", "valid/recall@10", "valid/ndcg@10", "valid/users", "test/recall@10", "test/ndcg@10")
    assert_same_run(single, multi, keys)
    assert [r["valid/users"] for r in rows(multi) if "valid/users" in r] == [300, 300]  # each user once
    assert torch.load(multi / "checkpoint.pt", weights_only=False)["step"] == 40
    summary = json.loads((multi / "metrics.json").read_text())
    assert summary["test/recall@10"] == pytest.approx(
        json.loads((single / "metrics.json").read_text())["test/recall@10"]
    )
    assert (multi / "best.pt").exists() and not list(multi.glob("*.tmp"))
