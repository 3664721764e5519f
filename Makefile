# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
# `make check` is the inner loop: lint plus every test that starts no server process (under 3 minutes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

SCENARIO ?= scenarios/default.toml

.PHONY: run test check bench venv clean

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

# --durations: a fresh clone's `make test` must stay under 20 minutes on 2 cores; the slowest tests are listed.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --benchmark-disable --durations=20

# The tests not marked `integration` (tests/conftest.py refuses to let an unmarked test start a server or Locust),
# on two processes (pytest-xdist): they time nothing, so sharing the cores cannot fail them. `make test` stays
# serial: its experiments measure the machine.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --benchmark-disable -m "not integration" -n 2 --durations=10

# Micro-benchmarks (pytest-benchmark), then the load benchmark of the servers and clients themselves (a few
# minutes; wrk is used when installed): table on stdout, results in .benchmarks/load.json.
bench: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only
	$(BIN)/python -m bench.perf --out .benchmarks/load.json

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
