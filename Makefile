# Both targets set up .venv by themselves on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The torch build must be installed first and pinned: an unpinned torch drags in several GB of
# CUDA packages.  spikingjelly goes in with --no-deps (see pyproject.toml for why); so does norse
# (a test dependency: the NIR export test loads model.nir with it), whose metadata requires
# torchvision; its other needs (nir, nirtorch, numpy) come with the dev extra.
TORCH := torch==2.13.0
SPIKINGJELLY := spikingjelly==2.0.0
NORSE := norse==1.1.0

.PHONY: run test test-slow venv lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q --no-deps $(SPIKINGJELLY)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(NORSE)
	$(BIN)/python -c "import torch, spikingjelly.activation_based.neuron, tonic, optuna, ray.tune, nir, neuronas; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

venv: $(STAMP)

# The main job on embedded defaults: search the default space (digits-small) on the default chip
# (rram-adcless-65nm) for digits-events, then export the feasible Pareto front.  Running it again
# resumes the same run (runs/default) and re-exports.  --timeout: no new trial after 7 minutes, so
# the job stays within 10 minutes on a slow or busy machine (the next `make run` continues it).
run: $(STAMP)
	$(BIN)/neuronas search --name default --timeout 420
	$(BIN)/neuronas export default --out runs/default/export --overwrite

# make test: every test but those marked slow (real multi-process searches, kills and resumes,
# PostgreSQL and Ray runtimes: ~7 minutes more); make test-slow runs those; CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check neuronas tests benchmarks experiments
	$(BIN)/ruff format --check neuronas tests benchmarks experiments
	$(BIN)/mypy neuronas

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
