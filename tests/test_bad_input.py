"""Bad input, case by case: each error names the file and line (or the gin binding), the CLI exits non-zero
without a traceback, and nothing half-written is left behind.

 1. truncated gzip                        test_truncated_gzip_names_the_file
 2. invalid JSON / Python-literal line    test_invalid_record_line_names_file_and_line
 3. empty file                            test_empty_file_names_the_file
 4. unknown item id, non-integer token    test_bad_sequence_line_names_file_and_line
 5. users with < 3 interactions           test_short_users_are_dropped_and_counted
 6. non-UTF-8 text                        test_non_utf8_names_file_and_line
 7. semantic IDs vs data / model          test_semantic_ids_*, test_resuming_on_other_semantic_ids_is_refused
 8. embedding cache of another model      test_embedding_cache_that_disagrees_is_recomputed
 9. gin bindings                          test_gin_*, test_missing_required_binding_*
10. NaN / inf loss                        tests/entry/test_train_rqvae.py::test_nan_loss_stops_and_keeps_last_
                                          good_checkpoint, tests/entry/test_train_decoder.py::test_nan_guard_
                                          keeps_checkpoint (both scripts); exit status: test_cli_exit_status
11. a user id on two lines                test_user_on_two_lines_names_the_file_and_both_lines
12. no user with enough items             test_dataset_without_usable_users_stops_before_anything_is_written
13. the value named in every message      test_every_error_names_the_value_it_is_about
14. no item metadata found                test_no_item_metadata_stops_naming_the_files_searched_unless_allowed
CLI end to end (exit 1, message, no file written): test_cli_data_error_*, test_cli_artifact_error_*.
Wrong-typed or out-of-range gin values: tests/training/test_bindings.py.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import data.embed as embed
import train_decoder
import train_rqvae
from data.amazon import load_amazon
from data.artifact import FORMAT, VERSION, SemanticIds, SemanticIdsError
from data.files import atomic_save
from data.movielens import load_movielens, load_sequence_file
from data.processed import SeqData
from data.registry import summary
from data.schema import DataFormatError, DataWarning, RawDataset, check_dataset
from tests.data.files import REVIEWS, reviews_text, write_gz, write_ml1m_root, write_p5_root
from training.checkpoint import CHECKPOINT_KEY, check_checkpoint
from training.cli import ConfigError, load_gin, run_cli
from training.decoder_setup import build
from training.guards import NonFiniteLossError
from training.retriever import load_semantic_ids

pytestmark = pytest.mark.filterwarnings("ignore::data.schema.DataWarning")  # P5 fixture: E5 has no metadata
REPO = Path(__file__).resolve().parents[1]


def p5(tmp_path: Path) -> Path:
    return write_p5_root(tmp_path / "beauty")


def raw_reviews(tmp_path: Path) -> Path:
    return write_gz(tmp_path / "raw" / "reviews_Beauty_5.json.gz", reviews_text(REVIEWS))


def ml_sequences(tmp_path: Path, text: str = "4 9 1 5\n2 5 9\n") -> tuple[Path, Path]:
    movies = write_ml1m_root(tmp_path / "ml-1m") / "movies.dat"
    return write_gz(tmp_path / "seqs.txt.gz", text), movies


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


# 1. truncated gzip -------------------------------------------------------------------------------------


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_gzip_names_the_file(tmp_path):
    root = p5(tmp_path)
    cut_in_half(root / "meta.json.gz")
    with pytest.raises(DataFormatError, match=r"meta\.json\.gz: truncated or corrupt gzip"):
        load_amazon(str(root), "beauty")
    reviews = raw_reviews(tmp_path)
    cut_in_half(reviews)
    with pytest.raises(DataFormatError, match=r"reviews_Beauty_5\.json\.gz: truncated or corrupt gzip"):
        load_amazon(str(reviews.parent), "beauty")
    seqs, movies = ml_sequences(tmp_path)
    cut_in_half(seqs)
    with pytest.raises(DataFormatError, match=r"seqs\.txt\.gz: truncated or corrupt gzip"):
        load_sequence_file(str(seqs), str(movies))


# 2. invalid JSON / Python-literal line -----------------------------------------------------------------


def test_invalid_record_line_names_file_and_line(tmp_path):
    root = p5(tmp_path)
    write_gz(root / "meta.json.gz", "{'asin': 'A1'}\n\n{'asin': 'B2', 'title': 'unclosed'\n")
    with pytest.raises(DataFormatError, match=r"meta\.json\.gz:3: neither JSON nor a Python literal"):
        load_amazon(str(root), "beauty")
    (root / "datamaps.json").write_text('{"id2item":\n {"1": "A1",\n  "2" "B2"}}\n')
    with pytest.raises(DataFormatError, match=r"datamaps\.json:3: not valid JSON"):
        load_amazon(str(root), "beauty")
    reviews = raw_reviews(tmp_path)
    write_gz(reviews, reviews_text(REVIEWS[:1]) + '{"reviewerID": "u1", "asin": }\n')
    with pytest.raises(DataFormatError, match=r"reviews_Beauty_5\.json\.gz:2: neither JSON"):
        load_amazon(str(reviews.parent), "beauty")


# 3. empty file -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sequential_data.txt", "datamaps.json", "meta.json.gz", "reviews", "movies.dat", "ratings.dat"]
)
def test_empty_file_names_the_file(tmp_path, name):
    if name in ("movies.dat", "ratings.dat"):
        root = write_ml1m_root(tmp_path / "ml-1m")
        (root / name).write_bytes(b"\n  \n")  # blank lines only count as empty
        load = lambda: load_movielens(str(root), "ml-1m")  # noqa: E731
    elif name == "reviews":
        root, name = raw_reviews(tmp_path).parent, "reviews_Beauty_5.json.gz"
        write_gz(root / name, "")
        load = lambda: load_amazon(str(root), "beauty")  # noqa: E731
    else:
        root = p5(tmp_path)
        write_gz(root / name, "") if name.endswith(".gz") else (root / name).write_text("")
        load = lambda: load_amazon(str(root), "beauty")  # noqa: E731
    with pytest.raises(DataFormatError, match=rf"{name}: the file is empty"):
        load()


# 4. unknown item ids, non-integer tokens ---------------------------------------------------------------


def test_bad_sequence_line_names_file_and_line(tmp_path):
    root = p5(tmp_path)
    (root / "sequential_data.txt").write_text("1 1 2 3\n2 2 6 1\n")
    with pytest.raises(DataFormatError, match=r"sequential_data\.txt:2: item id 6 is not in datamaps\.json"):
        load_amazon(str(root), "beauty")
    (root / "sequential_data.txt").write_text("1 1 2 3\n\n2 2 x3 1\n")
    with pytest.raises(DataFormatError, match=r"sequential_data\.txt:3: expected integers.*'x3'"):
        load_amazon(str(root), "beauty")
    seqs, movies = ml_sequences(tmp_path, "4 9 1 5\n2 5 77 9\n")
    with pytest.raises(DataFormatError, match=r"seqs\.txt\.gz:2: item id 77 is not in movies\.dat"):
        load_sequence_file(str(seqs), str(movies))


# 5. users with fewer than 3 interactions ---------------------------------------------------------------


def test_short_users_are_dropped_and_counted(tmp_path):
    root = p5(tmp_path)
    (root / "sequential_data.txt").write_text("1 1 2 3 4\n2 2 3 5\n3 5\n4 1 2\n")
    dataset = load_amazon(str(root), "beauty")
    assert dataset.user_ids.tolist() == [1, 2, 3, 4]  # loaders keep every user; the split drops them
    for split in ("train", "valid", "test"):
        with pytest.warns(DataWarning, match="amazon-beauty: skipped 2 users with < 3 items"):
            data = SeqData(dataset, split, max_items=20)
        assert data.skipped_users == 2
        users = {data[i][1] for i in range(len(data))}
        assert users == ({1} if split == "train" else {1, 2})  # user 2 (3 items) has no training target
    assert "2 users with < 3 items (left out of every split)" in summary(dataset)


# 6. non-UTF-8 text -------------------------------------------------------------------------------------


def test_non_utf8_names_file_and_line(tmp_path):
    root = p5(tmp_path)
    with gzip.open(root / "meta.json.gz", "wb") as f:
        f.write(b"{'asin': 'A1'}\n{'asin': 'B2'}\n{'asin': 'C3', 'title': 'Cr\xe8me'}\n")
    with pytest.raises(DataFormatError, match=r"meta\.json\.gz:3: not valid utf-8"):
        load_amazon(str(root), "beauty")
    (root / "datamaps.json").write_bytes(b'{"id2item":\n {"1": "\xe91"}}\n')
    with pytest.raises(DataFormatError, match=r"datamaps\.json:2: not valid utf-8"):
        load_amazon(str(root), "beauty")
    ml = tmp_path / "ml-32m"
    ml.mkdir()
    (ml / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,5,4.0,6\n")
    (ml / "movies.csv").write_bytes(b"movieId,title,genres\n1,Toy Story,Comedy\n5,Am\xe9lie,Comedy\n")
    with pytest.raises(DataFormatError, match=r"movies\.csv:3: not valid utf-8"):
        load_movielens(str(ml), "ml-32m")


# 7. semantic IDs that disagree with the data or the model ----------------------------------------------

K, Q = 8, 2


def artifact(n_items: int = 4, codebook_size: int = K, keys: list[str] | None = None) -> SemanticIds:
    codes = torch.arange(n_items * Q).reshape(n_items, Q) % codebook_size
    keys = keys or [f"item{i}" for i in range(n_items)]
    return SemanticIds.from_codes(codes, codebook_size, keys)


def raw_artifact(path: Path, **change) -> Path:
    """A saved artifact with fields replaced (what SemanticIds itself would refuse to build)."""
    sem = artifact()
    payload = {"format": FORMAT, "version": VERSION, "codes": sem.codes, "codebook_size": K, "n_levels": Q,
               "item_keys": sem.item_keys, "source": "", "config": "", "metrics": {}}  # fmt: skip
    torch.save({**payload, **change}, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"n_levels": 3},
            r"codes must be int64 \[I, 4\] \(C = n_levels \+ 1 with n_levels = 3\), got .* \(4, 3\)",
        ),
        ({"codebook_size": 4}, r"codes outside \[0, K = 4\)"),
        ({"item_keys": ["a", "b"]}, "2 item keys for 4 code rows"),
        ({"codes": torch.zeros(4, Q + 1, dtype=torch.int64)}, "3 code rows repeat an earlier row"),
    ],
    ids=["n_levels", "codebook_size", "item_keys", "duplicate_rows"],
)
def test_semantic_ids_with_inconsistent_k_c_or_items_name_the_file(tmp_path, change, message):
    path = raw_artifact(tmp_path / "semantic_ids.pt", **change)
    with pytest.raises(SemanticIdsError, match=rf"semantic_ids\.pt: {message}"):
        SemanticIds.load(path)


def test_semantic_ids_for_other_items_name_the_file_and_the_difference(tmp_path):
    path = tmp_path / "semantic_ids.pt"
    artifact(n_items=4).save(path)
    load_semantic_ids(str(path), [f"item{i}" for i in range(4)])  # the same items: accepted
    with pytest.raises(
        SemanticIdsError, match=r"semantic_ids\.pt .*4 items in the artifact, 5 in the dataset"
    ):
        load_semantic_ids(str(path), [f"item{i}" for i in range(5)])
    with pytest.raises(SemanticIdsError, match=r"item 2 is 'item2' in the artifact, 'other' in the dataset"):
        load_semantic_ids(str(path), ["item0", "item1", "other", "item3"])


def test_resuming_on_other_semantic_ids_is_refused(tmp_path):
    trained_on, ckpt = artifact(codebook_size=K), tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "step": 10, CHECKPOINT_KEY: trained_on.fingerprint()}, ckpt)
    before = ckpt.read_bytes()
    check_checkpoint(ckpt, artifact(codebook_size=K), "train_decoder.semantic_ids")  # same codes: accepted
    load_gin([str(REPO / "configs/decoder_debug.gin")], [])
    other = artifact(codebook_size=2 * K)  # K differs; so do the codes
    with pytest.raises(
        SemanticIdsError,
        match=rf"checkpoint\.pt was trained on other semantic IDs than "
        rf"train_decoder\.semantic_ids: codebook_size {K} in the checkpoint, {2 * K} now",
    ):
        build(other, 20, lambda step: 1.0, ckpt)  # before the checkpoint is loaded
    with pytest.raises(SemanticIdsError, match="n_items 4 in the checkpoint, 5 now"):
        check_checkpoint(ckpt, artifact(n_items=5), "train_decoder.semantic_ids")
    assert ckpt.read_bytes() == before


# 8. an embedding cache of another model, dimension or item count ---------------------------------------


class FakeEncoder:
    """[len(text), 1] normalised: deterministic, and any row mix-up shows."""

    def encode(self, texts, **kwargs):
        return torch.nn.functional.normalize(torch.tensor([[float(len(t)), 1.0] for t in texts]), dim=1)


def corrupt_cache(payload: dict, how: str) -> dict | bytes:
    emb = payload["embeddings"]
    return {
        "other model": {**payload, "key": "0" * 64, "identity": "hub:another-model"},
        "other item count": {**payload, "embeddings": emb[:-1]},
        "other dim": {**payload, "dim": 3},
        "non-finite": {**payload, "embeddings": emb * float("nan")},
        "unreadable": b"half a file",
    }[how]


@pytest.mark.parametrize(
    "how, reason",
    [
        ("other model", "written for another model or other texts"),
        ("other item count", r"holds torch.float32 \(2, 2\), expected float32 \[3, E\]"),
        ("other dim", "dimension 2, expected 3"),
        ("non-finite", "non-finite values"),
        ("unreadable", "unreadable"),
    ],
    ids=["other_model", "other_item_count", "other_dim", "non_finite", "unreadable"],
)
def test_embedding_cache_that_disagrees_is_recomputed(tmp_path, monkeypatch, how, reason):
    loads = []
    monkeypatch.setattr(embed, "load_model", lambda *args: loads.append(1) or FakeEncoder())
    texts = ["a", "bbb", "cc"]
    good = embed.embed_texts(texts, model="fake-model", cache_dir=tmp_path)
    (path,) = (tmp_path / "embeddings").glob("*.pt")
    bad = corrupt_cache(torch.load(path, weights_only=True), how)
    path.write_bytes(bad) if isinstance(bad, bytes) else torch.save(bad, path)
    with pytest.warns(DataWarning, match=rf"embedding cache .*{path.name} not used, recomputing: {reason}"):
        again = embed.embed_texts(texts, model="fake-model", cache_dir=tmp_path)
    torch.testing.assert_close(again, good)
    assert len(loads) == 2
    torch.testing.assert_close(embed.embed_texts(texts, model="fake-model", cache_dir=tmp_path), good)
    assert len(loads) == 2  # the rewritten file is a valid hit


def test_embedding_cache_with_the_wrong_dim_for_a_known_model_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setattr(embed, "load_model", lambda *args: FakeEncoder())
    texts = ["a", "bbb"]
    identity = embed.model_identity(embed.MINILM)
    path = embed.cache_path(tmp_path, identity, embed.cache_key(identity, texts))
    key = embed.cache_key(identity, texts)
    atomic_save({"key": key, "identity": identity, "n_texts": 2, "embeddings": torch.ones(2, 2)}, path)
    with pytest.warns(DataWarning, match="dimension 2, expected 384"):
        embed.embed_texts(texts, model=embed.MINILM, cache_dir=tmp_path)


# 9. gin bindings: misspelt, unknown, denylisted, missing -----------------------------------------------


def cli(capsys, main, *argv: str) -> str:
    """Runs `main` as the command line does; returns stderr after asserting exit status 1 and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, list(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "error: " in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "binding, named",
    [
        ("train_decoder.iteratons = 5", "doesn't have a parameter named 'iteratons'"),
        ("RetrievalModel.d_modle = 3", "doesn't have a parameter named 'd_modle'"),
        ("NoSuchThing.x = 1", "No configurable matching 'NoSuchThing'"),
        ("RetrievalModel.codebook_size = 8", "denylisted kwarg 'codebook_size'"),  # K comes from the artifact
        ("load_synthetic.n_items = %gin.REQUIRED", "load_synthetic.n_items set to `%gin.REQUIRED`"),
    ],
    ids=["misspelt_param", "misspelt_class_param", "unknown_configurable", "denylisted", "left_required"],
)
def test_gin_binding_errors_exit_non_zero_naming_the_binding(capsys, binding, named):
    err = cli(capsys, train_decoder.main, "configs/decoder_debug.gin", "--gin", binding)
    assert named in err


