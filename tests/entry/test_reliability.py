"""Kill-and-resume and determinism of both train scripts on the debug configs.

A killed run (SIGKILL from tests/entry/killer.py, also in the middle of a checkpoint write) rerun with the
same command ends with the same metrics.json, metrics.jsonl and (stage 1) a byte-identical semantic_ids.pt
as an uninterrupted run; two runs with the same seed agree byte for byte, another seed differs.
"""

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_decoder
import train_rqvae
from data.artifact import SemanticIds
from data.files import DamagedFileError, load_tensors, previous
from training.checkpoint import FallbackWarning
from training.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
RQVAE = ["configs/rqvae_debug.gin", "--gin", "train_rqvae.iterations = 40"]
DECODER = ["configs/decoder_debug.gin"]
NOT_COMPARED = ("perf/", "commit", "machine")  # wall clock and provenance


def rqvae_args(out_dir: Path, *bindings: str) -> list[str]:
    return [*RQVAE, "--gin", f'train_rqvae.out_dir = "{out_dir}"', *sum([["--gin", b] for b in bindings], [])]


def decoder_args(out_dir: Path, semantic_ids: Path, *bindings: str) -> list[str]:
    bindings = (
        f'train_decoder.out_dir = "{out_dir}"',
        f'train_decoder.semantic_ids = "{semantic_ids}"',
        *bindings,
    )
    return [*DECODER, *sum([["--gin", b] for b in bindings], [])]


