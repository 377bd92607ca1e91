# hpcgate — every developer and CI workflow goes through these targets.
# `make run` and `make test` are the two commands a fresh Debian 12 machine needs.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROTO_DIR := proto
GEN_DIR := client
PROTOS := $(wildcard $(PROTO_DIR)/hpcgate/v1/*.proto)
HPCGATE_LISTEN ?= 127.0.0.1:50051
export HPCGATE_LISTEN

.PHONY: help install generate check-generated lint cluster run test test-unit bench clean

help:
	@echo "make run      install, bring up the local Slurm, serve the API on $(HPCGATE_LISTEN)"
	@echo "make test     the whole suite: stale-stub check, lint, real-Slurm tests"
	@echo "make install  create $(VENV) and install hpcgate[server,dev] (editable)"
	@echo "make generate regenerate client/hpcgate/v1 from proto/"
	@echo "make lint     buf lint, buf format check, ruff, mypy"
	@echo "make cluster  bring up munge, MariaDB, slurmdbd, slurmctld, slurmd (root)"

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,dev]'
	touch $@

install: $(VENV)/.installed

# Stubs are generated with grpcio-tools' protoc (pinned in pyproject.toml) so the output
# is reproducible; buf.gen.yaml describes the same generation for buf users.
generate: install
	$(PY) scripts/generate.py --out $(GEN_DIR)

# Fails when the committed stubs differ from what the protos generate.
check-generated: install
	$(PY) scripts/generate.py --check $(GEN_DIR)

lint: install
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(BIN)/ruff check client/hpcgate/client server tests bench scripts
	$(BIN)/ruff format --check client/hpcgate/client server tests bench scripts
	$(BIN)/mypy client/hpcgate/client server/hpcgate/server

cluster:
	bash scripts/cluster.sh up

run: install cluster
	$(BIN)/hpcgate-server serve --listen $(HPCGATE_LISTEN)

test: install check-generated lint cluster
	$(BIN)/pytest -q

bench: install cluster
	$(PY) bench/status_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
