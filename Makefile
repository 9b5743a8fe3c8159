# make setup | demo | test | lint | bench        (every target sets itself up first)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

# The asset check hashes the weights every time (0.1 s), so a corrupted file is re-fetched.
setup: $(STAMP)
	$(BIN)/python -m facerec.assets --cache-dir $(CACHE)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/facerec demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf workspace .pytest_cache .ruff_cache
