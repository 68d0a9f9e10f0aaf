"""Every config parses with both entry scripts' configurables registered, and its models build."""

import re
from pathlib import Path

import gin
import pytest
import torch

import train_decoder  # noqa: F401  (registers train_decoder and the stage-2 configurables)
import train_rqvae  # noqa: F401
from data.artifact import SemanticIds
from evaluate import sasrec  # noqa: F401  (registers train_sasrec and SasRec)
from modules.decoder_only import DecoderOnlyModel
from modules.model import RetrievalModel
from modules.rq_kmeans import RqKMeans
from modules.rqvae import RqVae
from modules.sasrec import SasRec
from training.bindings import resolve_macros
from training.cli import load_gin
from training.retriever import make_model

CONFIGS = sorted(str(p) for p in Path("configs").glob("*.gin"))


@pytest.fixture(autouse=True)
def fresh_search_path():
    """load_gin adds each config's folder to gin's include search path, which outlives the call; start every
    test from a fresh process's path so an include only resolves the way a real run resolves it."""
    saved = list(gin.config._LOCATION_PREFIXES)
    gin.config._LOCATION_PREFIXES[:] = [""]
    yield
    gin.config._LOCATION_PREFIXES[:] = saved


def test_every_stage_has_configs():
    names = {Path(c).name for c in CONFIGS}
    for needed in ("rqvae_amazon.gin", "decoder_amazon.gin", "rqvae_ml1m.gin", "decoder_ml1m.gin",
                   "rqvae_ml32m.gin", "decoder_ml32m.gin", "decoder_amazon_paper.gin"):  # fmt: skip
        assert needed in names


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses_and_builds(config):
    load_gin([config], [])
    header = Path(config).read_text().splitlines()[0]
    assert header.startswith("# "), f"{config} lacks its header comment"
    assert callable(gin.query_parameter("build_dataset.loader").scoped_configurable_fn)
    if Path(config).name.startswith("rqvae_"):
        assert gin.query_parameter("train_rqvae.out_dir")
        model = (
            RqVae(input_dim=32) if gin.query_parameter("train_rqvae.tokenizer") == "rqvae" else RqKMeans(32)
        )
        assert model.codebook_size > 1
    elif Path(config).name.startswith("sasrec_"):
        assert gin.query_parameter("train_sasrec.out_dir")
        assert sum(p.numel() for p in SasRec(n_items=10).parameters()) > 0
    else:
        artifact = resolve_macros(gin.query_parameter("train_decoder.semantic_ids"))  # %SEMANTIC_IDS
        assert artifact.endswith("semantic_ids.pt")
        model = RetrievalModel(codebook_size=8, n_codes=4, max_items=gin.query_parameter("SeqData.max_items"))
        assert sum(p.numel() for p in model.parameters()) > 0


RECIPES = sorted(
    str(p)
    for p in Path("configs/recipes").glob("*.gin")
    if not p.stem.endswith("_protocol") and not p.stem.startswith(("decoder_only", "sasrec"))
)  # the recipe study's files; the decoder-only recipes count their budget in targets (tests below),
# the SASRec recipe is a baseline's, not a stage-2 one


def test_decoder_only_recipe_builds_its_model_and_counts_targets():
    """Its budget is ≈ 1.0 M training targets: windows of max_items + 1 items, ≈ 5.57 targets each."""
    load_gin(["configs/decoder_amazon_paper.gin", "configs/recipes/decoder_only.gin"], [])
    assert gin.query_parameter("SeqData.train_examples") == "windows"
    sem = SemanticIds(torch.zeros(3, 4, dtype=torch.long) + torch.arange(3)[:, None], 8, 3, ["a", "b", "c"])
    model = make_model(sem, gin.query_parameter("SeqData.max_items"))
    assert isinstance(model, DecoderOnlyModel) and model.every_target and len(model.layers) == 8
    steps, batch = (gin.query_parameter(f"train_decoder.{k}") for k in ("iterations", "batch_size"))
    assert abs(steps * batch * 131_413 / 23_607 - 1_000_000) < 2_000  # Beauty: targets / windows


def test_grouped_decoder_only_recipe_only_adds_length_groups_and_a_longer_budget():
    load_gin(["configs/decoder_amazon_paper.gin", "configs/recipes/decoder_only_grouped.gin"], [])
    assert gin.query_parameter("train_decoder.length_groups") == 8
    assert gin.query_parameter("SeqData.train_examples") == "windows"
    assert gin.query_parameter("adamw.lr") == 0.001  # decoder_only.gin's optimizer, unchanged
    steps, batch = (gin.query_parameter(f"train_decoder.{k}") for k in ("iterations", "batch_size"))
    assert steps * batch == 384_000 and steps % gin.query_parameter("train_decoder.eval_every") == 0


