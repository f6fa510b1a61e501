# The two commands of the README: `make run` and `make test`. Everything else is plumbing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= var
# pytest-xdist workers for `make test` (auto: one per CPU); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

.PHONY: run test install test-deps lint typecheck unit docs clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	@test -f $(DATA)/tayori.toml || $(BIN)/tayori init --data-dir $(DATA) --domain example.test --demo
	$(BIN)/tayori serve --config $(DATA)/tayori.toml

test-deps:
	bash scripts/install-test-deps.sh

lint: install
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: install
	$(BIN)/mypy

docs: install
	$(BIN)/tayori docs --write docs

test: install test-deps lint typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
