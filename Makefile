# Tally — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
export TALLY_TEST_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(or $(TALLY_KAFKA_PORT),9092)
export TALLY_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:$(or $(TALLY_PG_PORT),5432)/postgres
# Passwords (Kafka SASL/SCRAM, PostgreSQL scram-sha-256) are read from the files deploy/local's
# scripts made under .local/ for these ports (see deploy/local/kafka.sh): none is ever typed.

.PHONY: help setup browser infra infra-down lint test test-fast coverage demo up down status bench bench-instances clean

# The packages whose coverage `make test` prints, as import-name=source-directory.
COVERAGE_PACKAGES := tally_contracts=libs/contracts/src/tally_contracts \
	tally_messaging=libs/messaging/src/tally_messaging \
	invoicing=services/invoicing/src/invoicing \
	credits=services/credits/src/credits \
	rules=services/rules/src/rules \
	payments=services/payments/src/payments \
	tally_cli=cli/src/tally_cli \
	console=services/console/src/console

help:
	@echo "make demo   set everything up, start Kafka, PostgreSQL and the four services, play a demo"
	@echo "make test   set everything up and run lint, type checks, unit, integration and e2e tests,"
	@echo "            then print line and branch coverage per package (again: make coverage)"
	@echo "make up / make down / make status   the whole stack in the background"
	@echo "make bench  benchmarks (bench/)"

setup:  ## Python, uv and every dependency (locked)
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user "uv>=0.9,<0.10" \
		|| python3 -m pip install --quiet --break-system-packages "uv>=0.9,<0.10"
	@$(UV) sync --frozen --quiet

browser:  ## Debian's headless Chromium and chromedriver, for the console's browser tests (nothing downloaded at test time)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi

infra: setup  ## Kafka (Maven Central artifacts) and PostgreSQL (Debian binaries) on 127.0.0.1, with identities
	@deploy/local/kafka.sh start
	@TALLY_PG_FAST=$${TALLY_PG_FAST:-1} deploy/local/postgres.sh start

infra-down:
	@deploy/local/kafka.sh stop
	@deploy/local/postgres.sh stop

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy libs services cli tests bench
	@if docker compose version >/dev/null 2>&1; then docker compose config --quiet && echo "docker-compose.yml: valid"; \
	 else echo "docker compose plugin absent: docker-compose.yml not checked"; fi

test: setup browser infra lint  ## every test under coverage (services and CLI run as subprocesses included), then coverage per package
	@rm -f .local/coverage/data .local/coverage/data.*
	@$(UV) run pytest --cov --cov-report=; status=$$?; $(MAKE) --no-print-directory coverage; exit $$status

test-fast: setup  ## only the pure tests: no Kafka, no PostgreSQL
	$(UV) run pytest -m "not integration and not e2e"

coverage:  ## line and branch coverage per package, from the last `make test` (.local/coverage/data)
	@echo "coverage (lines and branches) per package:"
	@for entry in $(COVERAGE_PACKAGES) all=; do \
		name=$${entry%%=*}; dir=$${entry#*=}; \
		if total=$$($(UV) run coverage report $${dir:+--include="$$dir/*"} --format=total 2>/dev/null); \
		then printf '  %-16s %6s%%\n' "$$name" "$$total"; else printf '  %-16s no data\n' "$$name"; fi; \
	done

up: setup infra  ## the stack in the background; TALLY_INSTANCES=N (1-6) processes per service, TALLY_KAFKA_BROKERS=3 a three-broker cluster
	@deploy/local/stack.sh start

down:
	@deploy/local/stack.sh stop
	@deploy/local/kafka.sh stop
	@deploy/local/postgres.sh stop

status:
	@deploy/local/kafka.sh status || true
	@deploy/local/postgres.sh status || true
	@deploy/local/stack.sh status || true

demo: up  ## the stack up and healthy, then a month for three customers and their statements
	@TALLY_KAFKA_BOOTSTRAP=$${TALLY_KAFKA_BOOTSTRAP:-$$(deploy/local/kafka.sh bootstrap)} $(UV) run python -m tally_cli.demo
	@echo "Ops console: http://127.0.0.1:8085 (operator 'operator', password in .local/console/operators/operator.password)"

bench: setup infra
	$(UV) run python -m bench

bench-instances: setup infra  ## ingest with 1, 2 and 3 instances of invoicing (BENCH_EVENTS=50000 unless set)
	BENCH_EVENTS=$${BENCH_EVENTS:-50000} $(UV) run python -m bench.instances

faults: setup infra  ## the long fault run (tests/faults): make faults SEED=<n> [CUSTOMERS=30 COMMANDS=1000 (+5 usage events each) CLUSTER=1 FAULTS_ARGS=...]
	$(UV) run python -m tests.faults.run --seed $(or $(SEED),1) --customers $(or $(CUSTOMERS),30) \
		--commands $(or $(COMMANDS),1000) --private-infra $(if $(CLUSTER),--cluster) $(FAULTS_ARGS)

clean: down
	rm -rf .local