def test_gin_file_errors_name_the_file(tmp_path, capsys):
    assert "not found: nope.gin" in cli(capsys, train_rqvae.main, "nope.gin")
    broken = tmp_path / "broken.gin"
    broken.write_text("train_rqvae.iterations = = 3\n")
    assert f"in gin file {broken}" in cli(capsys, train_rqvae.main, str(broken))


@pytest.mark.parametrize("script", ["train_rqvae", "train_decoder"])
def test_missing_required_binding_exits_non_zero_naming_it(tmp_path, capsys, script):
    config = tmp_path / "no_out_dir.gin"
    config.write_text(f"include '{REPO}/configs/data/synthetic_tiny.gin'\ntrain_decoder.semantic_ids = 'x'\n")
    err = cli(capsys, {"train_rqvae": train_rqvae, "train_decoder": train_decoder}[script].main, str(config))
    assert f"missing required gin binding {script}.out_dir" in err
    assert f"--gin '{script}.out_dir = ...'" in err


@pytest.mark.parametrize(
    "binding, named",
    [
        (
            "train_rqvae.tokenizer = 'kmeans'",
            "gin binding train_rqvae.tokenizer = 'kmeans': must be one of ['rqvae', 'rq_kmeans']",
        ),
        ("train_rqvae.eval_every = 25", "train_rqvae.eval_every = 25 must be a positive multiple"),
    ],
    ids=["bad_choice", "interval_off_the_log_grid"],
)
def test_bad_loop_settings_exit_non_zero_naming_the_binding(tmp_path, capsys, binding, named):
    out = f"train_rqvae.out_dir = '{tmp_path / 'run'}'"
    err = cli(capsys, train_rqvae.main, "configs/rqvae_debug.gin", "--gin", out, "--gin", binding)
    assert named in err


