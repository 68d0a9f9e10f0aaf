#!/bin/bash
# The same speed benchmark under each memory allocator this machine has: glibc malloc as is, glibc with
# transparent huge pages for its mmapped chunks (GLIBC_TUNABLES=glibc.malloc.hugetlb=1, glibc >= 2.35),
# and tcmalloc / jemalloc when their Debian packages are installed (LD_PRELOAD). Large transient tensors
# (an FFN's hidden activations, the beam cache) are mmapped by glibc and returned to the kernel when freed,
# so every step page-faults them in again, 4 KB at a time; the others keep or map them in bigger pieces.
# Needs a quiet machine: run nothing beside it.
#   bash bench/allocators.sh [BEAUTY (default ../shared/data/amazon-2014-beauty)]
# Workloads: decoder-only grouped-bf16 training (the best recipe's step) and a full-test bf16 evaluation
# of the encoder-decoder (beam 10), each under every allocator in turn.
set -euo pipefail
BEAUTY=${1:-../shared/data/amazon-2014-beauty}
PY=${PY:-.venv/bin/python}
LIB=/usr/lib/x86_64-linux-gnu
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "# $(date -u +%F' '%T) UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
ALLOCATORS=("glibc:" "glibc-hugetlb:GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
[ -e $LIB/libtcmalloc_minimal.so.4 ] && ALLOCATORS+=("tcmalloc:LD_PRELOAD=$LIB/libtcmalloc_minimal.so.4")
[ -e $LIB/libjemalloc.so.2 ] && ALLOCATORS+=("jemalloc:LD_PRELOAD=$LIB/libjemalloc.so.2")
WORKLOADS=(
    "--architecture decoder-only --train-modes grouped-bf16 --beam"
    "--train-modes --beam 10 --eval-bf16"
)
for workload in "${WORKLOADS[@]}"; do
    for entry in "${ALLOCATORS[@]}"; do
        echo "## allocator ${entry%%:*}: bench.decoder_speed $workload"
        env ${entry#*:} $PY -m bench.decoder_speed --root "$BEAUTY" $workload
    done
done
