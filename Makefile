# Watchloop: `make demo` runs the whole loop on real parts, `make test` runs the tests,
# `make bench` every benchmark. Each sets itself up on a fresh Debian machine: system
# binaries, a virtualenv, packages.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps test lint demo bench clean

setup: system-deps $(STAMP)

system-deps:
	bash scripts/system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

demo: setup
	$(VENV)/bin/watchloop demo

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .watchloop .watchloop-demo
