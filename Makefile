# The benchmark suite (see bench/README.md). Postgres and Redis must be running on 127.0.0.1.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: bench bench-quick bench-install

bench-install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[bench]'

bench: bench-install
	$(PYTHON) -m bench.run $(ARGS)

bench-quick: bench-install
	$(PYTHON) -m bench.run --quick $(ARGS)
