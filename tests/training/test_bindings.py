"""Every gin binding is checked (type against its annotation or default, range from RANGES) before a run
writes anything; the error names the binding and its value (issue 15, class 1)."""

from collections.abc import Sequence
from pathlib import Path

import gin
import pytest

import train_decoder
import train_rqvae
from evaluate.metrics import KS
from training.bindings import AT_LEAST_1, RANGES, binding_problems, matches
from training.cli import ConfigError, load_gin, run_cli


@pytest.mark.parametrize(
    "value, hint, ok",
    [
        (3, int, True),
        ("3", int, False),
        (True, int, False),  # a bool is not a count
        (3, float, True),  # an int is a float
        (0.5, int, False),
        (None, int | None, True),
        ("x", int | None, False),
        ([1, 2], Sequence[int], True),
        ((1, 2), Sequence[int], True),
        ([1, "2"], Sequence[int], False),
        ("12", Sequence[int], False),  # a string is a sequence, but not of ints
        ((0.9, 0.99), tuple[float, float], True),
        ((0.9,), tuple[float, float], False),
        (1, bool, False),
        ("a", str, True),
        (lambda: 1, object, True),
    ],
)
def test_matches_is_isinstance_for_annotations(value, hint, ok):
    assert matches(value, hint) is ok


@gin.configurable
def _typed(count: int = 1, rate: float = 0.5, size=4, name: str | None = None, dims: Sequence[int] = (1,)):
    return count, rate, size, name, dims


def test_binding_problems_names_each_binding_and_value(tmp_path):
    config = tmp_path / "x.gin"
    config.write_text("M = '7'\n_typed.count = %M\n_typed.rate = 2\n_typed.size = 2.5\n_typed.name = 3\n")
    with pytest.raises(ConfigError) as err:
        load_gin([str(config)], [])
    assert str(err.value).splitlines() == [
        "gin binding _typed.count = '7': expected int, got str",  # the macro's value
        "gin binding _typed.size = 2.5: expected int, got float",  # unannotated: the default's type
        "gin binding _typed.name = 3: expected str | None, got int",
    ]
    load_gin([], ["_typed.count = 2", "_typed.name = None", "_typed.dims = [2, 3]"])
    assert binding_problems() == [] and _typed() == (2, 0.5, 4, None, [2, 3])


def test_ranges_and_choices_apply_by_parameter_name_and_by_binding():
    assert RANGES["iterations"] is AT_LEAST_1 and RANGES["codebook_size"] is AT_LEAST_1
    gin.parse_config(
        ["train_rqvae.iterations = 0", "RqVae.hidden_dims = [8, 0]", "RetrievalModel.dropout = 1.0",
         "Quantize.estimator = 'stee'", "load_amazon.category = 'beuty'"]
    )  # fmt: skip
    assert binding_problems() == [
        "gin binding train_rqvae.iterations = 0: must be >= 1",
        "gin binding RqVae.hidden_dims = [8, 0]: every element must be >= 1",
        "gin binding RetrievalModel.dropout = 1.0: must be in [0, 1)",
        "gin binding Quantize.estimator = 'stee': must be one of ['rotation', 'ste', 'gumbel']",
        "gin binding load_amazon.category = 'beuty': must be one of ['beauty', 'sports', 'toys']",
    ]


def cli_error(capsys, main, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "script, binding, message",
    [
        ("rqvae", "train_rqvae.iterations = '20'", "train_rqvae.iterations = '20': expected int, got str"),
        ("rqvae", "train_rqvae.iterations = -5", "train_rqvae.iterations = -5: must be >= 1"),
        ("rqvae", "train_rqvae.batch_size = 3.5", "train_rqvae.batch_size = 3.5: expected int, got float"),
        ("rqvae", "RqVae.codebook_size = '32'", "RqVae.codebook_size = '32': expected int, got str"),
        ("decoder", "train_decoder.batch_size = 0", "train_decoder.batch_size = 0: must be >= 1"),
        ("decoder", "train_decoder.beam_width = '10'", "train_decoder.beam_width = '10': expected int"),
        ("decoder", "train_decoder.beam_width = 5", f"train_decoder.beam_width = 5: must be >= {max(KS)}"),
        (
            "decoder",
            "train_decoder.select_metric = 'recall@20'",
            "train_decoder.select_metric = 'recall@20': must be",
        ),
    ],
    ids=[
        "str_iterations",
        "negative_iterations",
        "float_batch",
        "str_codebook",
        "zero_batch",
        "str_beam",
        "beam_below_k",
        "unknown_metric",
    ],  # fmt: skip
)
def test_bad_values_stop_both_scripts_before_anything_is_written(tmp_path, capsys, script, binding, message):
    out = tmp_path / "run"
    if script == "rqvae":
        main, argv = train_rqvae.main, ["configs/rqvae_debug.gin", "--gin", f"train_rqvae.out_dir = '{out}'"]
    else:
        argv = ["configs/decoder_debug.gin", "--gin", f"train_decoder.out_dir = '{out}'"]
        main, argv = train_decoder.main, [*argv, "--gin", f"train_decoder.semantic_ids = '{tmp_path}/s.pt'"]
    err = cli_error(capsys, main, [*argv, "--gin", binding])
    assert f"error: gin binding {message}" in err
    assert not Path(out).exists()  # no config.gin, metrics.jsonl or checkpoint; not even the folder
