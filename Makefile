# Everything installs into .venv so a fresh machine needs only python3 (>= 3.11).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/tuneloop demo

lint: $(STAMP)
	$(BIN)/ruff check middleware workers bot tests

bench: $(STAMP)
	$(BIN)/tuneloop bench

clean:
	rm -rf $(VENV) build *.egg-info
