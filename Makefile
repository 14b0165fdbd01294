# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# A CUDA user can override the torch build:  make test TORCH_SPEC="torch==2.13.0+cu128 --index-url <your wheel index>"
# or install torch into .venv first; an importable torch in .venv is kept as it is.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
DEMO := output/demo
DEMO_ITERS ?= 1500

.PHONY: setup test test-all demo sample real-footage clean-demo

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*; touch $@

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

sample: setup
	$(PY) -m sample_data.clip --out dataset/vids/sample.mp4

real-footage: setup
	$(PY) -m benchmarks.fetch_real_footage

demo: setup
	$(PY) demo.py --out $(DEMO) --iters $(DEMO_ITERS)
