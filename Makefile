# `make install` (the .venv with Voltaro), `make run` (install, then serve on SQLite) and
# `make test`. Each step says what it does: the first install takes about a minute.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint check clean

$(BIN)/voltaro: pyproject.toml
	@echo "make: creating $(VENV) with $(PYTHON) (the first time takes about a minute)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV)"
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "make: installing Voltaro and its dependencies into $(VENV)"
	$(BIN)/python -m pip install -q -e .
	touch $(BIN)/voltaro
	@echo "make: ready: $(BIN)/voltaro"

$(VENV)/.dev-installed: pyproject.toml $(BIN)/voltaro
	@echo "make: installing the test and lint tools into $(VENV)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/voltaro

# Installs first (in the foreground), then serves: `make run &` only backgrounds a
# server that is already installed.
run: $(BIN)/voltaro
	@echo "make: starting $(BIN)/voltaro serve $(ARGS)"
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
