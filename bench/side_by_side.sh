#!/bin/bash
# Issue 13's speed table: the reference (../shared/ref_harness, set up with its setup.sh into $REF) and this
# project, interleaved in one run on one machine (A B A B), each line printed as measured. Needs a quiet
# machine: run nothing beside it.
#   bash bench/side_by_side.sh [REF_HOME (default ../ref-harness)] [BEAUTY (default ../shared/data/amazon-2014-beauty)]
# ROUNDS=2 (interleaved rounds of the training pairs), EVAL="bf16 fp32" (full-test evaluations; "" = none).
set -euo pipefail
REF=${1:-../ref-harness}
BEAUTY=${2:-../shared/data/amazon-2014-beauty}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "# $(date -u +%F' '%T) UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
$PY -c "from bench.hardware import machine_line, probe; print(machine_line()); print(probe())"
for round in $(seq 1 "${ROUNDS:-2}"); do
    echo "## round $round: RQ-VAE train step, batch 64"
    "$REF/.venv-ref/bin/python" "$REF/bench_ref.py" rqvae --batch 64 --tag "round$round"
    $PY -m bench.rqvae_speed --modes eager eager-bf16 compile compile-bf16 --batch-size 64
    echo "## round $round: decoder train step, reference config, batch 64"
    "$REF/.venv-ref/bin/python" "$REF/bench_ref.py" decoder --batch 64 --cpu-attn padded --tag "round$round"
    $PY -m bench.decoder_speed --root "$BEAUTY" --model reference --batch-size 64 \
        --train-modes jagged jagged-bf16 --beam
done
for precision in ${EVAL-bf16 fp32}; do
    echo "## evaluation: full Beauty test split, beam 10, paper model, $precision"
    flag=$([ "$precision" = bf16 ] && echo --eval-bf16 || true)
    $PY -m bench.decoder_speed --root "$BEAUTY" --model paper --train-modes --beam 10 $flag
done
