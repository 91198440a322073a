# Everything installs into .venv so a fresh machine needs only python3 (>= 3.11).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The anonymizer is compiled at install (setup.py): an edit to it reinstalls.
ANON_SRC := $(wildcard middleware/anonymizer/*.py)

.PHONY: install test demo lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py $(ANON_SRC)
	$(BIN)/pip install -q -e '.[dev]'
	@$(BIN)/python -c "import middleware.anonymizer as a; print('anonymizer build:', a.BUILD)"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/tuneloop demo

lint: $(STAMP)
	$(BIN)/ruff check middleware workers bot tests setup.py

bench: $(STAMP)
	$(BIN)/tuneloop bench

clean:
	rm -rf $(VENV) build *.egg-info
	find middleware -name '*.so' -delete
	rm -f *__mypyc*.so
