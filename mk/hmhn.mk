# HMHN targets, included by the top-level Makefile (which defines PY, OUT, DATA_ROOT,
# CORPUS, HAS_GPU and the venv target). One run directory per config from experiments/,
# then one table per target via `depressionmlp summarize` (markdown + JSON).
#
#   make demo-hmhn                    synthetic faces -> the default protocol at 64 px, 16 x 60 steps -> report.md
#   make hmhn-ablation [CORPUS=...]   Tables 3-4, rows A-E
#   make hmhn-heads    [CORPUS=...]   Fig. 6, k = 1..8 cross-attention heads
#   make hmhn-grid     [CORPUS=...]   Fig. 7, GWA grid none / 2x2 / 3x3 / 4x4 / 5x5
#   make hmhn-kernels  [CORPUS=...]   Table 5, spatial-attention kernel sets
#   make hmhn-test-avec2013 | hmhn-test-avec2014    the paper's test protocol per corpus
#   make hmhn-count                   parameters per configuration next to Table 5
#   make hmhn-report   [CORPUS=...] [SEEDS=...] [QUICK=1 [BUDGET=config]]   Tables 3-5, Fig. 5-7, attention
#                                     maps -> outputs/hmhn-report/<corpus>/report.md (resumable)
# QUICK=1 runs any of them at a small input size (the configs' [quick] table).
# jit_compile follows the configs ("auto": XLA on a GPU, none on CPU); HMHN_JIT="--jit true" forces it.

HMHN_QUICK := $(if $(filter 1 true yes,$(QUICK)),--quick,)
HMHN_JIT ?=

.PHONY: demo-hmhn hmhn-ablation hmhn-heads hmhn-grid hmhn-kernels \
        hmhn-test-avec2013 hmhn-test-avec2014 hmhn-count hmhn-synth hmhn-report

define hmhn_run_configs
	@set -e; for cfg in $(2); do \
	  $(PY) -m hmhn train --config $$cfg $(3) --data-root $(DATA_ROOT) --out $(OUT)/$(1) \
	    $(HMHN_QUICK) $(HMHN_JIT) --quiet; \
	done; \
	$(PY) -m depressionmlp summarize --runs $(OUT)/$(1) --out $(OUT)/$(1)/summary
endef

hmhn-synth: venv
	$(PY) -m hmhn synth --data-root $(DATA_ROOT)

demo-hmhn: venv
	$(PY) -m hmhn demo --data-root $(DATA_ROOT) --out $(OUT)/demo-hmhn

hmhn-count: venv
	$(PY) -m hmhn count

# CORPUS=synthetic-faces: generated first when missing (python -m hmhn synth, seed 0)
HMHN_SYNTH_CORPUS := $(if $(filter synthetic-faces,$(CORPUS)),$(DATA_ROOT)/synthetic-faces/manifest.json,)

$(DATA_ROOT)/synthetic-faces/manifest.json: | venv
	$(PY) -m hmhn synth --data-root $(DATA_ROOT)

hmhn-ablation: venv $(HMHN_SYNTH_CORPUS)
	$(call hmhn_run_configs,hmhn-ablation-$(CORPUS),$(sort $(wildcard experiments/hmhn_ablation_*.toml)),--corpus $(CORPUS))

hmhn-heads: venv
	$(call hmhn_run_configs,hmhn-heads-$(CORPUS),$(sort $(wildcard experiments/hmhn_heads_*.toml)),--corpus $(CORPUS))

hmhn-grid: venv
	$(call hmhn_run_configs,hmhn-grid-$(CORPUS),$(sort $(wildcard experiments/hmhn_grid_*.toml)),--corpus $(CORPUS))

hmhn-kernels: venv
	$(call hmhn_run_configs,hmhn-kernels-$(CORPUS),$(sort $(wildcard experiments/hmhn_kernels_*.toml)),--corpus $(CORPUS))

hmhn-test-avec2013: venv
	$(call hmhn_run_configs,hmhn-test-avec2013,experiments/hmhn_test_avec2013.toml,)

hmhn-test-avec2014: venv
	$(call hmhn_run_configs,hmhn-test-avec2014,experiments/hmhn_test_avec2014.toml,)

# Every table and figure of the HMHN paper (trains what is missing, reuses finished runs).
# HMHN_SEEDS: seeds of the report (default: SEEDS); QUICK=1 runs one seed, each run a
# smoke test (2 x 10 steps) unless BUDGET=config (the [quick] table's 16 x 60 steps).
HMHN_SEEDS ?= $(SEEDS)
hmhn-report: venv $(HMHN_SYNTH_CORPUS)
	$(PY) -m hmhn report --corpus $(CORPUS) --data-root $(DATA_ROOT) \
	  --out $(OUT)/hmhn-report/$(CORPUS) --seeds $(HMHN_SEEDS) $(HMHN_QUICK) $(HMHN_JIT) \
	  $(if $(BUDGET),--budget $(BUDGET),)
