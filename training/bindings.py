"""Checks every gin binding against the parameter it binds, before a run writes anything.

`binding_problems()` walks the bindings gin holds after parsing and checks each bound value
- against its parameter's type: the annotation (`int`, `float`, `int | None`, `Sequence[int]`, ...), or for
  an unannotated parameter the type of its scalar default; a bool is not an int, an int is a float;
- against the range or the choices that RANGES declares for the parameter, keyed by `configurable.param`
  or by the parameter name alone (one name per concept: `batch_size` or `codebook_size` means the same
  everywhere); `train_decoder.beam_width` must cover the largest k evaluated.
Macros (`%X`) are resolved; other references (`@f`, `@f()`) are not checked. `training.cli.load_gin` raises
one ConfigError listing every problem, each naming the binding and its value.
"""

import collections.abc
import inspect
import types
import typing
from typing import Any, NamedTuple

from gin import config as gin_config

from data.amazon import CATEGORIES
from data.movielens import VARIANT_FILES
from data.processed import TRAIN_EXAMPLES
from evaluate.metrics import KS, metric_names
from modules.kmeans import INITS
from modules.losses import RECON_REDUCTIONS
from modules.quantize import ESTIMATORS
from modules.rq_kmeans import TOKENIZERS


class Bound(NamedTuple):
    """A range or set of allowed values: `text` says it in the error, `holds(value)` tests it."""

    text: str
    holds: typing.Callable[[Any], bool]


def one_of(choices) -> Bound:
    """The value must be one of `choices` (a string setting)."""
    choices = tuple(choices)
    return Bound(f"one of {list(choices)}", lambda v: v in choices)


AT_LEAST_1 = Bound(">= 1", lambda v: v >= 1)
NON_NEGATIVE = Bound(">= 0", lambda v: v >= 0)
POSITIVE = Bound("> 0", lambda v: v > 0)
FRACTION = Bound("in [0, 1)", lambda v: 0 <= v < 1)
PROBABILITY = Bound("in [0, 1]", lambda v: 0 <= v <= 1)

RANGES: dict[str, Bound] = {
    # loop settings of both training scripts
    **dict.fromkeys(("iterations", "batch_size", "log_every", "eval_every", "ckpt_every"), AT_LEAST_1),
    **dict.fromkeys(
        ("eval_batch_size", "eval_users", "kmeans_items", "warmup_steps", "total_steps", "decay_steps"),
        AT_LEAST_1,
    ),
    "seed": NON_NEGATIVE,
    "decay_start": NON_NEGATIVE,
    "eval_fraction": FRACTION,
    **dict.fromkeys(("finalists", "patience"), AT_LEAST_1),
    **dict.fromkeys(("monitor_test_users", "length_groups"), NON_NEGATIVE),
    "train_decoder.beam_width": Bound(
        f">= {max(KS)}, the largest k of the recall@k / ndcg@k evaluated", lambda v: v >= max(KS)
    ),
    "train_decoder.select_metric": one_of(metric_names(KS)),
    # optimizer and schedule
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "final": PROBABILITY,
    # model and tokenizer sizes
    **dict.fromkeys(("codebook_size", "n_levels", "latent_dim", "hidden_dims", "embed_dim"), AT_LEAST_1),
    **dict.fromkeys(("d_model", "n_heads", "head_dim", "n_encoder_layers", "n_decoder_layers"), AT_LEAST_1),
    **dict.fromkeys(("ffn_dim", "max_items", "n_iters", "kmeans_iters"), AT_LEAST_1),
    "user_buckets": NON_NEGATIVE,
    **dict.fromkeys(("dropout", "attn_dropout", "label_smoothing"), FRACTION),
    "n_layers": AT_LEAST_1,
    **dict.fromkeys(("beta", "tol"), NON_NEGATIVE),
    **dict.fromkeys(("gumbel_temperature", "eps", "init_std"), POSITIVE),
    # data
    **dict.fromkeys(("n_items", "n_users", "min_len", "max_len", "n_categories"), AT_LEAST_1),
    **dict.fromkeys(("p_next", "p_stay", "cold_epsilons"), PROBABILITY),
    "zipf_alpha": NON_NEGATIVE,
    "load_amazon.category": one_of(CATEGORIES),
    "load_movielens.variant": one_of(VARIANT_FILES),
    "SeqData.train_examples": one_of(TRAIN_EXAMPLES),
    # choices of the modules
    "train_rqvae.tokenizer": one_of(TOKENIZERS),
    "Quantize.estimator": one_of(ESTIMATORS),
    "init": one_of(INITS),
    "recon_reduction": one_of(RECON_REDUCTIONS),
    "make_accelerator.mixed_precision": one_of(("no", "bf16", "fp16")),
    "SasRec.loss": one_of(("bce", "ce")),
}

