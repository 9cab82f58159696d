# The two commands of the README: `make run` (server on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint check clean

$(BIN)/voltaro: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(BIN)/voltaro

$(VENV)/.dev-installed: pyproject.toml $(BIN)/voltaro
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/voltaro
	$(BIN)/voltaro serve $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check voltaro console
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