def test_load_gin_names_a_binding_left_required():
    with pytest.raises(ConfigError, match="load_synthetic.n_items set to `%gin.REQUIRED`"):
        load_gin([str(REPO / "configs/rqvae_debug.gin")], ["load_synthetic.n_items = %gin.REQUIRED"])


# CLI end to end: exit status 1, the file named, no file written ----------------------------------------


def test_cli_data_error_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    root, out = p5(tmp_path), tmp_path / "run"
    cut_in_half(root / "meta.json.gz")
    bindings = [
        f'train_rqvae.out_dir = "{out}"',
        "build_dataset.loader = @load_amazon",
        f'load_amazon.root = "{root}"',
        'load_amazon.category = "beauty"',
    ]
    argv = ["configs/rqvae_debug.gin", *sum((["--gin", b] for b in bindings), [])]
    err = cli(capsys, train_rqvae.main, *argv)
    assert "meta.json.gz: truncated or corrupt gzip" in err and "(in configurable load_amazon)" in err
    assert " at 0x" not in err  # gin's repr of the function is dropped
    assert files_under(out) == []


def test_cli_artifact_error_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    sem_path, out = tmp_path / "semantic_ids.pt", tmp_path / "run"
    artifact(n_items=3).save(sem_path)  # configs/decoder_debug.gin has 200 items
    bindings = [f'train_decoder.out_dir = "{out}"', f'train_decoder.semantic_ids = "{sem_path}"']
    argv = ["configs/decoder_debug.gin", *sum((["--gin", b] for b in bindings), [])]
    assert "3 items in the artifact, 200 in the dataset" in cli(capsys, train_decoder.main, *argv)
    assert files_under(out) == []


