# Two commands: `make demo` (the main job on built-in data) and `make test` (ruff and the whole suite).
# Each builds .venv first when it is missing or requirements.txt / the environment hook changed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# uv installs the lock: the same `--no-deps` install of the same pinned wheels as pip, but it unpacks in parallel
# and byte-compiles on both cores (the build took 3 min 19 s with pip on an idle machine; byte-compiling is
# needed: PYTHONDONTWRITEBYTECODE may be set, and then every process would recompile TensorFlow at import).
DEMO_DIR ?= demo-output
PYTEST_ARGS ?=
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder
# Two pytest workers: many tests wait on child processes, servers and Beam workers. Tests that share a session
# pipeline run stay on one worker (tests/conftest.py marks each test's xdist group and puts the longest first).

.PHONY: setup demo test check lint clean help beam-cluster-up beam-cluster-down
.DEFAULT_GOAL := help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: $(STAMP)  ## Build the environment only (.venv from the pinned lock, no resolver)

$(STAMP): requirements.txt envsetup/music_retrieval_env.py envsetup/install_hook.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@echo "setup: building $(VENV) from requirements.txt (a few minutes on a fresh machine; log in $(VENV)/install.log)"
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --progress-bar off uv==$(UV_VERSION) > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log >&2; echo "error: pip install uv==$(UV_VERSION) failed, full log in $(VENV)/install.log" >&2; exit 1; }
	@$(VENV)/bin/uv pip install --python $(PY) --no-deps --compile-bytecode -r requirements.txt >> $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log >&2; echo "error: installing requirements.txt failed, full log in $(VENV)/install.log" >&2; exit 1; }
	@$(PY) envsetup/install_hook.py
	@$(PY) -c "import os, tfx, tensorflow_data_validation, tensorflow_recommenders, scann; assert os.environ['TF_USE_LEGACY_KERAS'] == '1'" 2>/dev/null \
		|| { echo "error: the environment installed but does not import; see $(VENV)/install.log" >&2; exit 1; }
	@touch $(STAMP)
	@echo "setup: $(VENV) ready"

demo: $(STAMP)  ## Simulate a listening log, run the pipeline, serve the pushed model and ask it over gRPC (output in demo-output/)
	$(PY) -m pipeline.demo --out $(DEMO_DIR)

lint: $(STAMP)  ## ruff check (rules in pyproject.toml, version pinned in requirements.txt)
	$(VENV)/bin/ruff check .

test: lint  ## ruff, then the whole test suite
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

check: lint  ## ruff, then every test that needs no pipeline run (the quick loop while editing)
	$(PY) -m pytest tests -m "not pipeline" $(XDIST) $(PYTEST_ARGS)

clean:  ## Remove the environment and demo output
	rm -rf $(VENV) $(DEMO_DIR)

BEAM_CLUSTER_DIR ?= .beam-cluster

beam-cluster-up: $(STAMP)  ## Start a portable Beam cluster on 127.0.0.1 (job service + SDK worker pool; logs in .beam-cluster/logs)
	$(PY) -m pipeline.beam_cluster start --dir $(BEAM_CLUSTER_DIR)

beam-cluster-down:  ## Stop the cluster beam-cluster-up started
	$(PY) -m pipeline.beam_cluster stop --dir $(BEAM_CLUSTER_DIR)
