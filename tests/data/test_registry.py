from pathlib import Path

import gin
import pytest

from data.processed import SeqData
from data.registry import build_dataset
from tests.data.files import write_gz
from training.show_data import main

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "data"


def fixture_bindings(
    config: Path, p5_root: Path, ml1m_root: Path, ml32m_root: Path, tmp_path: Path
) -> list[str]:
    """Point each config's paths at the tiny test files."""
    text = config.read_text()
    if "load_amazon" in text:
        return [f'load_amazon.root = "{p5_root}"']
    if "load_sequence_file" in text:
        path = write_gz(tmp_path / "seq.txt.gz", "1 1 5 9\n2 9 1\n")
        return [
            f'load_sequence_file.path = "{path}"',
            f'load_sequence_file.movies_path = "{ml1m_root}/movies.dat"',
        ]
    if "load_movielens" in text:
        return [f'load_movielens.root = "{ml32m_root}"']
    return []


@pytest.mark.filterwarnings("ignore::data.schema.DataWarning")  # the P5 fixture has one item without metadata
@pytest.mark.parametrize("config", sorted(CONFIG_DIR.glob("*.gin")), ids=lambda p: p.stem)
def test_every_data_config_parses_and_builds(config, p5_root, ml1m_root, ml32m_root, tmp_path):
    assert config.read_text().startswith("#"), "each config starts with a header comment"
    bindings = fixture_bindings(config, p5_root, ml1m_root, ml32m_root, tmp_path)
    gin.parse_config_files_and_bindings([str(config)], bindings)
    data = build_dataset()
    assert len(data.sequences) == len(data.user_ids) > 0 and len(data.item_texts) == len(data.item_keys) > 0
    max_items = gin.query_parameter("SeqData.max_items")
    assert max_items in (20, 200) and gin.query_parameter("item_embeddings.model")
    assert SeqData(data, "test").max_items == max_items  # the one binding reaches SeqData


def test_main_prints_counts(capsys):
    data = main([str(CONFIG_DIR / "synthetic_tiny.gin")])
    out = capsys.readouterr().out
    assert f"{len(data.sequences):,} users / {len(data.item_keys):,} items" in out
