"""Run a training script unchanged and SIGKILL it at a chosen point: faults injected from the test side.

    python tests/entry/killer.py write N train_rqvae.py ARGS...   # during the N-th checkpoint.pt write
    python tests/entry/killer.py log N train_decoder.py ARGS...   # right after the N-th metrics.jsonl row

`write` serialises the payload, puts half of its bytes into `checkpoint.pt.tmp`, flushes and kills, so the
temp file is left torn. `log` kills after a row is on disk but before that step's checkpoint. The script
itself runs through `runpy` as `__main__`, exactly as `python SCRIPT ARGS...` would run it.
"""

import io
import os
import runpy
import signal
import sys

import torch

import training.logger


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_during_write(n: int) -> None:
    """torch.save into checkpoint.pt.tmp: calls 1..n-1 are real, call n writes half the file and dies."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        if not str(getattr(f, "name", f)).endswith("checkpoint.pt.tmp"):
            return real_save(obj, f, *args, **kwargs)
        calls.append(f)
        if len(calls) < n:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        die()

    torch.save = save  # training.checkpoint calls torch.save through the module


def kill_after_log(n: int) -> None:
    real_log, calls = training.logger.JsonlLogger.log, []

    def log(self, metrics, step):
        real_log(self, metrics, step)
        calls.append(step)
        if len(calls) == n:
            die()

    training.logger.JsonlLogger.log = log


def main(argv: list[str]) -> None:
    when, n, script, *args = argv
    {"write": kill_during_write, "log": kill_after_log}[when](int(n))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
    sys.exit(f"killer.py: the script finished before the {when} #{n} kill point")


if __name__ == "__main__":
    main(sys.argv[1:])
