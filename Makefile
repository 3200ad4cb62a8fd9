# The two commands of the README:
#   make demo   set everything up, start a local kwok cluster, run lasched on an example
#   make test   set everything up, lint, and run every test (unit + real control plane)
# Everything installs into .venv/ and ~/.cache/lasched/ (binaries, built once with Go).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup binaries lint unit integration bench-decode clean

demo: binaries
	$(BIN)/lasched demo

test: lint binaries
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml protocol/pyproject.toml agent/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lasched needs Python >= 3.11")'
	@command -v go >/dev/null || { echo "lasched's dev cluster needs Go >= 1.25 on PATH to build kube-apiserver, etcd and kwok"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./protocol -e '.[devcluster]' -e ./agent --group test --group lint --group bench
	touch $@

binaries: setup
	$(BIN)/lasched dev build

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

integration: binaries
	$(BIN)/pytest tests/integration

bench-decode: setup
	$(BIN)/python -m bench.decode

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
