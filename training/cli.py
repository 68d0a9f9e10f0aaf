"""Command line and gin handling shared by both training scripts."""

import argparse
from collections.abc import Sequence
from pathlib import Path

import gin


class ConfigError(ValueError):
    """A gin file or binding could not be applied; the message names the file or binding."""


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("configs", nargs="+", help="gin config files, applied in order")
    parser.add_argument(
        "--gin",
        action="append",
        default=[],
        metavar="BINDING",
        help='extra binding, e.g. --gin "train.iterations = 10"',
    )
    return parser.parse_args(argv)


def load_gin(config_files: Sequence[str], bindings: Sequence[str]) -> None:
    """Parse config files then bindings (bindings win). Errors name the file or binding that failed."""
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
    gin.finalize()


def operative_config() -> str:
    """Every binding that was read so far; call after the configurables ran."""
    return gin.operative_config_str()
