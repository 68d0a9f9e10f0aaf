import pytest


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory):
    """One embedding cache for the session: MiniLM embeds the tiny synthetic shop once."""
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture(autouse=True)
def _cache_env(embed_cache, monkeypatch):
    monkeypatch.setenv("TIGER_CACHE_DIR", str(embed_cache))


def poison_train_step(monkeypatch, module, after: int) -> None:
    """Make `module.train_step` report a NaN loss from its (after+1)-th call on."""
    real_step, calls = module.train_step, []

    def poisoned_step(*args):
        metrics = real_step(*args)
        calls.append(1)
        return (
            {**metrics, "train/loss": metrics["train/loss"] * float("nan")} if len(calls) > after else metrics
        )

    monkeypatch.setattr(module, "train_step", poisoned_step)
