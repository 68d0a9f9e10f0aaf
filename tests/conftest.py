import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gin  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_gin():
    """Every test starts with no gin bindings."""
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One CPU thread for every test and every shared fixture. Tiny tensors: on a shared 2-core machine,
    OpenMP hand-offs cost far more than the math. Exactness also holds only for a fixed thread count: with
    2 threads the logged per-level decoder losses were seen to differ in their last float bits between
    identical runs (docs/status.md: known gaps); tests/entry/test_reliability.py passes this count to its
    subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory):
    """One embedding cache for the session: MiniLM embeds the tiny synthetic shop once."""
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture(scope="session")
def debug_stage1(tmp_path_factory, embed_cache):
    """A finished one-process stage-1 run of configs/rqvae_debug.gin, shared read-only by stage-2 tests."""
    import train_rqvae

    out = tmp_path_factory.mktemp("rqvae_debug")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIGER_CACHE_DIR", str(embed_cache))
        train_rqvae.main(["configs/rqvae_debug.gin", "--gin", f'train_rqvae.out_dir = "{out}"'])
    return out
