# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
# Both create .venv and install the project once; later runs skip the install unless
# pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The official JS client that tests/clients drives; installed once per lock file.
NPM_STAMP := clients/js/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# `make bench`: the mock beside Stoplight Prism (pinned in benchmarks/package.json) under wrk.
BENCH_NPM_STAMP := benchmarks/node_modules/.installed
BENCH_ARGS ?=

.PHONY: install serve test lint fmt clean conformance bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NPM_STAMP): clients/js/package.json clients/js/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix clients/js --no-audit --no-fund && touch $@; \
	else echo "npm not found: the JS client tests will be skipped (they fail when CI is set)"; fi

serve: $(STAMP)
	$(BIN)/cumulonimbus-mock --host $(HOST) --port $(PORT)

# Judge a running server by the spec: make conformance BASE_URL=https://host/api
BASE_URL ?= http://$(HOST):$(PORT)/api
conformance: $(STAMP)
	$(BIN)/pytest conformance --base-url $(BASE_URL)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) $(NPM_STAMP) lint
	$(BIN)/pytest

bench: $(STAMP) $(BENCH_NPM_STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

$(BENCH_NPM_STAMP): benchmarks/package.json benchmarks/package-lock.json
	npm ci --prefix benchmarks --no-audit --no-fund && touch $@

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache clients/js/node_modules \
		benchmarks/node_modules
