# `make demo` and `make test` each create .venv and install raynas when missing, with every
# dependency pinned by requirements/lock.txt (the versions the suite was last run against).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.raynas-installed
LOCK   := requirements/lock.txt
CAPS   := requirements/caps.txt
PIP_VERSION := 26.3
UV_VERSION  := 0.13.9
PYTEST_ARGS ?=

# the newest releases, ignoring the lock: what a user gets from `pip install raynas` today
LATEST_VENV  := .venv-latest
LATEST_PY    := $(LATEST_VENV)/bin/python

.PHONY: demo test test-all install lock test-latest clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'pip==$(PIP_VERSION)'
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/raynas demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# also the tests marked slow (minutes each: every strategy killed and resumed, a Ray Train restart)
test-all: $(STAMP)
	$(PY) -m pytest --run-slow $(PYTEST_ARGS)

# Regenerate the lock from pyproject.toml's ranges (newest versions that satisfy them and the caps).
lock: $(STAMP)
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.10 \
		-c $(CAPS) --custom-compile-command 'make lock' -o $(LOCK)

# The suite against the newest releases pyproject.toml admits (a fresh venv, no lock), to see
# early what the next `make lock` will bring.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install -q --upgrade pip
	$(LATEST_PY) -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST_PY) -m pip freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	$(LATEST_PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LATEST_VENV) .pytest_cache raynas_results
