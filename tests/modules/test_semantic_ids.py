import os

import pytest
import torch

from data.artifact import SemanticIds
from data.files import DamagedFileError, RunFileWriteError
from modules.semantic_ids import append_collision_code

K = 8


def test_collision_code_by_hand():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2], [0, 0]])
    full = append_collision_code(codes, K)
    assert torch.equal(full[:, :2], codes)
    assert full[:, 2].tolist() == [0, 0, 1, 0, 2, 1]


def test_collision_code_equals_count_of_earlier_items_and_makes_tuples_unique():
    codes = torch.randint(3, (200, 3), generator=torch.Generator().manual_seed(0))  # many collisions
    full = append_collision_code(codes, 16)
    earlier = [sum(torch.equal(codes[j], codes[i]) for j in range(i)) for i in range(200)]
    assert full[:, 3].tolist() == earlier
    assert torch.unique(full, dim=0).shape[0] == 200


def test_group_larger_than_k_raises_naming_the_group():
    codes = torch.tensor([[5, 1]] * 3 + [[0, 0]] * 2)
    assert append_collision_code(codes, 3)[:, 2].tolist() == [0, 1, 2, 0, 1]  # exactly K is fine
    with pytest.raises(ValueError, match=r"3 items share the code tuple \[5, 1\]"):
        append_collision_code(codes, 2)
    assert append_collision_code(torch.zeros(0, 3, dtype=torch.long), K).shape == (0, 4)


def _artifact(n: int = 20) -> SemanticIds:
    codes = torch.randint(4, (n, 3), generator=torch.Generator().manual_seed(1))
    return SemanticIds.from_codes(
        codes,
        K,
        [f"item{i}" for i in range(n)],
        source="ckpt.pt",
        config="RqVae.n_levels = 3",
        metrics={"a": 1.5},
    )


def test_save_load_round_trip(tmp_path):
    ids = _artifact()
    path = tmp_path / "sub" / "semantic_ids.pt"
    ids.save(path)
    loaded = SemanticIds.load(path)
    assert torch.equal(loaded.codes, ids.codes) and loaded.codes.dtype == torch.int64
    assert (loaded.codebook_size, loaded.n_levels, loaded.n_codes) == (K, 3, 4)
    assert loaded.item_keys == ids.item_keys and loaded.source == "ckpt.pt"
    assert loaded.config == ids.config and loaded.metrics == {"a": 1.5}
    assert os.listdir(path.parent) == ["semantic_ids.pt"]


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "semantic_ids.pt"
    _artifact(5).save(path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RunFileWriteError, match=r"could not write .*semantic_ids\.pt: OSError: disk full"):
        _artifact(9).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["semantic_ids.pt"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SemanticIds.load(tmp_path / "missing.pt")
    torch.save({"codes": torch.zeros(2, 4)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a semantic-ID artifact"):
        SemanticIds.load(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(DamagedFileError, match=r"could not read .*garbage\.pt: it is damaged"):
        SemanticIds.load(tmp_path / "garbage.pt")


def test_artifact_validates_its_fields():
    codes = append_collision_code(torch.tensor([[1, 2], [1, 2]]), K)
    with pytest.raises(ValueError, match="item keys"):
        SemanticIds(codes, K, 2, ["only-one"])
    with pytest.raises(ValueError, match=r"int64 \[I, 3\]"):
        SemanticIds(codes[:, :2], K, 2, ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        SemanticIds(codes, 2, 2, ["a", "b"])


def test_cold_items_round_trip_and_are_checked(tmp_path):
    ids = _artifact(6)
    ids.cold_items = [1, 4]
    ids.save(tmp_path / "s.pt")
    loaded = SemanticIds.load(tmp_path / "s.pt")
    assert loaded.cold_items == [1, 4]
    assert loaded.warm_items().tolist() == [0, 2, 3, 5]
    assert _artifact(6).warm_items().tolist() == list(range(6))
    for bad in ([4, 1], [1, 1], [6]):
        with pytest.raises(ValueError, match="cold_items"):
            SemanticIds(ids.codes, K, 3, ids.item_keys, cold_items=bad)
