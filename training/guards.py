"""Stop a run on a non-finite loss with a message naming the step; nothing written so far is touched."""

import torch


class NonFiniteLossError(RuntimeError):
    pass


def check_finite(values: dict[str, torch.Tensor | float], step: int, run_dir) -> None:
    """Raise if any logged value is NaN/inf. Called once per log interval (one host sync there)."""
    bad = {k: float(v) for k, v in values.items() if not torch.isfinite(torch.as_tensor(v)).all()}
    if bad:
        raise NonFiniteLossError(
            f"non-finite values {bad} at step {step}; training stopped. "
            f"The last good checkpoint in {run_dir} "
            "is intact (checkpoints are only written after this check passes)."
        )
