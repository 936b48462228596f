# The benchmark suite (see bench/README.md). Postgres and Redis must be running on 127.0.0.1.
# The fuzzing run (see README, "Fuzzing") needs neither: it runs on a scratch SQLite database.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: bench bench-quick bench-install fuzz fuzz-install

bench-install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[bench]'

bench: bench-install
	$(PYTHON) -m bench.run $(ARGS)

bench-quick: bench-install
	$(PYTHON) -m bench.run --quick $(ARGS)

# The reliability drill (see README): its own Postgres cluster and Redis server, nothing shared.
.PHONY: drill
drill: bench-install
	$(PYTHON) -m drill.run $(ARGS)

fuzz-install:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]'

fuzz: fuzz-install
	$(PYTHON) -m fuzz.run $(ARGS)
