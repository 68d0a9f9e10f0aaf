"""Run provenance: the run directory, its operative config.gin, the commit and the machine of every number."""

import os
import platform
import subprocess
from pathlib import Path

import torch

from training.cli import operative_config


def run_dir(out_dir: str) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(run: Path, is_main: bool) -> str:
    """The operative gin config (every binding read so far), saved as <run>/config.gin by the main process."""
    config = operative_config()
    if is_main:
        (run / "config.gin").write_text(config)
    return config


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"], capture_output=True, text=True, timeout=5
        )
        return (
            out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
            if out.returncode == 0
            else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


ALLOCATORS = ("tcmalloc", "jemalloc")  # preloaded (LD_PRELOAD) instead of glibc's malloc: bench/allocators.sh


def allocator(maps: str | None = None) -> str:
    """The malloc behind torch's CPU tensors: "tcmalloc" / "jemalloc" when one is mapped into this process
    (LD_PRELOAD), else "glibc" ("glibc+hugetlb" under GLIBC_TUNABLES=glibc.malloc.hugetlb=1). It changes the
    speed of CPU runs (bench/allocators.sh), never their numbers. maps: /proc/self/maps' text (tests)."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            maps = ""
    for name in ALLOCATORS:
        if f"lib{name}" in maps:
            return name
    huge = "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")
    return "glibc+hugetlb" if huge else "glibc"


def machine() -> str:
    """CPU model, threads, the allocator when not glibc's (and GPU name when one is used), for every
    reported number."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    name = allocator()
    malloc = "" if name == "glibc" else f", {name}"
    return f"{cpu} ({torch.get_num_threads()} threads{malloc}){gpu}"
