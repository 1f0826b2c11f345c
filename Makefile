# Quick start on Debian 12 / Raspberry Pi OS: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean deps docs

$(VENV)/.installed: pyproject.toml deploy/build-deps.sh
	PYTHON=$(PYTHON) sh deploy/build-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,keyboard,display,emulator,metrics,docs]'
	touch $@

deps: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/kiosk demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/flush.py
	$(BIN)/python bench/idle_poll.py
	$(BIN)/python bench/tap.py
	$(BIN)/python bench/admin.py

docs: $(VENV)/.installed
	$(BIN)/python deploy/gen-docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
