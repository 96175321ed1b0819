# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
# `make lint` (ruff: pyproject.toml's [tool.ruff]) is run by .ci/run before the tests.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m edn.cli demo

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs
