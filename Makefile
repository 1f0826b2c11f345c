# Quick start on Debian 12 / Raspberry Pi OS: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-quick bench-readme torture clean deps docs

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

# The full benchmark (about 10 minutes on 2 cores): the report on the terminal, the JSON in bench/results.json.
bench: $(VENV)/.installed
	$(BIN)/python -m bench --out bench/results.json
	$(BIN)/python bench/admin.py

# The CI-sized run (about 2 minutes): every key, smaller sizes.
bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench --quick --json --out bench-quick.json

# The README's "Performance and guarantees" table, from bench/results.json (after `make bench`).
bench-readme: $(VENV)/.installed
	$(BIN)/python -m bench --from bench/results.json --readme README.md

# The torture tests at full length (200 kills, thousands of fuzzing examples); `make test` runs them bounded.
torture: $(VENV)/.installed
	$(BIN)/python -m pytest -m torture --torture-long

docs: $(VENV)/.installed
	$(BIN)/python deploy/gen-docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