_SCALARS = (bool, int, float, str)
_SEQUENCES = (list, tuple, collections.abc.Sequence)


def binding_problems() -> list[str]:
    """One line per bound value that has the wrong type or is out of range (empty when all are fine)."""
    problems = []
    for (scope, selector), params in gin_config._CONFIG.items():
        configurable = gin_config._REGISTRY.get_match(selector)
        if configurable is None or configurable.wrapped is gin_config.macro:
            continue
        expected = parameter_types(configurable.wrapped)
        for param, value in params.items():
            value = resolve_macros(value)
            if isinstance(value, gin_config.ConfigurableReference) or value is gin_config.REQUIRED:
                continue  # a reference is checked where it is called
            binding = f"{scope + '/' if scope else ''}{configurable.name}.{param}"
            problem = check_value(value, expected.get(param, inspect.Parameter.empty))
            bound = RANGES.get(f"{configurable.name}.{param}", RANGES.get(param))
            if problem is None and bound is not None and not within(value, bound):
                each = "every element " if isinstance(value, (list, tuple)) else ""
                problem = f"{each}must be {bound.text}"
            if problem is not None:
                problems.append(f"gin binding {binding} = {value!r}: {problem}")
    return problems


def parameter_types(fn_or_cls) -> dict[str, Any]:
    """Parameter name -> annotation, or the type of its scalar default (parameters with neither: left out)."""
    target = fn_or_cls.__init__ if inspect.isclass(fn_or_cls) else fn_or_cls
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation that does not evaluate: fall back to the raw signature
        hints = {}
    types_ = {}
    for name, param in inspect.signature(fn_or_cls).parameters.items():
        hint = hints.get(name, param.annotation)
        if hint is inspect.Parameter.empty and isinstance(param.default, _SCALARS):
            hint = type(param.default)
        if hint is not inspect.Parameter.empty:
            types_[name] = hint
    return types_


def resolve_macros(value: Any) -> Any:
    """The value a `%MACRO` reference stands for (followed through macros of macros); others unchanged."""
    while (
        isinstance(value, gin_config.ConfigurableReference) and value.configurable.wrapped is gin_config.macro
    ):
        value = gin_config._CONFIG.get(("/".join(value.scopes), value.configurable.selector), {}).get(
            "value", gin_config.REQUIRED
        )
    return value


def check_value(value: Any, hint: Any) -> str | None:
    """None when `value` fits the annotation `hint`, else what was expected."""
    return None if matches(value, hint) else f"expected {type_name(hint)}, got {type(value).__name__}"


def matches(value: Any, hint: Any) -> bool:
    """isinstance for annotations: unions, Optional, list/tuple/Sequence[X] (elementwise), bool not an int,
    int accepted as float. Hints it cannot check (Callable, Any, ...) accept everything."""
    if hint is inspect.Parameter.empty or hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value) if args else True
    if isinstance(hint, type) and origin is None:
        return isinstance(value, hint)
    return True


def within(value: Any, bound: Bound) -> bool:
    """The bound holds for the value, or for every element of a list / tuple value."""
    if value is None:
        return True  # an optional parameter left unset (e.g. eval_users = None: every user)
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        return all(bound.holds(v) for v in values)
    except TypeError:  # a value of a type the bound does not compare (an unannotated parameter)
        return False


def type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
