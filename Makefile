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

.PHONY: install serve test lint fmt clean

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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) $(NPM_STAMP) lint
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache clients/js/node_modules
