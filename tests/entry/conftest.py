import pytest


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory):
    """One embedding cache for the session: MiniLM embeds the tiny synthetic shop once."""
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture(autouse=True)
def _cache_env(embed_cache, monkeypatch):
    monkeypatch.setenv("TIGER_CACHE_DIR", str(embed_cache))
