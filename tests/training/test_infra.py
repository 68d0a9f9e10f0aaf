import errno
import io
import json
import math
import os
import re

import gin
import pytest
import torch

from data.artifact import SemanticIds
from data.files import (
    DamagedFileError,
    RunFileWriteError,
    UnsafeCheckpointError,
    atomic_save,
    load_tensors,
    previous,
    write_json,
)
from training.checkpoint import FallbackWarning, load_checkpoint, resume_from, save_checkpoint
from training.cli import ConfigError, load_gin
from training.guards import NonFiniteLossError, check_finite, check_intervals
from training.logger import JsonlLogger
from training.loop import BatchOrder, MetricSums, target_weight
from training.schedule import inverse_sqrt, warmup_constant, warmup_cosine, warmup_stable_decay


def test_inverse_sqrt_matches_formula():
    assert inverse_sqrt(0, warmup_steps=100) == 1.0
    assert inverse_sqrt(100, warmup_steps=100) == 1.0
    assert inverse_sqrt(400, warmup_steps=100) == pytest.approx(math.sqrt(100 / 400))
    assert inverse_sqrt(49, warmup_steps=100, ramp=True) == pytest.approx(0.5)


def test_warmup_cosine_endpoints():
    assert warmup_cosine(0, total_steps=100, warmup_steps=10) == pytest.approx(0.1)
    assert warmup_cosine(10, total_steps=100, warmup_steps=10) == pytest.approx(1.0)
    assert warmup_cosine(55, total_steps=100, warmup_steps=10) == pytest.approx(0.5)
    assert warmup_cosine(100, total_steps=100, warmup_steps=10, final=0.1) == pytest.approx(0.1)


def test_warmup_constant_ramps_then_holds():
    assert warmup_constant(0, warmup_steps=4) == pytest.approx(0.25)
    assert warmup_constant(3, warmup_steps=4) == 1.0
    assert [warmup_constant(s, warmup_steps=4) for s in (10, 10_000)] == [1.0, 1.0]
    assert warmup_constant(0, warmup_steps=0) == 1.0


