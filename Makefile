# The README's commands. `make run` starts everything; `make test` passes the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench install clean env-example

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
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

bench: install
	bash bench/install-tools.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

# .env.example is generated from the settings table in myapp/config.py.
env-example: install
	$(BIN)/python -c 'from myapp.config import env_example; print(env_example(), end="")' > .env.example

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
