# keyltv: every target is one call into the CLI or a tool, inside .venv.
# `make demo` and `make test` install what they need on first use.

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HOST    ?= 127.0.0.1
PORT    ?= 5000

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast test-spark lint ui bench-accuracy bench-accuracy-seeds bench-speed clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install keyltv with its pinned dependencies

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# uv installs the pinned stack in seconds; plain pip is the fallback. Bytecode is
	# compiled at install (as pip does): without it every command spends seconds
	# compiling pandas and friends wherever PYTHONDONTWRITEBYTECODE is set.
	$(VENV)/bin/pip install -q uv==0.13.8 && \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -e ".[dev]" || \
	  $(VENV)/bin/pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup ## Train and score on the bundled CDNOW log (scores in outputs/)
	$(VENV)/bin/keyltv demo --config configs/cdnow.yaml

test: setup ## Run the whole test suite (slow tests included)
	$(PY) -m pytest

test-fast: setup ## Run the tests not marked slow
	$(PY) -m pytest -m "not slow"

test-spark: setup ## The feature query on Spark SQL against DuckDB (installs pyspark; needs Java 17)
	$(VENV)/bin/uv pip install -q --python $(PY) -e ".[dev,spark]" || \
	  $(VENV)/bin/pip install -q -e ".[dev,spark]"
	$(PY) -m pytest tests/features/test_spark_sql.py

lint: setup ## Ruff lint
	$(VENV)/bin/ruff check src tests benchmarks

ui: setup ## MLflow UI on http://127.0.0.1:5000 (HOST, PORT) against the project's store (or MLFLOW_TRACKING_URI)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
	  --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
	  --default-artifact-root $(CURDIR)/mlartifacts \
	  --host $(HOST) --port $(PORT) --workers 1

bench-accuracy: setup ## Backtest table: keyltv vs peers on CDNOW (39/39 weeks) and simulator variants
	$(PY) benchmarks/bench_accuracy.py --out docs/accuracy.md

bench-accuracy-seeds: setup ## The simulator part of bench-accuracy on seeds 11 and 23 (robustness)
	for seed in 11 23; do \
	  $(PY) benchmarks/bench_accuracy.py --seed $$seed \
	    --only base,no_attributes,growth_heavy,churn_heavy,short_history \
	    --out docs/accuracy-seed$$seed.md || exit 1; \
	done

bench-speed: setup ## Time and peak memory: features/train/score vs lifetimes and bare DuckDB (100k-20M lines, about 20 min)
	$(PY) benchmarks/bench_speed.py --out docs/speed.md

clean: ## Remove outputs and the local MLflow store (keeps .venv)
	rm -rf outputs mlflow.db mlartifacts
