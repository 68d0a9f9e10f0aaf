"""Run guards: a non-finite loss stops the run naming the step; intervals must fall on log steps."""

import torch

from data.schema import TigerError


class NonFiniteLossError(RuntimeError, TigerError):
    """A logged value is NaN or inf; the message names the step and the run directory."""


class IntervalError(ValueError, TigerError):
    """A loop interval binding off the log grid (a configuration error: the CLI exits 1 naming it)."""


def check_finite(values: dict[str, torch.Tensor | float], step: int, run_dir) -> None:
    """Raise if any logged value is NaN/inf. Called once per log interval (one host sync there)."""
    bad = {k: float(v) for k, v in values.items() if not torch.isfinite(torch.as_tensor(v)).all()}
    if bad:
        raise NonFiniteLossError(
            f"non-finite values {bad} at step {step}; training stopped. "
            f"The last good checkpoint in {run_dir} "
            "is intact (checkpoints are only written after this check passes)."
        )


def check_intervals(scope: str, log_every: int, **every: int) -> None:
    """Evaluations and checkpoints must fall on log steps: each interval a multiple of `log_every`.

    Evaluation runs inside the log branch (an eval_every off the log grid is silently skipped), and a
    checkpoint between log steps would drop the interval's partial metric sums, so a resumed run would log
    different means than an uninterrupted one.
    """
    for name, value in every.items():
        if value <= 0 or log_every <= 0 or value % log_every:
            raise IntervalError(
                f"{scope}.{name} = {value} must be a positive multiple of {scope}.log_every = {log_every}"
            )
