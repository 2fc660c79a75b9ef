# cqrs-lab: `make run` sets up and runs the whole system natively; `make test` sets up and runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# Tests run against their own databases and RabbitMQ vhost, so they never disturb a running `make run`.
TEST_WRITE_DATABASE_URL ?= postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test
TEST_READ_DATABASE_URL ?= postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read_test
TEST_WRITE_RABBITMQ_URL ?= amqp://write-service:write-service@127.0.0.1:5672/cqrs_test
TEST_READ_RABBITMQ_URL ?= amqp://read-service:read-service@127.0.0.1:5672/cqrs_test
PYTEST := $(BIN)/pytest
# The tools a target needs besides the venv, installed from Debian's packages when missing.
INSTALL_WRK = bash deploy/local/install-missing.sh wrk wrk "the HTTP benchmark"
INSTALL_BROWSER = bash deploy/local/install-missing.sh chromium chromium "the live view's browser test" && \
	bash deploy/local/install-missing.sh chromedriver chromium-driver "the live view's browser test"
PYTEST_ARGS ?=
# TESTS narrows a tier to some of its files or directories (`make test-integration
# TESTS=tests/integration/read/test_rebuild_read_models.py`); each tier runs the part of TESTS under it.
TESTS ?=
tier_tests = $(if $(TESTS),$(filter $(1)%,$(TESTS)),$(1))
# The environment of each kind of test run: the write side's and the read side's integration tiers (each
# service's Django settings), and the whole system (e2e, chaos).
WRITE_TIER_ENV = WRITE_DATABASE_URL=$(TEST_WRITE_DATABASE_URL) RABBITMQ_URL=$(TEST_WRITE_RABBITMQ_URL) \
	TEST_READ_RABBITMQ_URL=$(TEST_READ_RABBITMQ_URL)
READ_TIER_ENV = READ_DATABASE_URL=$(TEST_READ_DATABASE_URL) RABBITMQ_URL=$(TEST_READ_RABBITMQ_URL)
SYSTEM_TIER_ENV = WRITE_DATABASE_URL=$(TEST_WRITE_DATABASE_URL) READ_DATABASE_URL=$(TEST_READ_DATABASE_URL) \
	TEST_WRITE_RABBITMQ_URL=$(TEST_WRITE_RABBITMQ_URL) TEST_READ_RABBITMQ_URL=$(TEST_READ_RABBITMQ_URL)
# What a tier on the test databases needs first. `make test` sets it up once and runs the tiers with
# SETUP_DONE=1; a tier run alone sets it up itself.
TEST_SETUP = infra migrate-test
ifdef SETUP_DONE
TEST_SETUP =
endif

# Every target runs the system on this machine, on the development secrets (config.py's defaults, the local
# clusters' passwords) with DJANGO_DEBUG off as deployed: this says it is a development machine, without which
# every process refuses to start (cqrs_common/development_secrets.py). Set it to false to see the refusal.
export ALLOW_DEVELOPMENT_SECRETS ?= true

# The virtualenv's editable install points at the checkout that made it. Every process a target starts (the
# services, the tiers' subprocesses, the benchmark's producers) runs this checkout's code instead, so two
# checkouts can share one virtualenv and still test their own changes.
ifeq ($(findstring $(CURDIR)/services:$(CURDIR),$(PYTHONPATH)),)
export PYTHONPATH := $(CURDIR)/services:$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
endif

.PHONY: help venv infra migrate migrate-test run up down logs ps test test-unit test-integration test-e2e test-deploy test-compose test-chaos chaos-prerequisites test-bench bench experiment lint format clean

help:
	@echo "make run      set up infrastructure and run write-service, read-service, relay, projector (and Prometheus)"
	@echo "make up       the whole system in Docker containers, in the background (make down removes it all; make logs, make ps)"
	@echo "make test     set up infrastructure and run every test (unit, integration, e2e, deploy, compose, chaos)"
	@echo "make lint     ruff"
	@echo "make bench    the benchmark harness, quick mode (BENCH_ARGS=--full for medians of 3 full runs)"
	@echo "make experiment NAME=<name> [ARGS=...]   a guided experiment against the running system (docs/lab.md)"
	@echo "make test-unit | test-integration | test-e2e | test-deploy | test-compose | test-chaos | test-bench"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

infra:
	bash deploy/local/infra.sh
	bash deploy/local/ensure-prometheus.sh

# Migrations first, then logical replication of `events` (the publication needs the table).
migrate: venv infra
	$(PY) -m write_service migrate --no-input
	$(PY) -m read_service migrate --no-input
	REPLICATION_PAIRS=cqrs_write:cqrs_read bash deploy/local/replication.sh

migrate-test: venv infra
	WRITE_DATABASE_URL=$(TEST_WRITE_DATABASE_URL) $(PY) -m write_service migrate --no-input -v0
	READ_DATABASE_URL=$(TEST_READ_DATABASE_URL) $(PY) -m read_service migrate --no-input -v0
	REPLICATION_PAIRS=cqrs_write_test:cqrs_read_test bash deploy/local/replication.sh

# Native addresses (CONTRACT.md): write-service 8001, read-service 8002, relay metrics 9101, projector 9102.
export WRITE_SERVICE_BIND ?= 127.0.0.1:8001
export READ_SERVICE_BIND ?= 127.0.0.1:8002
# Projectors `make run` starts (`make run PROJECTORS=2`): they share the partitions of the projector's events,
# each active on those it owns, a standby on the others (docs/decisions/0008); metrics on 9102, 9112, ...
export PROJECTORS ?= 1