def killed(when: str, n: int, script: str, args: list[str]) -> None:
    """Runs `python SCRIPT ARGS` in a fresh process that SIGKILLs itself at the n-th `when` point."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "tests/entry/killer.py", when, str(n), script, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(NOT_COMPARED)}


def summary(run: Path) -> dict:
    return comparable(json.loads((run / "metrics.json").read_text()))


def log_rows(run: Path) -> list[dict]:
    return [comparable(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    a, b = load_tensors(a)["model"], load_tensors(b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fresh(base: Path) -> Path:
    """The shared run path, emptied of whatever an earlier failed test left there."""
    shutil.rmtree(base / "run", ignore_errors=True)
    return base / "run"


def moved(run: Path, name: str) -> Path:
    """semantic_ids.pt records its run path (config, source): runs share one path, then move aside."""
    return Path(shutil.move(run, run.with_name(name)))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, embed_cache):
    """(folder whose `run/` each stage-1 run writes to, the uninterrupted seed-0 run moved to `ref/`)."""
    base = tmp_path_factory.mktemp("stage1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIGER_CACHE_DIR", str(embed_cache))
        train_rqvae.main(rqvae_args(base / "run"))
    return base, moved(base / "run", "ref")


@pytest.fixture(scope="module")
def stage2(tmp_path_factory, stage1):
    """(folder, stage-1 artifact, the uninterrupted seed-0 decoder run)."""
    base, sem = tmp_path_factory.mktemp("stage2"), stage1[1] / "semantic_ids.pt"
    train_decoder.main(decoder_args(base / "ref", sem))
    return base, sem, base / "ref"


def test_rqvae_same_seed_same_bytes_other_seed_differs(stage1):
    base, ref = stage1
    train_rqvae.main(rqvae_args(fresh(base)))
    same = moved(base / "run", "same")
    assert (same / "semantic_ids.pt").read_bytes() == (ref / "semantic_ids.pt").read_bytes()
    assert summary(same) == summary(ref)
    train_rqvae.main(rqvae_args(base / "run", "train_rqvae.seed = 1"))
    other = moved(base / "run", "seed1")
    codes = SemanticIds.load(other / "semantic_ids.pt").codes
    assert not torch.equal(codes, SemanticIds.load(ref / "semantic_ids.pt").codes)
    assert summary(other)["train/loss"] != summary(ref)["train/loss"]


def test_rqvae_killed_anywhere_resumes_to_the_uninterrupted_result(stage1):
    base, ref = stage1
    run = fresh(base)
    killed("write", 3, "train_rqvae.py", rqvae_args(run))  # torn write of the step-30 checkpoint
    assert load_tensors(run / "checkpoint.pt")["step"] == 20
    with pytest.raises(DamagedFileError, match=r"could not read .*checkpoint\.pt\.tmp"):
        load_tensors(run / "checkpoint.pt.tmp")
    assert [row["step"] for row in log_rows(run)] == [10, 20, 30]  # row 30 is not covered by a checkpoint
    killed("log", 2, "train_rqvae.py", rqvae_args(run))  # resumed at 20; dies after row 40, before its ckpt
    assert load_tensors(run / "checkpoint.pt")["step"] == 30 and not (run / "semantic_ids.pt").exists()
    train_rqvae.main(rqvae_args(run))  # the same command again
    resumed = moved(run, "resumed")
    assert (resumed / "semantic_ids.pt").read_bytes() == (ref / "semantic_ids.pt").read_bytes()
    assert summary(resumed) == summary(ref)
    assert log_rows(resumed) == log_rows(ref)  # no duplicate or out-of-order steps
    assert not list(resumed.glob("*.tmp"))


def test_rerun_of_finished_rqvae_run_keeps_its_summary(stage1):
    base, ref = stage1
    rerun = Path(shutil.copytree(ref, fresh(base)))
    train_rqvae.main(rqvae_args(rerun))  # resumes at the last step: nothing to train
    assert summary(rerun) == summary(ref)
    assert log_rows(rerun) == log_rows(ref)
    shutil.rmtree(rerun)


def test_decoder_same_seed_same_metrics_other_seed_differs(stage2):
    base, sem, ref = stage2
    train_decoder.main(decoder_args(base / "same", sem))
    assert summary(base / "same") == summary(ref)
    assert log_rows(base / "same") == log_rows(ref)
    train_decoder.main(decoder_args(base / "seed1", sem, "train_decoder.seed = 1"))
    assert log_rows(base / "seed1")[0]["train/loss"] != log_rows(ref)[0]["train/loss"]
    assert summary(base / "seed1") != summary(ref)  # test metrics of other weights (pop/* are seed-free)
    assert not same_weights(base / "seed1" / "best.pt", ref / "best.pt")


def test_decoder_killed_anywhere_resumes_to_the_uninterrupted_result(stage2):
    base, sem, ref = stage2
    run = base / "killed"
    killed("write", 2, "train_decoder.py", decoder_args(run, sem))  # torn write of the step-20 checkpoint
    assert load_tensors(run / "checkpoint.pt")["step"] == 10 and (run / "checkpoint.pt.tmp").exists()
    killed("log", 2, "train_decoder.py", decoder_args(run, sem))  # resumed at 10; dies after row 30
    assert load_tensors(run / "checkpoint.pt")["step"] == 20
    train_decoder.main(decoder_args(run, sem))
    assert summary(run) == summary(ref)
    assert log_rows(run) == log_rows(ref)
    assert [row["step"] for row in log_rows(run)] == [10, 20, 30, 40, 40]  # the last: the final test row
    assert same_weights(run / "best.pt", ref / "best.pt")
    assert not list(run.glob("*.tmp"))


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_latest_checkpoint_resumes_from_the_previous_one(stage2):
    base, sem, ref = stage2
    run = Path(shutil.copytree(ref, base / "fallback"))
    assert load_tensors(previous(run / "checkpoint.pt"))["step"] == 30
    cut(run / "checkpoint.pt")
    with pytest.warns(
        FallbackWarning, match=r"checkpoint\.pt: it is truncated .*checkpoint\.prev\.pt \(step 30\)"
    ):
        train_decoder.main(decoder_args(run, sem))
    assert summary(run) == summary(ref)
    assert log_rows(run) == log_rows(ref)  # steps 30..40 trained again, the same rows


def test_failed_rerun_of_a_finished_run_leaves_its_files_as_they_were(stage2, capsys):
    base, sem, ref = stage2
    run = Path(shutil.copytree(ref, base / "damaged_best"))
    cut(run / "best.pt")
    before = {name: (run / name).read_bytes() for name in ("metrics.jsonl", "metrics.json")}
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_decoder.main, decoder_args(run, sem))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert f"could not read {run / 'best.pt'}: it is truncated or damaged" in err
    assert "restore it from a copy, or delete the run directory and train again" in err
    assert {name: (run / name).read_bytes() for name in before} == before  # the test row is still there


def test_disk_full_at_a_checkpoint_stops_cleanly_and_the_rerun_resumes_exactly(stage1, monkeypatch, capsys):
    base, ref = stage1
    run, real_save, writes = fresh(base), torch.save, []

    def fills_the_disk(obj, f, *args, **kwargs):
        if str(getattr(f, "name", "")).endswith("checkpoint.pt.tmp"):
            writes.append(1)
            if len(writes) == 2:  # the step-20 checkpoint: the disk fills up part way
                buffer = io.BytesIO()
                real_save(obj, buffer)
                f.write(buffer.getvalue()[:1000])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_rqvae.main, rqvae_args(run))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert f"could not write {run / 'checkpoint.pt'}: the disk is full" in err
    assert not list(run.glob("*.tmp")) and load_tensors(run / "checkpoint.pt")["step"] == 10
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same command again
    train_rqvae.main(rqvae_args(run))
    resumed = moved(run, "after_disk_full")
    assert (resumed / "semantic_ids.pt").read_bytes() == (ref / "semantic_ids.pt").read_bytes()
    assert log_rows(resumed) == log_rows(ref)
