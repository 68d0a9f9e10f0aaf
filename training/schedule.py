"""Learning-rate schedules as pure functions of the step: multiplier of the base LR."""

import math

import gin


@gin.configurable
def constant(step: int) -> float:
    return 1.0


@gin.configurable(denylist=["step"])
def inverse_sqrt(step: int, warmup_steps: int = 10_000, ramp: bool = False) -> float:
    """Reference schedule: flat base LR up to `warmup_steps` (ramp=False, the reference) or a linear ramp
    (ramp=True, the paper's warm-up), then base · sqrt(warmup_steps / step)."""
    if step <= warmup_steps:
        return (step + 1) / warmup_steps if ramp else 1.0
    return math.sqrt(warmup_steps / step)


@gin.configurable(denylist=["step"])
def warmup_cosine(
    step: int, total_steps: int = gin.REQUIRED, warmup_steps: int = 1000, final: float = 0.0
) -> float:
    """Linear warm-up to the base LR, then cosine decay to `final` · base at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


@gin.configurable(denylist=["step"])
def warmup_constant(step: int, warmup_steps: int = 500) -> float:
    """Linear warm-up to the base LR over `warmup_steps`, then constant (GRID; reference PR #63). The
    multiplier never depends on the total number of steps, so a finished run can be extended exactly."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


@gin.configurable(denylist=["step"])
def warmup_stable_decay(
    step: int,
    decay_start: int = gin.REQUIRED,
    decay_steps: int = gin.REQUIRED,
    warmup_steps: int = 500,
    final: float = 0.0,
) -> float:
    """warmup_constant up to `decay_start`, then a linear decay to `final` · base over `decay_steps`
    (the warm-up-stable-decay schedule). Before `decay_start` it equals warmup_constant exactly, so a
    constant-lr run's checkpoint at `decay_start` continues into this schedule as a run of it would."""
    if step < decay_start:
        return warmup_constant(step, warmup_steps)
    progress = min(1.0, (step - decay_start) / decay_steps)
    return 1.0 - (1.0 - final) * progress