def test_warmup_stable_decay_is_warmup_constant_then_a_linear_decay():
    bindings = {"decay_start": 10, "decay_steps": 4, "warmup_steps": 4, "final": 0.2}
    wsd = [warmup_stable_decay(s, **bindings) for s in range(16)]
    assert wsd[:10] == [warmup_constant(s, warmup_steps=4) for s in range(10)]  # a constant run's prefix
    assert wsd[10:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    assert warmup_stable_decay(14, decay_start=10, decay_steps=4) == 0.0  # final defaults to 0


def test_batch_order_is_a_function_of_step_and_covers_each_epoch():
    a, b = BatchOrder(10, 3, seed=1), BatchOrder(10, 3, seed=1)
    epoch0 = torch.cat([a.indices(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # a permutation, last partial batch dropped
    assert torch.equal(a.indices(4), b.indices(4))  # fresh object, same step -> same rows
    assert torch.equal(BatchOrder(10, 3, seed=1).indices(1), a.indices(1))


def test_batch_order_shards_processes():
    full = BatchOrder(12, 4, seed=0).indices(2)
    parts = [BatchOrder(12, 4, seed=0, rank=r, world=2).indices(2) for r in range(2)]
    assert sorted(torch.cat(parts).tolist()) == sorted(full.tolist())


def length_order(seed=0, groups=2, n=50, batch=4, world=1, rank=0):
    lengths = torch.arange(n) % 7 + 1  # [X] 1..7
    return BatchOrder(n, batch, seed, rank, world, lengths=lengths, length_groups=groups), lengths


def test_length_grouped_order_sees_each_row_once_per_epoch_in_batches_of_similar_length():
    order, lengths = length_order()
    plain = BatchOrder(50, 4, seed=0)
    epoch = [order.indices(s) for s in range(order.steps_per_epoch)]  # 12 batches, 2 rows dropped
    rows = torch.cat(epoch)
    assert len(set(rows.tolist())) == 48
    assert set(rows.tolist()) == set(torch.cat([plain.indices(s) for s in range(12)]).tolist())
    spread = torch.stack([lengths[b].max() - lengths[b].min() for b in epoch]).float().mean()
    random_spread = torch.stack([lengths[plain.indices(s)].max() - lengths[plain.indices(s)].min()
                                 for s in range(12)]).float().mean()  # fmt: skip
    assert spread < random_spread
    for batch in epoch:  # each batch is a run of one sorted group
        assert torch.equal(lengths[batch], lengths[batch].sort().values)


def test_length_grouped_order_is_a_function_of_step_and_shards_processes():
    assert torch.equal(length_order()[0].indices(17), length_order()[0].indices(17))
    assert not torch.equal(length_order(seed=1)[0].indices(3), length_order()[0].indices(3))
    full = length_order()[0].indices(5)
    parts = [length_order(world=2, rank=r)[0].indices(5) for r in range(2)]
    assert sorted(torch.cat(parts).tolist()) == sorted(full.tolist())
    with pytest.raises(ValueError, match="needs lengths"):
        BatchOrder(10, 2, seed=0, length_groups=2)


def test_target_weight_gives_every_target_the_same_weight_over_an_epoch():
    order, lengths = length_order(n=48)  # no remainder: the epoch is every row
    per_row = lengths.float()  # e.g. the decoder-only model trains `length` targets per row
    epoch = [order.indices(s) for s in range(order.steps_per_epoch)]
    weights = torch.stack([target_weight(per_row, rows) for rows in epoch])
    assert weights.mean() == pytest.approx(1.0)  # Σ_steps w · (batch mean) = Σ targets / (B · mean)
    for rows, w in zip(epoch, weights):
        assert w * 4 * per_row.mean() == pytest.approx(per_row[rows].sum())
    assert target_weight(torch.ones(48), epoch[0]) == 1.0  # one target per row: plain batch means


def test_metric_sums_means_then_resets():
    sums = MetricSums()
    sums.add({"a": torch.tensor(1.0)})
    sums.add({"a": torch.tensor(3.0)})
    assert sums.flush() == {"a": 2.0}
    assert sums.flush() == {}


def test_intervals_must_fall_on_log_steps():
    check_intervals("train", 10, eval_every=30, ckpt_every=10)
    with pytest.raises(ValueError, match=r"train\.eval_every = 25 .* train\.log_every = 10"):
        check_intervals("train", 10, eval_every=25, ckpt_every=10)
    with pytest.raises(ValueError, match="ckpt_every = 0"):
        check_intervals("train", 10, ckpt_every=0)


def test_check_finite_names_key_and_step(tmp_path):
    check_finite({"loss": torch.tensor(1.0)}, 3, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"loss.*step 7"):
        check_finite({"loss": torch.tensor(float("nan"))}, 7, tmp_path)


def test_checkpoint_round_trip_restores_model_optimizer_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, step=5, config="x = 1")
    expected_draw = torch.rand(3)
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.AdamW(other.parameters(), lr=0.1)
    payload = load_checkpoint(tmp_path / "c.pt", model=other, optimizer=other_opt)
    assert payload["step"] == 5 and payload["config"] == "x = 1"
    torch.testing.assert_close(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    torch.testing.assert_close(torch.rand(3), expected_draw)


def test_atomic_save_leaves_no_temp_file(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_torn_temp_file_from_a_killed_write_is_harmless(tmp_path):
    atomic_save({"a": torch.arange(3)}, tmp_path / "x.pt")
    (tmp_path / "x.pt.tmp").write_bytes(b"PK\x03\x04 half a zip")  # what a kill mid-write leaves
    torch.testing.assert_close(load_tensors(tmp_path / "x.pt")["a"], torch.arange(3))  # never read
    atomic_save({"a": torch.arange(4)}, tmp_path / "x.pt")  # overwrites it, then renames
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    torch.testing.assert_close(load_tensors(tmp_path / "x.pt")["a"], torch.arange(4))


def test_training_checkpoint_is_tensors_only(tmp_path):
    """model, fused AdamW, LambdaLR, RNG, config and floats all load with weights_only=True."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: inverse_sqrt(step, warmup_steps=2))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    extra = {"scheduler": sched.state_dict(), "best": 0.5, "metrics": {"train/loss": 1.0}}
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, step=1, config="", extra=extra)
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    assert payload["scheduler"] == sched.state_dict() and payload["best"] == 0.5


_UNPICKLED = []


def _run_on_load():
    _UNPICKLED.append(True)


class _CodeOnLoad:
    """Unpickling this object runs code: what weights_only=True exists to refuse."""

    def __reduce__(self):
        return _run_on_load, ()


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"model": {}, "step": 1, "rng": {}, "extra": _CodeOnLoad()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"c\.pt is not a tensors-only file.*_run_on_load"):
        load_checkpoint(path, model=torch.nn.Linear(1, 1))
    with pytest.raises(UnsafeCheckpointError, match="not a tensors-only file"):
        load_tensors(path)
    assert not _UNPICKLED  # refused before any of it ran


class _ShellOnLoad:
    """Unpickles as posix.system(...): a module torch's weights_only unpickler blocks by name."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt", "semantic_ids.pt"])
def test_pickle_of_a_blocked_module_raises_the_projects_unsafe_error(tmp_path, name):
    path, marker = tmp_path / name, tmp_path / "ran"
    torch.save({"model": {}, "step": 1, "x": _ShellOnLoad(marker)}, path)
    load = (lambda: SemanticIds.load(path)) if name == "semantic_ids.pt" else (lambda: load_tensors(path))
    with pytest.raises(UnsafeCheckpointError, match=rf"{name} is not a tensors-only file: it pickles the "
                       r"Python object posix\.system") as err:  # fmt: skip
        load()
    assert "Weights only load failed" not in str(err.value)  # the project's text, not torch's
    assert not marker.exists()


def cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "name, remedy",
    [
        ("checkpoint.pt", "delete it to start this run over"),
        ("best.pt", "restore it from a copy, or delete the run directory and train again"),
        ("semantic_ids.pt", r"rerun train_rqvae\.py \(stage 1\)"),
        ("other.pt", "delete it and rerun the command that wrote it"),
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.001, 0.0], ids=["half", "header", "empty"])
def test_damaged_run_files_name_the_file_and_what_to_do(tmp_path, name, remedy, keep):
    path = tmp_path / name
    if name == "semantic_ids.pt":
        SemanticIds.from_codes(torch.tensor([[0, 1], [1, 0]]), 4, ["a", "b"]).save(path)
    else:
        atomic_save({"model": {"w": torch.randn(64, 64)}, "step": 3}, path)
    cut(path, keep)
    load = (lambda: SemanticIds.load(path)) if name == "semantic_ids.pt" else (lambda: load_tensors(path))
    with pytest.raises(DamagedFileError, match=rf"could not read {re.escape(str(path))}: .*; .*{remedy}"):
        load()


def save_step(path, step: int) -> None:
    save_checkpoint(path, model=torch.nn.Linear(2, 2), optimizer=None, step=step, config="")


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    assert resume_from(ckpt) == ckpt  # nothing yet: a fresh start
    save_step(ckpt, 10)
    assert not previous(ckpt).exists()
    save_step(ckpt, 20)
    assert load_tensors(previous(ckpt))["step"] == 10 and load_tensors(ckpt)["step"] == 20
    assert resume_from(ckpt) == ckpt
    cut(ckpt)
    with pytest.warns(
        FallbackWarning, match=r"checkpoint\.pt: it is truncated .*previous checkpoint .*\(step 10\)"
    ):
        assert resume_from(ckpt) == previous(ckpt)
    cut(previous(ckpt))
    with pytest.raises(
        DamagedFileError, match=r"no readable checkpoint\.prev\.pt to fall back to; delete it"
    ):
        resume_from(ckpt)


def test_a_first_checkpoint_removes_a_stale_previous_one(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    save_step(ckpt, 10)
    save_step(ckpt, 20)
    ckpt.unlink()  # the user starts the run over; checkpoint.prev.pt is left from the old run
    save_step(ckpt, 5)
    assert not previous(ckpt).exists()


def test_disk_full_during_a_write_keeps_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    ckpt, summary = tmp_path / "checkpoint.pt", tmp_path / "metrics.json"
    save_step(ckpt, 10)
    save_step(ckpt, 20)
    write_json(summary, {"a": 1})
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):  # the disk fills up after the first 100 bytes
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        RunFileWriteError, match=r"could not write .*checkpoint\.pt: the disk is full \(.* MiB"
    ):
        save_step(ckpt, 30)
    monkeypatch.setattr(os, "fsync", lambda fd: disk_full(None, io.BytesIO()))
    with pytest.raises(
        RunFileWriteError, match=r"metrics\.json: the disk is full .*still holds the previous"
    ):
        write_json(summary, {"a": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "metrics.json",
    ]
    assert load_tensors(ckpt)["step"] == 20 and load_tensors(previous(ckpt))["step"] == 10
    assert json.loads(summary.read_text()) == {"a": 1}


def test_jsonl_logger_trims_only_when_it_writes(tmp_path):
    rows = "".join(json.dumps({"step": s, "a": 1.0}) + "\n" for s in (10, 20, 20))
    (tmp_path / "metrics.jsonl").write_text(rows)
    JsonlLogger(tmp_path, start_step=10)  # a rerun that fails before it logs anything
    assert (tmp_path / "metrics.jsonl").read_text() == rows
    JsonlLogger(tmp_path, start_step=10).close()
    assert (tmp_path / "metrics.jsonl").read_text() == rows.splitlines(keepends=True)[0]


@gin.configurable
def _configurable(value=1):
    return value


def test_load_gin_names_bad_binding_and_missing_file(tmp_path):
    good = tmp_path / "a.gin"
    good.write_text("_configurable.value = 3\n")
    load_gin([str(good)], ["_configurable.value = 4"])
    assert _configurable() == 4
    with pytest.raises(ConfigError, match="nope.gin"):
        load_gin([str(tmp_path / "nope.gin")], [])
    with pytest.raises(ConfigError, match="_configurable.valu"):
        load_gin([str(good)], ["_configurable.valu = 4"])
    broken = tmp_path / "broken.gin"
    broken.write_text("_configurable.value = = 3\n")
    with pytest.raises(ConfigError, match="broken.gin"):
        load_gin([str(broken)], [])


def test_jsonl_logger_and_write_json(tmp_path):
    logger = JsonlLogger(tmp_path)
    logger.log({"train/loss": 1.5}, 10)
    logger.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 10, "train/loss": 1.5}
    write_json(tmp_path / "m.json", {"a": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}


def test_jsonl_logger_restarted_at_a_step_drops_rows_its_checkpoint_does_not_cover(tmp_path):
    rows = [{"step": 10, "a": 1.0}, {"step": 20, "a": 2.0}, {"step": 20, "test": 0.5}, {"step": 30, "a": 3.0}]
    text = "".join(json.dumps(row) + "\n" for row in rows) + '{"step": 40, "a'  # torn by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    logger = JsonlLogger(tmp_path, start_step=20)
    logger.log({"a": 3.5}, 30)
    logger.close()
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [rows[0], rows[1], {"step": 30, "a": 3.5}]
    JsonlLogger(tmp_path, start_step=0).close()  # a fresh start (no checkpoint) starts a fresh log
    assert (tmp_path / "metrics.jsonl").read_text() == ""