def test_wsd_recipe_decays_to_zero_at_its_last_step_after_the_grouped_runs_constant_phase():
    load_gin(["configs/decoder_amazon_paper.gin", "configs/recipes/decoder_only_grouped_wsd.gin"], [])
    schedule = gin.query_parameter("train_decoder.schedule").scoped_configurable_fn
    steps = gin.query_parameter("train_decoder.iterations")
    start = gin.query_parameter("warmup_stable_decay.decay_start")
    assert start + gin.query_parameter("warmup_stable_decay.decay_steps") == steps
    assert [schedule(s) for s in (100, start)] == [1.0, 1.0] and schedule(steps) == 0.0
    assert gin.query_parameter("train_decoder.length_groups") == 8  # decoder_only_grouped's batches
    assert start % gin.query_parameter("train_decoder.eval_every") == 0  # the grouped run's last step


def changed_bindings(base_recipe: str, recipe: str) -> set[str]:
    """The bindings whose values differ between two recipes on decoder_amazon_paper.gin (`recipe` is left
    loaded for further queries)."""
    load_gin(["configs/decoder_amazon_paper.gin", f"configs/recipes/{base_recipe}"], [])
    base = gin.config_str()
    load_gin(["configs/decoder_amazon_paper.gin", f"configs/recipes/{recipe}"], [])
    changed = set(gin.config_str().splitlines()) ^ set(base.splitlines())
    return {line.split(" = ")[0] for line in changed}


def test_dropout_recipe_changes_only_the_dropout_of_the_grouped_run_at_its_2500_step_budget():
    changed = changed_bindings("decoder_only_grouped.gin", "decoder_only_grouped_dropout0.2.gin")
    assert gin.query_parameter("DecoderOnlyModel.dropout") == 0.2
    assert gin.query_parameter("train_decoder.iterations") == 2500  # the 2,500-step grouped row's budget
    assert changed == {"DecoderOnlyModel.dropout", "train_decoder.iterations"}


def test_dropout_0_3_recipe_changes_only_the_dropout_of_the_dropout_0_2_recipe():
    changed = changed_bindings("decoder_only_grouped_dropout0.2.gin", "decoder_only_grouped_dropout0.3.gin")
    assert gin.query_parameter("DecoderOnlyModel.dropout") == 0.3
    assert changed == {"DecoderOnlyModel.dropout"}


def test_label_smoothing_recipe_changes_only_the_smoothing_of_the_dropout_0_2_recipe():
    changed = changed_bindings(
        "decoder_only_grouped_dropout0.2.gin", "decoder_only_grouped_label_smoothing0.1.gin"
    )
    assert gin.query_parameter("DecoderOnlyModel.label_smoothing") == 0.1
    assert changed == {"DecoderOnlyModel.label_smoothing"}


def test_twelve_block_recipe_changes_only_the_depth_of_the_dropout_0_2_recipe():
    changed = changed_bindings(
        "decoder_only_grouped_dropout0.2.gin", "decoder_only_grouped_dropout0.2_layers12.gin"
    )
    assert gin.query_parameter("DecoderOnlyModel.n_layers") == 12
    assert changed == {"DecoderOnlyModel.n_layers"}


def test_sub_sequence_recipe_without_user_token_changes_only_the_user_token_of_the_sub_sequence_recipe():
    changed = changed_bindings("subsequences.gin", "subsequences_no_user.gin")
    assert gin.query_parameter("RetrievalModel.user_buckets") == 0
    assert gin.query_parameter("SeqData.train_examples") == "subsequence"
    assert changed == {"RetrievalModel.user_buckets"}


@pytest.mark.parametrize("protocol", sorted(Path("configs/recipes").glob("*_protocol.gin")))
def test_protocols_compose_after_a_recipe(protocol):
    load_gin(["configs/decoder_amazon_paper.gin", "configs/recipes/constant_lr1e-3.gin", str(protocol)], [])
    assert (
        gin.query_parameter("train_decoder.eval_every") % gin.query_parameter("train_decoder.log_every") == 0
    )
    assert gin.query_parameter("adamw.lr") == 0.001  # a protocol never changes what the recipe learns


def test_ml1m_protocol_binds_what_the_ml1m_row_ran_as_flags():
    model = ["configs/decoder_ml1m_paper.gin", "configs/recipes/decoder_only_grouped_dropout0.2.gin"]
    flags = [
        "SeqData.max_items = 20",
        "train_decoder.eval_every = 200",
        "train_decoder.patience = 4",
        "train_decoder.iterations = 4000",
    ]  # the flags of docs/results/ml1m-cpu-*_4000.json's command (--decoder-steps sets the iterations)
    load_gin(model, flags)
    ran = gin.config_str()
    load_gin([*model, "configs/recipes/ml1m_cpu_protocol.gin"], [])
    assert gin.config_str() == ran
    every = {k: gin.query_parameter(f"train_decoder.{k}") for k in ("eval_every", "ckpt_every")}
    assert every["eval_every"] % every["ckpt_every"] == 0


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_with_the_paper_model_at_the_study_budget(recipe):
    load_gin(["configs/decoder_amazon_paper.gin", recipe], [])
    assert Path(recipe).read_text().startswith("# Recipe")
    steps, batch = (gin.query_parameter(f"train_decoder.{k}") for k in ("iterations", "batch_size"))
    assert abs(steps * batch - 1_000_000) < 1_100  # one budget of training examples for every recipe
    assert gin.query_parameter("train_decoder.eval_users") is not None  # a seeded sample, not the first N
    schedule = gin.query_parameter("train_decoder.schedule").selector
    if schedule == "warmup_cosine":
        assert gin.query_parameter("warmup_cosine.total_steps") == steps
    model = RetrievalModel(codebook_size=8, n_codes=4, max_items=gin.query_parameter("SeqData.max_items"))
    assert model.label_smoothing == (0.1 if "smoothing" in recipe else 0.0)


