# The README's commands. Each builds .venv from nothing when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PKGS   := envelope crypto routing config gateway

.PHONY: demo test test-fast lint bench clean vectors

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m gateway.demo

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check $(PKGS) tests bench
	$(BIN)/ruff format --check $(PKGS) tests bench
	$(BIN)/mypy $(PKGS)
	$(BIN)/lint-imports

# The tiers (tests/README.md): unit (no socket, process or database: enforced),
# contract (the store suite on memory, SQLite and PostgreSQL), component (in-process
# TLS/HTTP/SMTP on loopback), system (real processes, kill -9; marked slow).
# Test files run in parallel on TEST_WORKERS processes (pytest-xdist, one file per
# worker at a time: a file's tests share its fixtures and order). Every server a test
# starts binds a free loopback port and every PostgreSQL test has its own schema, so
# files are independent. TEST_WORKERS=0 runs them one after the other.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The inner loop (under 2 minutes): lint, then the unit and contract tiers.
test-fast: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests/unit tests/contract

bench: $(BIN)/.installed-dev
	$(BIN)/python -m bench

vectors: $(BIN)/.installed-dev
	$(BIN)/python -m tests.vectors.make_vectors

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