# 10. exit status of a run stopped by the NaN guard; bugs keep their traceback --------------------------


def test_cli_exit_status(capsys):
    def stopped(argv):
        raise NonFiniteLossError("non-finite values {'train/loss': nan} at step 20; training stopped.")

    assert "step 20" in cli(capsys, stopped)

    def buggy(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # not an input error: the traceback is kept
        run_cli(buggy, [])


# 11. a user id on two lines of a sequence file ---------------------------------------------------------


def test_user_on_two_lines_names_the_file_and_both_lines(tmp_path):
    root = p5(tmp_path)
    (root / "sequential_data.txt").write_text("1 1 2 3\n2 2 3 4\n\n1 5 4\n")
    with pytest.raises(
        DataFormatError, match=r"sequential_data\.txt:4: user 1 already has a sequence on line 1"
    ):
        load_amazon(str(root), "beauty")
    seqs, movies = ml_sequences(tmp_path, "4 9 1 5\n2 5 9\n4 1 5\n")
    with pytest.raises(DataFormatError, match=r"seqs\.txt\.gz:3: user 4 already has a sequence on line 1"):
        load_sequence_file(str(seqs), str(movies))
    seqs = [np.array([0, 1, 0]), np.array([1, 0]), np.array([0])]
    dataset = RawDataset("toy", seqs, np.array([5, 6, 5]), ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match=r"toy: user id 5 is in rows 0 and 2"):  # every loader's last check
        check_dataset(dataset)


# 12. a dataset with no usable user ---------------------------------------------------------------------


def amazon_bindings(root: Path) -> list[str]:
    bindings = ["build_dataset.loader = @load_amazon", f'load_amazon.root = "{root}"']
    return sum((["--gin", b] for b in [*bindings, 'load_amazon.category = "beauty"']), [])


@pytest.mark.parametrize("lengths, message", [
    ((2, 1, 2), "amazon-beauty: no user has at least 3 items (the longest history has 2)"),
    ((3, 3, 2), "amazon-beauty: the train split has no examples: it needs a user with at least 4 items"),
], ids=["all_below_3", "no_training_example"])  # fmt: skip
def test_dataset_without_usable_users_stops_before_anything_is_written(tmp_path, capsys, lengths, message):
    root, out = p5(tmp_path), tmp_path / "run"
    lines = [" ".join(map(str, [user, *range(1, n + 1)])) for user, n in enumerate(lengths, start=1)]
    (root / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    sem_path = tmp_path / "semantic_ids.pt"
    SemanticIds.from_codes(torch.arange(10).reshape(5, 2) % K, K, ["A1", "B2", "C3", "D4", "E5"]).save(
        sem_path
    )
    decoder = ["configs/decoder_debug.gin", "--gin", f"train_decoder.out_dir = '{out}'"]
    decoder += ["--gin", f"train_decoder.semantic_ids = '{sem_path}'", *amazon_bindings(root)]
    assert message in cli(capsys, train_decoder.main, *decoder)
    if lengths == (2, 1, 2):  # stage 1 only needs items, but such a dataset can never be evaluated
        rqvae = ["configs/rqvae_debug.gin", "--gin", f"train_rqvae.out_dir = '{out}'", *amazon_bindings(root)]
        assert message in cli(capsys, train_rqvae.main, *rqvae)
    assert files_under(out) == []


TOO_SMALL = {  # id: (stage, extra binding, what the message must contain)
    "rqvae_batch": ("rqvae", "train_rqvae.batch_size = 4096", "training examples: lower it"),
    "rqvae_codebook": ("rqvae", "train_rqvae.batch_size = 2", "codebook_size 32 needs at least 32 training"),
    "rq_kmeans_codebook": ("rqvae", "train_rqvae.tokenizer = 'rq_kmeans'", "needs at least"),
    "decoder_batch": ("decoder", "train_decoder.batch_size = 32", "training examples: lower it"),
}


@pytest.mark.parametrize("case", TOO_SMALL)
def test_split_too_small_for_the_config_stops_before_anything_is_written(tmp_path, capsys, case):
    stage, binding, message = TOO_SMALL[case]
    root, out = p5(tmp_path), tmp_path / "run"
    lines = [" ".join(map(str, [user, *range(1, 6)])) for user in (1, 2, 3)]  # 3 users x 5 items
    (root / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    if stage == "rqvae":
        argv = ["configs/rqvae_debug.gin", "--gin", f"train_rqvae.out_dir = '{out}'", *amazon_bindings(root)]
        err = cli(capsys, train_rqvae.main, *argv, "--gin", binding)
    else:
        sem_path = tmp_path / "semantic_ids.pt"
        codes = torch.arange(10).reshape(5, 2) % K
        SemanticIds.from_codes(codes, K, ["A1", "B2", "C3", "D4", "E5"]).save(sem_path)
        argv = ["configs/decoder_debug.gin", "--gin", f"train_decoder.out_dir = '{out}'"]
        argv += ["--gin", f"train_decoder.semantic_ids = '{sem_path}'", *amazon_bindings(root)]
        err = cli(capsys, train_decoder.main, *argv, "--gin", binding)  # 3 users x 2 training prefixes
    assert message in err
    assert files_under(out) == []


# 13. every error names the value it is about -----------------------------------------------------------

HUGE = "99999999999999999999999"


VALUE_CASES = {  # id: (file, text written to it, what the message must contain)
    "huge_item": (
        "sequential_data.txt",
        f"1 1 2\n2 1 {HUGE} 3\n",
        f":2: item id (token 3) {HUGE} does not fit",
    ),
    "huge_user": (
        "sequential_data.txt",
        f"1 1 2\n{HUGE} 1 3\n",
        f"sequential_data.txt:2: user id {HUGE} does",
    ),
    "datamaps_disagree": (
        "datamaps.json",
        '{"id2item": {"1": "A1"}, "item2id": {"B2": "1"}}',
        "disagree on item id 1: 'A1' vs 'B2'",
    ),
    "datamaps_gap": (
        "datamaps.json",
        '{"id2item": {"1": "A1", "3": "C3"}}',
        "item id 3 is there and 2 is not",
    ),
    "meta_no_asin": (
        "meta.json.gz",
        "{'asin': 'A1'}\n{'title': 'x'}\n",
        ":2: record has no 'asin' (keys: ['title'])",
    ),
    "movies_line": (
        "movies.dat",
        "1::Toy Story::Comedy\n5::Heat\n",
        "movies.dat:2: expected `MovieID::Title::",
    ),
    "ratings_field": ("ratings.dat", "1::1::5::100\n1::5::4::soon\n", "timestamp fields, got time 'soon'"),
    "review_time": (
        "reviews",
        '{"reviewerID": "u1", "asin": "X", "unixReviewTime": "yesterday"}\n',
        "unixReviewTime must be an integer, got 'yesterday'",
    ),
}


@pytest.mark.parametrize("file, text, named", VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_every_error_names_the_value_it_is_about(tmp_path, file, text, named):
    if file in ("movies.dat", "ratings.dat"):
        root = write_ml1m_root(tmp_path / "ml-1m")
        (root / file).write_text(text, encoding="iso-8859-1")
        load = lambda: load_movielens(str(root), "ml-1m")  # noqa: E731
    elif file == "reviews":
        root = raw_reviews(tmp_path).parent
        write_gz(root / "reviews_Beauty_5.json.gz", text)
        load = lambda: load_amazon(str(root), "beauty")  # noqa: E731
    else:
        root = p5(tmp_path)
        write_gz(root / file, text) if file.endswith(".gz") else (root / file).write_text(text)
        load = lambda: load_amazon(str(root), "beauty")  # noqa: E731
    with pytest.raises(DataFormatError) as err:
        load()
    assert named in str(err.value)


# 14. metadata that is not found ------------------------------------------------------------------------


def test_no_item_metadata_stops_naming_the_files_searched_unless_allowed(tmp_path, capsys):
    root, out = p5(tmp_path), tmp_path / "run"
    (root / "meta.json.gz").rename(root / "Beauty_item2attributes.json")  # a name the loader does not read
    searched = "looked for meta.json.gz, meta_Beauty.json.gz, derived/item_meta_by_asin.jsonl.gz"
    with pytest.raises(DataFormatError, match="5 of 5 items have no metadata") as err:
        load_amazon(str(root), "beauty")
    assert searched in str(err.value) and "not read: Beauty_item2attributes.json" in str(err.value)
    assert "load_amazon.allow_missing_metadata = True" in str(err.value)
    rqvae = ["configs/rqvae_debug.gin", "--gin", f"train_rqvae.out_dir = '{out}'", *amazon_bindings(root)]
    assert searched in cli(capsys, train_rqvae.main, *rqvae)
    assert not out.exists()
    with pytest.warns(DataWarning, match=f"5 of 5 items have no metadata .*{searched}"):
        dataset = load_amazon(str(root), "beauty", allow_missing_metadata=True)  # the user opted in
    assert dataset.item_texts == [f"ASIN: {asin}" for asin in dataset.item_keys]
    write_gz(root / "meta.json.gz", "{'asin': 'Z9', 'title': 'another catalogue'}\n")
    with pytest.raises(DataFormatError, match=r"5 of 5 items have no metadata in .*meta\.json\.gz"):
        load_amazon(str(root), "beauty")
