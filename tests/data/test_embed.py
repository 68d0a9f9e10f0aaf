import io
import zipfile

import pytest
import torch

import data.embed as embed
from data.embed import MINILM, assemble_mpnet, cache_key, embed_texts, encode, length_sorted_batches
from data.synthetic import load_synthetic


class ModelLoaded(Exception):
    pass


def refuse_to_load(*args, **kwargs):
    raise ModelLoaded


def test_minilm_embeds_and_cache_hits_never_load_the_model(tmp_path, monkeypatch):
    texts = load_synthetic(n_items=20, n_users=5).item_texts
    vectors = embed_texts(texts, model=MINILM, cache_dir=tmp_path, batch_size=8)
    assert vectors.shape == (20, 384) and vectors.dtype == torch.float32
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(20))
    assert len(list((tmp_path / "embeddings").glob("all-MiniLM-L6-v2-*.pt"))) == 1

    monkeypatch.setattr(embed, "load_model", refuse_to_load)
    torch.testing.assert_close(embed_texts(texts, model=MINILM, cache_dir=tmp_path), vectors)
    with pytest.raises(ModelLoaded):  # one changed text is a miss
        embed_texts(texts[:-1] + [texts[-1] + "!"], model=MINILM, cache_dir=tmp_path)
    with pytest.raises(ModelLoaded):  # the same weights named by path are another model identity: a miss
        embed_texts(texts, model=embed.resolve_model(MINILM, tmp_path), cache_dir=tmp_path)


def test_cache_key_depends_on_model_and_every_text():
    base = cache_key("m", ["a", "b"])
    assert base == cache_key("m", ["a", "b"])
    assert len({base, cache_key("n", ["a", "b"]), cache_key("m", ["ab"]), cache_key("m", ["b", "a"])}) == 4


class FakeEncoder:
    """Embeds a text as [len, 1] normalized: order mistakes show up as wrong rows."""

    def encode(self, texts, **kwargs):
        raw = torch.tensor([[float(len(t)), 1.0] for t in texts])
        return torch.nn.functional.normalize(raw, dim=1)


def test_length_sorted_encoding_restores_input_order():
    texts = ["ccc", "a", "bbbbb", "dd", "eeee"]
    batches = length_sorted_batches(texts, 2)
    assert [[len(texts[i]) for i in b] for b in batches] == [[5, 4], [3, 2], [1]]
    expected = torch.nn.functional.normalize(torch.tensor([[float(len(t)), 1.0] for t in texts]), dim=1)
    torch.testing.assert_close(encode(FakeEncoder(), texts, batch_size=2), expected)


def test_assemble_mpnet_joins_parts_in_order_and_checks_size(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 100)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
    blob = buffer.getvalue()
    parts = []
    for i, start in enumerate(range(0, len(blob), 90)):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(blob[start : start + 90])
    target = assemble_mpnet(tmp_path / "cache", parts=parts, expected_bytes=100)
    assert (target / "model.safetensors").read_bytes() == b"x" * 100
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == ["all-mpnet-base-v2"]
    assert assemble_mpnet(tmp_path / "cache", parts=[], expected_bytes=100) == target  # already there
    with pytest.raises(RuntimeError, match="not 101 bytes"):
        assemble_mpnet(tmp_path / "cache", parts=parts, expected_bytes=101)
