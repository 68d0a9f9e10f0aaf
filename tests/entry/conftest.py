import pytest

import train_decoder


@pytest.fixture(autouse=True)
def _cache_env(embed_cache, monkeypatch):
    monkeypatch.setenv("TIGER_CACHE_DIR", str(embed_cache))


@pytest.fixture
def poison_train_step(monkeypatch):
    """poison_train_step(module, after): `module.train_step` reports a NaN loss from call after+1 on."""

    def poison(module, after: int) -> None:
        real_step, calls = module.train_step, []

        def poisoned_step(*args):
            metrics = real_step(*args)
            calls.append(1)
            nan = metrics["train/loss"] * float("nan")
            return {**metrics, "train/loss": nan} if len(calls) > after else metrics

        monkeypatch.setattr(module, "train_step", poisoned_step)

    return poison


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, embed_cache, debug_stage1):
    """A finished configs/decoder_debug.gin run on the shared debug stage 1; tests only add files to it."""
    rq, dec = debug_stage1, tmp_path_factory.mktemp("decoder")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIGER_CACHE_DIR", str(embed_cache))
        train_decoder.main([
            "configs/decoder_debug.gin", "--gin", f'train_decoder.out_dir = "{dec}"',
            "--gin", f'train_decoder.semantic_ids = "{rq / "semantic_ids.pt"}"',
        ])  # fmt: skip
    return dec
