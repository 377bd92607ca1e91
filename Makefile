# hpcgate — every developer and CI workflow goes through these targets.
# `make run` and `make test` are the two commands a fresh Debian 12 machine needs.

SHELL := /bin/bash
VENV ?= .venv
# The system interpreter, not a per-user one (pyenv under /root): per-user worker
# processes run the venv's interpreter as the target user, so it must be readable by all.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROTO_DIR := proto
GEN_DIR := client
PROTOS := $(wildcard $(PROTO_DIR)/hpcgate/v1/*.proto)
HPCGATE_LISTEN ?= 127.0.0.1:50051
HPCGATE_HTTP_LISTEN ?= 127.0.0.1:8080
export HPCGATE_LISTEN HPCGATE_HTTP_LISTEN

.PHONY: help install generate check-generated lint cluster postgres run run-cluster test test-unit \
	test-pyslurm bench clean web

help:
	@echo "make run      install, bring up the local Slurm, serve the API on $(HPCGATE_LISTEN)"
	@echo "              (and Connect, gRPC-Web and the status page on http://$(HPCGATE_HTTP_LISTEN)/)"
	@echo "make run-cluster  cluster mode: 2 replicas on PostgreSQL behind HAProxy on 127.0.0.1:50060"
	@echo "make test     the whole suite: stale-stub check, lint, real-Slurm tests"
	@echo "make test-unit the tests that need no cluster (parsers, validation, config, ...)"
	@echo "make test-pyslurm pyslurm 24.11 against a live Slurm 24.11 (Debian trixie root, scripts/slurm24.sh)"
	@echo "make install  create $(VENV) and install hpcgate[server,dev] (editable)"
	@echo "make generate regenerate client/hpcgate/v1 from proto/"
	@echo "make web      build the status page script and web/dist/check.js (Node, npm ci, protoc-gen-es, esbuild)"
	@echo "make lint     buf lint, buf format check, buf breaking, ruff, mypy"
	@echo "make cluster  bring up munge, MariaDB, slurmdbd, slurmctld, slurmd (root)"
	@echo "make postgres bring up the local PostgreSQL on 127.0.0.1:55432 (root)"

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { test "$$(id -u)" = 0 && \
	  apt-get install -y -q python3-venv python3-dev >/dev/null; } || { echo \
	  "make install: $(PYTHON) lacks venv; install python3-venv (apt) or set PYTHON=" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
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

# The last landed v1 the protos must stay wire- and source-compatible with (buf breaking,
# FILE rules); move it forward when a release lands. Needs the git history (not shallow);
# buf clones this repository to read it, 1000 commits deep (its default, 50, falls short).
BUF_BASELINE ?= ac4f29e

lint: install
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(BIN)/buf breaking --against '.git#ref=$(BUF_BASELINE),depth=1000'
	$(BIN)/ruff check client/hpcgate/client server tests bench scripts examples
	$(BIN)/ruff format --check client/hpcgate/client server tests bench scripts examples
	$(BIN)/mypy client/hpcgate/client server/hpcgate/server examples
	$(BIN)/lint-imports
	$(PY) scripts/check_slurm_boundary.py

# The browser side of the Connect / gRPC-Web listener (web/README.md): Node and web/'s locked
# packages (scripts/node.sh), TypeScript from the protos (grpcio-tools' protoc with
# protoc-gen-es, hence `install`), then tsc (strict) and esbuild: the status page's
# server/hpcgate/server/web/static/status.js and the Node check web/dist/check.js.
web: install
	bash scripts/node.sh web && cd web && npm run generate && npm run build

cluster:
	bash scripts/cluster.sh up

# A dedicated PostgreSQL cluster for cluster mode and its tests (dev/test only: no
# passwords on loopback); `bash scripts/postgres.sh down` stops it.
postgres:
	bash scripts/postgres.sh up

# Prints ready-to-use access tokens (the invoking user's; alice's too when that is root),
# then serves.
RUN_USER ?= $(or $(SUDO_USER),$(shell id -un))
run: install web cluster
	@bash scripts/run-tokens.sh $(BIN) $(HPCGATE_LISTEN) $(RUN_USER)
	$(BIN)/hpcgate-server serve --listen $(HPCGATE_LISTEN) --http-listen $(HPCGATE_HTTP_LISTEN)

# Cluster mode (docs/deployment.md): PostgreSQL, replicas on 127.0.0.1:50061 and :50062
# (deploy/cluster-replica-*.toml), HAProxy on 127.0.0.1:50060; prints tokens, then
# serves until Ctrl-C.
run-cluster: install web cluster
	@bash scripts/run-cluster.sh $(BIN) $(RUN_USER)

test: install check-generated lint web cluster postgres
	$(BIN)/pytest -q

# The tests that need no Slurm daemons: seconds, not minutes (privsep tests still want root).
# Tests are marked `slurm` from the fixtures they use (tests/conftest.py).
test-unit: install
	$(BIN)/pytest -q -m "not slurm and not pyslurm_live"

# pyslurm 24.11 against a live Slurm 24.11 in the Debian trixie root of scripts/slurm24.sh
# (built once and cached: about 2.5 minutes the first time). `cluster` creates the users
# the root copies. Then the compute and watch tests again, inside the root, their gateways
# on pyslurm (tests/conftest.py), all but the outage test: it stops slurmctld through
# scripts/cluster.sh, which manages the 22.05 cluster only.
test-pyslurm: cluster
	bash scripts/slurm24.sh up
	bash scripts/slurm24.sh run pytest -q -m pyslurm_live tests/test_pyslurm_live.py
	bash scripts/slurm24.sh run pytest -q tests/test_compute.py tests/test_watch.py \
	  --deselect tests/test_watch.py::test_stream_survives_a_controller_outage

bench: install web cluster postgres
	$(PY) bench/status_bench.py
	$(PY) bench/watch_bench.py
	$(PY) bench/files_bench.py
	$(PY) bench/transfers_bench.py
	$(PY) bench/jobs_bench.py
	$(PY) bench/client_bench.py
	$(PY) bench/cluster_bench.py
	$(PY) bench/http_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
