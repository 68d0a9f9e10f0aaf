import pytest


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
