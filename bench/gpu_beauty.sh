#!/bin/bash
# The Beauty GPU protocol as one device command (issue 12), run from the repository root on a lent
# H100 / H200 with the ignored .gpu/ folder carried (`make gpu-bundle` fills it here: the gin-config wheel,
# the Beauty P5 files, the stage-1 semantic_ids.pt). Writes $OUT/run/{metrics.json,metrics.jsonl,config.gin}
# and $OUT/nvidia-smi.txt. Stage 1 stays on the CPU: its embeddings and codes travel as files.
#   device run: bash bench/gpu_beauty.sh        carry: [".gpu"]        timeout_s: 600
set -euo pipefail
OUT=${OUT:-out/gpu}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
timeout 560 python3 train_decoder.py configs/decoder_amazon_paper.gin configs/recipes/constant_lr1e-3.gin \
    configs/recipes/gpu_protocol.gin \
    --gin 'load_amazon.root = ".gpu/beauty"' \
    --gin 'train_decoder.semantic_ids = ".gpu/semantic_ids.pt"' \
    --gin "train_decoder.out_dir = \"$OUT/run\"" 2>&1 | tee "$OUT/log.txt"
rm -rf "$OUT/run/finalists" "$OUT/run/checkpoint.pt" "$OUT/run/best.pt"  # keep what comes back small
