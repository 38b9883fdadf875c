# depressionkit: two commands on a fresh machine
#   make demo   create .venv, install, build the synthetic corpus, train + evaluate DepressionMLP, write a report
#   make test   the test suite (default set: fast; `make test-slow` adds the long ones)
# Experiments (DATA_ROOT points at the corpora, see README "Data layouts"):
#   make ablation-dg CORPUS=avec2013|avec2014   Table III   make ablation-mg   Table IV
#   make test-avec2013 | test-avec2014 | test-daic          make sweep-m       Fig. 4
#   PROTOCOL=paper|default (default: each config's own, else default)
#   make learnability [SEEDS="0 1 2"] [SIZE=long]   does each model learn what is in the data?
#   make report CORPUS=... [PROTOCOL=..] [SEEDS="0 1 2"] [QUICK=1]   every table and figure
#        of the paper -> outputs/report/<corpus>/report.md (reuses finished runs; resumable)
#   make notebooks   re-execute notebooks/*.ipynb in place (figures inline, for the web page);
#                    NOTEBOOK_ARGS="notebooks/explore_run.ipynb -p STEPS=60" for one / other parameters
# GPU: when nvidia-smi answers, the venv gets tensorflow[and-cuda] and runs use XLA (--jit).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_ROOT ?= data
OUT ?= outputs
CORPUS ?= avec2013
PROTOCOL ?=
PROTOCOL_ARG := $(if $(PROTOCOL),--protocol $(PROTOCOL),)
SEEDS ?= 0 1 2
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TF_EXTRA := $(if $(HAS_GPU),gpu,cpu)
JIT ?= $(if $(HAS_GPU),--jit,)
PYTEST_ARGS ?=
# test processes (pytest-xdist, one file per process: module fixtures are built once);
# 0 = one process. Tracing graphs is single-threaded Python, so 2 halves the time on 2 cores.
# Files go out slowest first (tests/conftest.py, from tests/durations.json), not by test count.
TEST_WORKERS ?= 2
XDIST := $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder,)
NOTEBOOK_ARGS ?=
export DATA_ROOT

.PHONY: all venv demo test test-durations test-slow synth bench count clean learnability notebooks \
        ablation-dg ablation-mg sweep-m test-avec2013 test-avec2014 test-daic report

all: demo

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(TF_EXTRA),faces,dev]"
	@touch $@

venv: $(VENV)/.installed

synth: venv
	$(PY) -m depressionmlp synth --out $(DATA_ROOT)/synthetic

demo: venv
	$(PY) -m depressionmlp demo --data-root $(DATA_ROOT) --out $(OUT)/demo

test: venv
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

# rewrite tests/durations.json (seconds per file) from a full default run
test-durations: venv
	$(PY) -m pytest -q $(XDIST) --write-durations $(PYTEST_ARGS)

test-slow: venv
	$(PY) -m pytest -q -m slow $(XDIST) $(PYTEST_ARGS)

count: venv
	$(PY) -m depressionmlp count

# Each notebook in a fresh kernel (nbclient; no jupyter command needed), written back with
# its outputs; caches, runs and PNGs go to outputs/notebooks/ (git-ignored).
notebooks: venv
	$(PY) -m depressionmlp.notebooks $(NOTEBOOK_ARGS)

bench: venv
	$(PY) -m depressionmlp.bench --out $(OUT)/bench

# One run directory per config; then one table per target (markdown + JSON).
define run_configs
	@set -e; for cfg in $(2); do \
	  $(PY) -m depressionmlp train --config $$cfg --corpus $(CORPUS) --out $(OUT)/$(1) $(JIT) \
	    $(PROTOCOL_ARG) --quiet; \
	done; \
	$(PY) -m depressionmlp summarize --runs $(OUT)/$(1) --out $(OUT)/$(1)/summary
endef

ablation-dg: venv
	$(call run_configs,ablation-dg-$(CORPUS)$(if $(PROTOCOL),-$(PROTOCOL)),experiments/baseline_ridge.toml experiments/baseline_lasso.toml $(wildcard experiments/table3_*.toml))

ablation-mg: venv
	$(call run_configs,ablation-mg-$(CORPUS)$(if $(PROTOCOL),-$(PROTOCOL)),experiments/baseline_ridge.toml experiments/baseline_lasso.toml $(wildcard experiments/table4_*.toml))

# Every table and figure of the DepressionMLP paper: trains what is missing (one run per
# config x seed, reused while its resolved config is unchanged), then report.md + PNGs.
QUICK ?=
REPORT_QUICK := $(if $(filter 1 true yes,$(QUICK)),--quick,)
report: venv
	$(PY) -m depressionmlp report --corpus $(CORPUS) --data-root $(DATA_ROOT) \
	  --out $(OUT)/report/$(CORPUS)$(if $(PROTOCOL),-$(PROTOCOL)) --seeds $(SEEDS) \
	  $(PROTOCOL_ARG) $(REPORT_QUICK) $(if $(JIT),--jit,)

# The learnability suite: generated corpora (score in one place each, or mixed) x
# {noise floor, cue floor, mean predictor, StatsRidge, DG+MG default, DG+MG paper, single
# stream} x seeds.
# SIZE=long: 25 training subjects with 150-240 s recordings (learnability.SIZES).
# CONFIG=experiments/X.toml [...]: each config a row of its own, against the same references
# (PROTOCOL=paper|default: the protocol of those rows).
learnability: venv
	$(PY) -m depressionmlp learnability --out $(OUT)/learnability$(if $(filter long,$(SIZE)),-long) \
	  --data-root $(DATA_ROOT)/learnability --seeds $(SEEDS) $(if $(SIZE),--size $(SIZE)) \
	  $(if $(CONFIG),--config $(CONFIG) $(PROTOCOL_ARG))

sweep-m: venv
	$(call run_configs,sweep-m-$(CORPUS),$(wildcard experiments/fig4_m*.toml))

test-avec2013: CORPUS = avec2013
test-avec2013: venv
	$(call run_configs,test-avec2013,experiments/test_avec2013.toml)

test-avec2014: CORPUS = avec2014
test-avec2014: venv
	$(call run_configs,test-avec2014,experiments/test_avec2014.toml)

test-daic: CORPUS = daic
test-daic: venv
	$(call run_configs,test-daic,experiments/test_daic.toml)

-include mk/hmhn.mk

clean:
	rm -rf $(OUT) .cache
