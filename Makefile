# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

SCENARIO ?= scenarios/default.toml

.PHONY: run test bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when pyproject.toml changes; editable so the checkout is what runs.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/hookbench run $(SCENARIO)

# --durations: CI must stay under 15 minutes on 2 cores; the slowest tests are listed on every run.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --benchmark-disable --durations=20

# Micro-benchmarks (pytest-benchmark), then the load benchmark of the servers and clients themselves (a few
# minutes; wrk is used when installed): table on stdout, results in .benchmarks/load.json.
bench: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only
	$(BIN)/python -m bench.perf --out .benchmarks/load.json

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
