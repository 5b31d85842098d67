# Both targets set up .venv by themselves on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The torch build must be installed first and pinned: an unpinned torch drags in several GB of
# CUDA packages.  spikingjelly goes in with --no-deps (see pyproject.toml for why).
TORCH := torch==2.13.0
SPIKINGJELLY := spikingjelly==2.0.0

.PHONY: run test venv lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q --no-deps $(SPIKINGJELLY)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -c "import torch, spikingjelly.activation_based.neuron, tonic, optuna, ray.tune, nir, neuronas; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/neuronas search

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check neuronas tests benchmarks experiments
	$(BIN)/mypy neuronas/hardware neuronas/spec.py neuronas/config.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
