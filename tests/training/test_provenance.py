"""Run provenance: the allocator behind a CPU run's speed is named with its machine."""

import subprocess
import sys
from pathlib import Path

import pytest

from training.provenance import allocator, machine

TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


def test_allocator_is_read_from_the_processes_mapped_libraries(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator("7f0 r-xp /usr/lib/x86_64-linux-gnu/libc.so.6\n") == "glibc"
    assert allocator("7f0 r-xp /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n") == "tcmalloc"
    assert allocator("7f0 r-xp /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n") == "jemalloc"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert allocator("") == "glibc+hugetlb"


def test_machine_names_the_allocator_only_when_it_is_not_glibcs(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    plain = machine()
    assert plain.endswith("threads)") or "threads)," in plain  # the rows measured before it say nothing
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert "threads, glibc+hugetlb)" in machine()


@pytest.mark.skipif(not TCMALLOC.exists(), reason="needs Debian's libtcmalloc-minimal4")
def test_a_preloaded_tcmalloc_is_detected_in_a_real_process():
    code = "from training.provenance import allocator; print(allocator())"
    env = {"LD_PRELOAD": str(TCMALLOC), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "tcmalloc"
