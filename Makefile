# Two commands do everything on a fresh machine: `make demo` and `make test` (README.md; reference in docs/).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# The local stack keeps all its state here (Prefect DB, MLflow store and artifacts, logs, pids).
export MLOPS_HOME ?= $(CURDIR)/.mlops

.PHONY: install up down status demo test test-fast test-unit lint docs data audit bench bench-serving bench-drift lock clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The environment comes only from uv.lock (--frozen: never re-resolved on install).
$(VENV)/.installed: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

# Mermaid for the docs site's diagrams, from the npm registry (npm checks the package's integrity),
# as uv takes the Python packages from PyPI: Material loads it from a CDN otherwise, and no
# machine here reaches one. Mermaid 11, the major Material asks for. A failed download only
# warns: the site still builds, and its browser test says it skipped.
MERMAID_VERSION := 11.17.2
MERMAID_JS := docs/javascripts/mermaid.min.js

$(MERMAID_JS):
	@mkdir -p $(TOOLS)/npm $(dir $@)
	@if (cd $(TOOLS)/npm && npm pack --silent mermaid@$(MERMAID_VERSION) >/dev/null) && \
	    tar -xzf $(TOOLS)/npm/mermaid-$(MERMAID_VERSION).tgz -O package/dist/mermaid.min.js > $@.part; then \
	    mv $@.part $@; rm -f $(TOOLS)/npm/mermaid-$(MERMAID_VERSION).tgz; \
	else rm -f $@.part; echo "warning: mermaid $(MERMAID_VERSION) not fetched from npm: the docs' diagrams need a CDN"; fi

.PHONY: docs-assets
docs-assets: $(MERMAID_JS)

up: install
	$(BIN)/mlops stack up

down:
	@if [ -x $(BIN)/mlops ]; then $(BIN)/mlops stack down; else echo "nothing to stop"; fi

status: install
	$(BIN)/mlops stack status

# The whole loop: train, deploy, serve, drift, and the automation's retrain and redeploy.
demo: up
	$(BIN)/python deployments/loop_demo.py
	@echo ""
	@echo "Prefect UI: http://$${MLOPS_STACK_HOST:-127.0.0.1}:$${MLOPS_PREFECT_PORT:-4200}   (flow runs, task runs, logs, artifacts, automations)"
	@echo "MLflow UI:  http://$${MLOPS_STACK_HOST:-127.0.0.1}:$${MLOPS_MLFLOW_PORT:-5000}   (runs, metrics, plots, registered models)"
	@echo "The stack keeps running (monitor/scheduled checks each model on its own schedule); 'make down' stops it."

test: install docs-assets
	$(BIN)/pytest -q

# The loop to run while you work: every test that starts no server process (the unit tier),
# spread over the cores a file per worker (module fixtures and heavy imports such as Evidently's
# are paid once per file, not per worker), collecting tests/unit only (the other tiers' imports
# cost a third of a serial run's collection).
test-fast: install
	$(BIN)/pytest -q -m unit -n auto --dist loadfile tests/unit

test-unit: test-fast

lint: install
	$(BIN)/ruff check mlops tasks flows tests benchmarks deployments

# The reference site (docs/, mkdocs.yml) into site/. --strict turns a broken link or anchor into a
# failure (never add --quiet: it hides the warnings strict mode counts). The variable silences
# Material's banner about MkDocs 2, which mkdocs<2 in pyproject.toml already answers.
docs: install docs-assets
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Rewrite the bundled datasets (data/churn.parquet, data/spend.parquet, the churn entity frame
# data/churn_labels.parquet, the feature store's sources in
# data/features/) from their seeded simulators;
# the same locked libraries give the same bytes (tests/unit/test_simulate.py checks the content).
data: install
	$(BIN)/python -m mlops.local.bundled --out-dir data

# Known vulnerabilities in the locked packages; report-only (AUDIT_STRICT=1 to fail on findings).
audit: install
	.ci/audit

bench: install
	$(BIN)/python benchmarks/train_overhead.py

bench-serving: install
	$(BIN)/python benchmarks/serving.py

bench-drift: install
	$(BIN)/python benchmarks/drift.py

.PHONY: bench-features
bench-features: install
	$(BIN)/python benchmarks/features.py

# Read-only commands against an MLflow server, with and without Feast's MLflow header provider.
.PHONY: bench-cli
bench-cli: install
	$(BIN)/python benchmarks/cli_latency.py

.PHONY: bench-dask
bench-dask: install
	$(BIN)/python benchmarks/search_dask.py

lock: $(UV)
	$(UV) lock

clean: down
	rm -rf $(VENV) $(TOOLS) .mlops .pytest_cache site
