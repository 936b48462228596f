# The benchmark suite (see bench/README.md). Postgres and Redis must be running on 127.0.0.1.
# The fuzzing run (see README, "Fuzzing") needs neither: it runs on a scratch SQLite database.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: bench bench-quick bench-install fuzz fuzz-install lock lock-upgrade

# Every install goes through the lock files: requirements.txt (what the gateway runs on) and
# requirements-dev.txt (that, plus the test and benchmark extras and the client's dependencies,
# at the same versions). The client (client/) is a distribution of its own, installed beside.
INSTALL_DEV = python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -r requirements-dev.txt \
	&& $(VENV)/bin/pip install -q --no-deps -e . && $(VENV)/bin/pip install -q --no-deps -e ./client

bench-install:
	$(INSTALL_DEV)

bench: bench-install
	$(PYTHON) -m bench.run $(ARGS)

bench-quick: bench-install
	$(PYTHON) -m bench.run --quick $(ARGS)

# The reliability drill (see README): its own Postgres cluster and Redis server, nothing shared.
.PHONY: drill
drill: bench-install
	$(PYTHON) -m drill.run $(ARGS)

fuzz-install:
	$(INSTALL_DEV)

fuzz: fuzz-install
	$(PYTHON) -m fuzz.run $(ARGS)

# The admin's pictures in docs/screenshots, taken by its browser test (needs Debian's chromium).
.PHONY: screenshots
screenshots: bench-install
	$(VENV)/bin/pytest -q tests/browser --screenshots docs/screenshots

# Refresh the lock files from pyproject.toml, and the dev lock from the client's
# client/pyproject.toml too (needs the package index). `lock` keeps every pin
# that still satisfies pyproject.toml and adds what is new; `lock-upgrade` moves every package
# to its newest allowed release. Review the diff, run the tests, commit both files.
UV = $(VENV)/bin/uv
COMPILE = $(UV) pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'

lock:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q uv
	$(COMPILE) $(UPGRADE) -o requirements.txt
	$(COMPILE) $(UPGRADE) client/pyproject.toml --extra test --extra bench -c requirements.txt \
		-o requirements-dev.txt

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade
