# Two commands on a fresh machine: `make demo` (a dry-run review of the bundled example diff with the
# embedded model) and `make test`. Both set up .venv first; torch comes first so that the CPU build of
# 2.13.0 on disk is taken instead of a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,models]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pttrust models prepare
	$(VENV)/bin/pttrust review --diff examples/example.diff

test: $(STAMP)
	bash scripts/test-deps
	$(VENV)/bin/pytest -q