# Logs: the readable console rendering when make runs at a terminal, JSON lines otherwise.
run: migrate
	mkdir -p var
	@if command -v prometheus >/dev/null; then echo "Prometheus: http://127.0.0.1:9090 (alerts: /alerts, targets: /targets)"; fi
	LOG_FORMAT=$${LOG_FORMAT:-$$(test -t 1 && echo console || echo json)} \
		$(BIN)/supervisord -n -c deploy/local/supervisord.conf

# The same system in containers (docker-compose.yml) through deploy/local/compose.sh, with Compose v2 or v1: it
# installs and starts a Docker engine when there is none, builds the images (CQRS_IMAGES=local: from Debian's
# packages, for machines without a registry), starts everything in the background and waits until healthy.
COMPOSE_SH := bash deploy/local/compose.sh
up:
	$(COMPOSE_SH) up
down:
	$(COMPOSE_SH) down
logs:
	$(COMPOSE_SH) logs --follow --tail=100
ps:
	$(COMPOSE_SH) ps

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv infra migrate-test
	$(MAKE) --no-print-directory SETUP_DONE=1 test-unit test-integration test-e2e test-deploy test-compose test-chaos

test-unit: venv
	$(if $(call tier_tests,tests/unit),$(PYTEST) $(call tier_tests,tests/unit) $(PYTEST_ARGS))

test-integration: venv
	$(if $(call tier_tests,tests/integration/write),$(WRITE_TIER_ENV) $(PYTEST) $(call tier_tests,tests/integration/write) \
		--ds=write_service.settings -m "not chaos and not bench" $(PYTEST_ARGS))
	$(if $(call tier_tests,tests/integration/read),$(READ_TIER_ENV) $(PYTEST) $(call tier_tests,tests/integration/read) \
		--ds=read_service.settings -m "not chaos and not bench" $(PYTEST_ARGS))

# The whole system on the test databases, migrated and subscribed (replication.sh) as `make run` has them.
# wrk is installed if missing (the benchmark harness's test runs it), and Debian's chromium and chromium-driver
# (the live view's browser test, about 2 minutes of the tier).
test-e2e: venv $(TEST_SETUP)
	$(INSTALL_WRK)
	$(INSTALL_BROWSER)
	$(if $(call tier_tests,tests/e2e),$(SYSTEM_TIER_ENV) $(PYTEST) $(call tier_tests,tests/e2e) -m "not chaos and not bench" \
		$(PYTEST_ARGS))

# Offline checks of Compose, Kubernetes and the Tiltfile; prerequisites.sh installs docker-compose if missing.
test-deploy: venv
	bash deploy/local/prerequisites.sh
	$(if $(call tier_tests,tests/deploy),$(PYTEST) $(call tier_tests,tests/deploy) $(PYTEST_ARGS))

# The system in containers (tests/compose): an engine installed and started when absent, images built (local
# ones from Debian's packages where no registry answers), then one Compose project on ports of its own.
test-compose: venv
	COMPOSE_PROJECT_NAME=cqrs-lab-test $(COMPOSE_SH) prepare
	$(if $(call tier_tests,tests/compose),COMPOSE_PROJECT_NAME=cqrs-lab-test $(PYTEST) $(call tier_tests,tests/compose) \
		$(PYTEST_ARGS))

# Failure injection (chaos) and benchmarks (bench, numbers printed) of every tier, each tier with its own
# settings as above; pytest's exit code 5 (no test of that mark in a tier) is not a failure.
# nftables is installed if missing (tests/support/network_cut.py: a connection cut without closing it).
test-chaos: MARK := chaos
test-chaos: chaos-prerequisites
test-bench: MARK := bench
test-bench: PYTEST_ARGS += -s
test-chaos test-bench: venv $(TEST_SETUP)
	$(if $(call tier_tests,tests/integration/write),$(WRITE_TIER_ENV) $(PYTEST) $(call tier_tests,tests/integration/write) \
		--ds=write_service.settings -m $(MARK) $(PYTEST_ARGS) || [ $$? -eq 5 ])
	$(if $(call tier_tests,tests/integration/read),$(READ_TIER_ENV) $(PYTEST) $(call tier_tests,tests/integration/read) \
		--ds=read_service.settings -m $(MARK) $(PYTEST_ARGS) || [ $$? -eq 5 ])
	$(if $(strip $(call tier_tests,tests/e2e) $(call tier_tests,tests/chaos)),$(SYSTEM_TIER_ENV) $(PYTEST) \
		$(call tier_tests,tests/e2e) $(call tier_tests,tests/chaos) -m $(MARK) $(PYTEST_ARGS) || [ $$? -eq 5 ])

chaos-prerequisites:
	bash deploy/local/install-missing.sh nft nftables "make test-chaos"

# The benchmark harness on databases and a vhost of its own (cqrs_write_bench, cqrs_read_bench, cqrs_bench),
# which it creates, migrates and empties; results in bench/results/. wrk is installed if missing.
BENCH_ARGS ?=
bench: venv
	$(INSTALL_WRK)
	$(PY) -m bench $(BENCH_ARGS)

# The laboratory (docs/lab.md): one experiment against the system `make run` is running (LAB_SYSTEM=compose: the
# one `make up` runs); without NAME, the list.
experiment: venv
	$(PY) -m lab $(NAME) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
