import json
import math

import gin
import pytest
import torch

from training.checkpoint import (
    UnsafeCheckpointError,
    atomic_save,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
)
from training.cli import ConfigError, load_gin
from training.guards import NonFiniteLossError, check_finite, check_intervals
from training.logger import JsonlLogger, write_json
from training.run import BatchOrder, MetricSums
from training.schedule import inverse_sqrt, warmup_constant, warmup_cosine


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
    with pytest.raises(UnsafeCheckpointError, match=r"c\.pt is not a tensors-only checkpoint.*_run_on_load"):
        load_checkpoint(path, model=torch.nn.Linear(1, 1))
    with pytest.raises(UnsafeCheckpointError, match="not a tensors-only checkpoint"):
        load_tensors(path)
    assert not _UNPICKLED  # refused before any of it ran


def test_corrupt_checkpoint_error_names_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.pt"):
        load_checkpoint(bad, model=torch.nn.Linear(1, 1))


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
