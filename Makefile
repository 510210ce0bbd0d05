# taskq: `make run` starts the service, `make test` runs the whole suite. Both bootstrap .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## start the service (embedded PostgreSQL unless TASKQ_DATABASE_URL is set)
	exec $(BIN)/taskq serve

migrate: $(STAMP) ## apply the dbmate migrations and exit
	$(BIN)/taskq migrate

schema: $(STAMP) ## regenerate db/schema.sql from the migrations
	$(BIN)/python scripts/dump_schema.py

test: $(STAMP) ## run the whole test suite against a real PostgreSQL
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check service tests scripts
	$(BIN)/ruff format --check service tests scripts
	$(BIN)/mypy

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format service tests scripts
	$(BIN)/ruff check --fix service tests scripts

screenshots: $(STAMP) ## run the console's browser tests and keep their screenshots for the README (tests/browser/screenshots)
	TASKQ_SCREENSHOT_DIR=tests/browser/screenshots $(BIN)/python -m pytest tests/browser -q

bench: $(STAMP) ## run the benchmarks and write evaluation_results.md (PEERS=1: then the peer queues too)
	PEERS=$(PEERS) $(BIN)/python -m scripts.bench

eval: bench ## alias of bench

.PHONY: help venv run migrate schema test lint fmt screenshots bench eval