INCLUDE = re.compile(r"^include '([^']+)'", re.MULTILINE)


def included(config: Path) -> list[Path]:
    """Every file `config` includes, recursively, resolved as training.cli.load_gin resolves them when the
    top-level file lives in configs/ (include paths are relative to configs/, or to the including file's
    folder for the recipes' sibling includes)."""
    found = []
    for name in INCLUDE.findall(config.read_text()):
        path = next(p for p in (config.parent / name, Path("configs") / name) if p.is_file())
        found += [path, *included(path)]
    return found


DATASET_OF = {"amazon": "amazon_beauty", "toys": "amazon_toys", "sports": "amazon_sports", "ml1m": "ml1m",
              "ml32m": "ml32m", "demo": "synthetic_demo", "debug": "synthetic_tiny"}  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_config_reads_the_dataset_its_name_says(config):
    """An entry file composes one dataset file, the one its name names (no Beauty file under a Toys run)."""
    datasets = {p.stem for p in included(Path(config)) if p.parent.name == "data"}
    word = Path(config).stem.split("_")[1]  # rqvae_toys_paper -> toys
    assert datasets == {DATASET_OF[word]}


@pytest.mark.parametrize("piece", sorted(Path("configs").glob("[mt]*/*.gin")))
def test_model_and_training_pieces_are_leaves_with_a_header(piece):
    """configs/model and configs/train hold one concern each: no includes, no dataset, no run directory."""
    text = piece.read_text()
    assert text.startswith("# ") and "Command:" in text and "Validated:" in text
    assert not INCLUDE.search(text)
    keys = [line.split("=")[0].strip() for line in text.splitlines() if line and not line.startswith("#")]
    assert not [k for k in keys if k.endswith(".out_dir") or k.split(".")[0] in {"build_dataset", "SeqData"}]
    if piece.parent.name == "model":
        assert {k.split(".")[0] for k in keys} <= {"RqVae", "Quantize", "RetrievalModel", "SasRec"}


def binding(f: Path, key: str) -> list[Path]:
    """[f] for each line of f that binds `key` (comments and other keys ignored)."""
    return [f for line in f.read_text().splitlines() if line.split("=")[0].strip() == key]


@pytest.mark.parametrize("config", [c for c in CONFIGS if Path(c).name.startswith("decoder_")])
def test_stage1_artifact_is_one_macro_bound_once_per_dataset(config):
    """train_decoder.semantic_ids is bound in one place, train/decoder.gin, to %SEMANTIC_IDS; each dataset
    binds SEMANTIC_IDS once (its paper variant includes the file that does), to the semantic_ids.pt that its
    rqvae_ config writes."""
    files = [Path(config), *included(Path(config))]
    binds = [found for f in files for found in binding(f, "SEMANTIC_IDS")]
    assert len(binds) == 1
    assert {found for f in files for found in binding(f, "train_decoder.semantic_ids")} == {
        Path("configs/train/decoder.gin")
    }
    load_gin([config], [])
    artifact = resolve_macros(gin.query_parameter("train_decoder.semantic_ids"))
    rqvae = Path("configs") / binds[0].name.replace("decoder_", "rqvae_")
    load_gin([str(rqvae)], [])
    assert artifact == gin.query_parameter("train_rqvae.out_dir") + "/semantic_ids.pt"


@pytest.mark.parametrize("config", sorted(Path("configs").glob("sasrec_*_ce.gin")))
def test_softmax_sasrec_configs_share_one_recipe_over_the_papers_model(config):
    """Every sasrec_*_ce entry composes the SASRec paper's model with recipes/sasrec_ce.gin (the softmax loss,
    d 64); MovieLens keeps the SASRec paper's own 200 items and dropout 0.2, Amazon its 50 items and 0.3."""
    load_gin([str(config)], [])
    assert gin.query_parameter("SasRec.loss") == "ce"
    assert gin.query_parameter("SasRec.d_model") == 64
    movielens = "ml1m" in config.name
    assert gin.query_parameter("SasRec.max_len") == (200 if movielens else 50)
    assert gin.query_parameter("SasRec.dropout") == (0.2 if movielens else 0.3)
    word = config.stem.split("_")[1]  # sasrec_toys_ce -> toys
    dataset = {"amazon": "beauty"}.get(word, word)
    assert gin.query_parameter("train_sasrec.out_dir") == f"out/sasrec/{dataset}/ce"
