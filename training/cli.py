"""Command line and gin handling shared by both training scripts.

Errors in the input (gin files and bindings, data files, the semantic-ID artifact, run files, a non-finite
loss) are data.schema.TigerError and carry messages that name the file, line or binding. `run_cli` is each
script's `__main__`: it prints such an error (or a missing file's) as `<script>: error: <message>` on stderr
and exits with status 1, without a traceback; any other exception is a bug and keeps its traceback.
`main(argv)` itself raises, so tests see the exception.
"""

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gin

from data.schema import TigerError
from training.bindings import binding_problems


class ConfigError(ValueError, TigerError):
    """A gin file or binding could not be applied; the message names the file or binding."""


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("configs", nargs="+", help="gin config files, applied in order")
    parser.add_argument(
        "--gin",
        action="append",
        default=[],
        metavar="BINDING",
        help='extra binding, e.g. --gin "adamw.lr = 0.001"',
    )
    return parser.parse_args(argv)


class _GinProbeNoise(logging.Filter):
    """gin logs "Path not found" at ERROR level while it probes the Python path for an `include` that it then
    finds on the config search path; a file that is really missing still raises (named in ConfigError)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found:")


def load_gin(config_files: Sequence[str], bindings: Sequence[str]) -> None:
    """Parse config files then bindings (bindings win), then check every bound value's type and range.
    Errors name the file or binding that failed (a bad value: every such binding with its value)."""
    if not any(isinstance(f, _GinProbeNoise) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_GinProbeNoise())
    gin.clear_config()
    for path in config_files:
        if not Path(path).is_file():
            raise ConfigError(f"gin config file not found: {path}")
        gin.add_config_file_search_path(str(Path(path).resolve().parent))
    for path in config_files:
        try:
            gin.parse_config_file(path)
        except Exception as err:  # gin raises ValueError / KeyError / SyntaxError variants
            raise ConfigError(f"in gin file {path}: {err}") from err
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as err:
            raise ConfigError(f"bad --gin binding {binding!r}: {err}") from err
    try:
        gin.finalize()
    except ValueError as err:  # e.g. "x.y set to `%gin.REQUIRED` but not subsequently overridden"
        raise ConfigError(f"gin config: {err}") from err
    problems = binding_problems()  # types and ranges, before any configurable runs (training.bindings)
    if problems:
        raise ConfigError("\n".join(problems))


# gin raises this RuntimeError when a configurable is called with a gin.REQUIRED parameter left unbound.
_REQUIRED = re.compile(r"Required bindings for `([^`]+)` not provided in config: \[([^\]]*)\]")
# gin appends this to errors raised inside a configurable; the object's repr (an address) is noise.
_GIN_CALL = re.compile(r"In call to configurable '([^']+)' \(<[^>]*>\)")


def missing_binding(err: BaseException) -> ConfigError | None:
    """gin's "Required bindings for `f` not provided in config: ['x']" as a ConfigError naming `f.x`."""
    match = _REQUIRED.search(str(err))
    if match is None:
        return None
    params = [name.strip("'\" ") for name in match[2].split(",")]
    names = [f"{match[1]}.{param}" for param in params]
    return ConfigError(
        f"missing required gin binding {', '.join(names)}: set it in a config file or pass "
        f"--gin '{names[0]} = ...'"
    )


INPUT_ERRORS = (TigerError, FileNotFoundError)  # every error of the project's own, and a missing file


def run_cli(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> None:
    """Runs `main(argv)`; an input error (INPUT_ERRORS, or an unbound gin.REQUIRED parameter) prints
    `<script>: error: <message>` to stderr and exits with status 1 (module docstring)."""
    try:
        main(argv)
    except INPUT_ERRORS as err:
        _exit_with(err)
    except RuntimeError as err:
        config_error = missing_binding(err)
        if config_error is None:
            raise
        _exit_with(config_error)


def _exit_with(err: BaseException) -> None:
    message = _GIN_CALL.sub(r"(in configurable \1)", str(err))
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def operative_config() -> str:
    """Every binding that was read so far; call after the configurables ran."""
    return gin.operative_config_str()
