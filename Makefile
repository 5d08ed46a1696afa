# Two commands do everything on a fresh machine:
#   make demo   set up .venv, train + register the demo model, run the pipeline, print the table
#   make test   set up .venv, run the whole test suite (real MLflow server, kfp.local, ONNX Runtime)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test unit compile bench bench-digits bench-minilm bench-prune bench-prune-minilm bench-prune-coverage bench-distill bench-nas bench-deep-compress bench-data-range bench-startup bench-tune bench-minilm-peers peers-venv bench-report bench-timing gpu-bundle clean

setup: $(VENV)/.installed

# torch==2.13.0 (pinned in pyproject.toml) is the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/modelpress demo

# One worker per core (at most 4), a test file per worker at a time; `long` modules start first (tests/conftest.py).
test: setup
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

unit: setup
	$(BIN)/python -m pytest tests/unit

compile: setup
	$(BIN)/modelpress compile --all build/kfp

bench: bench-digits bench-tune bench-minilm bench-minilm-peers bench-prune bench-prune-minilm bench-distill bench-nas bench-deep-compress bench-data-range bench-startup bench-timing
	$(MAKE) bench-report

# The README's generated result blocks, from benchmarks/results/*.json (the tests fail when they drift).
bench-report: setup
	$(BIN)/python benchmarks/readme_tables.py

bench-digits: setup
	$(BIN)/python benchmarks/quantize_digits.py

bench-minilm: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/minilm_pipeline.py

bench-prune: setup
	$(BIN)/python benchmarks/prune_digits.py

bench-prune-minilm: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/prune_minilm.py

# Torch-Pruning is installed for this comparison only; modelpress does not depend on it.
bench-prune-coverage: setup
	$(BIN)/python -m pip install --quiet --no-deps torch-pruning==1.6.1
	$(BIN)/python benchmarks/prune_tracer_coverage.py

bench-distill: setup
	$(BIN)/python benchmarks/distill_digits.py

# About 13 minutes on 2 cores: 3 seeds x (NSGA-II, random) x 60 trials, then full trainings.
bench-nas: setup
	$(BIN)/python benchmarks/nas_digits.py --no-accuracy-floor --trials 60 --trial-epochs 40

# Why latency is timed in blocks of warm runs (evaluate.measure.time_interleaved).
bench-timing: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/timing_method.py

bench-startup: setup
	$(BIN)/python benchmarks/task_startup.py

# The peers (Olive, NNCF) live in their own virtualenv: modelpress depends on neither.
PEERS_VENV ?= .venv-peers
peers-venv: $(PEERS_VENV)/.installed
$(PEERS_VENV)/.installed:
	python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet torch==2.13.0
	$(PEERS_VENV)/bin/pip install --quiet olive-ai==0.13.0 nncf==3.4.0 onnxruntime==1.32.0 requests  # olive imports requests without declaring it
	touch $@

bench-tune: setup peers-venv
	$(BIN)/python benchmarks/quantize_tune_digits.py --peers-python $(PEERS_VENV)/bin/python

bench-minilm-peers: setup peers-venv
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/quantize_minilm_peers.py --peers-python $(PEERS_VENV)/bin/python

# GPU targets: build the variants and inputs here, then on a machine with a GPU and onnxruntime-gpu run
# `python benchmarks/gpu_targets.py run --bundle .gpu/bundle` (numpy and onnxruntime only).
gpu-bundle: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/gpu_targets.py prepare --bundle .gpu/bundle

bench-deep-compress: setup
	$(BIN)/python benchmarks/deep_compress_digits.py

bench-data-range: setup
	$(BIN)/python benchmarks/data_range_rule.py

clean:
	rm -rf $(VENV) .modelpress build *.egg-info
