# The one entry point for people and CI. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/crypto_exchange
# Tests and benchmarks ignore a developer's .env: only what they set counts.
NO_ENV_FILE := ENV_FILE=/dev/null
# Browser tests drive Debian's Chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium
# scripts/topology runs Debian's nginx with deploy/nginx.conf, on loopback.
NGINX := /usr/sbin/nginx
# Debian's postgresql package (postgresql-common and the server binaries).
PG_SERVER := /usr/bin/pg_ctlcluster
# Redis: the live stream's fan-out in `make run` (a throwaway one, nothing
# on disk), and the tests' own servers (core/tests/redis_server.py).
REDIS_SERVER := /usr/bin/redis-server
# `make run`'s ports (`make run WEB_PORT=8010` when 8000 is taken), passed to
# the Procfile: the web server; the live stream (uvicorn) on its own port, so
# the site's pages reach it cross-origin; the Redis it subscribes to.
WEB_PORT ?= 8000
STREAM_PORT ?= 8001
DEV_REDIS_PORT ?= 6380
DEV_PORTS := WEB_PORT=$(WEB_PORT) STREAM_PORT=$(STREAM_PORT) DEV_REDIS_PORT=$(DEV_REDIS_PORT)
DEV_REDIS_URL := redis://127.0.0.1:$(DEV_REDIS_PORT)/0
DEV_STREAM := STREAM_ORIGIN=http://127.0.0.1:$(STREAM_PORT) STREAM_CORS_ORIGINS=http://127.0.0.1:$(WEB_PORT) REDIS_URL=$(DEV_REDIS_URL)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run install dev test test-sqlite test-postgres lint format bench bench-load topology s3 setup-minio check check-containers audit reliability vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The PostgreSQL restart test runs a cluster of its own (initdb, postgres
# from /usr/lib/postgresql/<version>/bin) on a free loopback port.
$(PG_SERVER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql

# The package's own service must not stay up (the tests and `make run`
# start their own, on loopback).
$(REDIS_SERVER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server
	$(SUDO) service redis-server stop 2>/dev/null || true

# The package's own service must not stay up: it listens on 0.0.0.0:80.
$(NGINX):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx
	$(SUDO) $(NGINX) -s quit 2>/dev/null || true

## run: the app on SQLite and media/, with demo data, at http://127.0.0.1:8000 (web, matcher, live stream and its Redis: Procfile)
# honcho stops its processes (each in a session of its own) on SIGINT or
# SIGTERM only, and a shell killed by a signal passes nothing on. So honcho
# ignores SIGHUP (a closed terminal), and the shell turns SIGHUP, SIGTERM (an
# IDE's stop button, `timeout`) and SIGINT into a SIGTERM to honcho and waits
# until it has stopped them all (twice: a trap ends the first wait).
run: install $(REDIS_SERVER)
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/python manage.py seed_demo
	trap '' HUP; PATH="$(abspath $(BIN)):$$PATH" DEBUG=true $(DEV_PORTS) $(DEV_STREAM) $(BIN)/honcho start & \
	honcho=$$!; trap 'kill -TERM $$honcho' HUP TERM INT; wait $$honcho; wait $$honcho

## test: the whole suite, on SQLite and on PostgreSQL (127.0.0.1:5432)
test: test-sqlite test-postgres

test-sqlite: dev $(CHROMIUM) $(REDIS_SERVER)
	$(NO_ENV_FILE) $(BIN)/pytest

test-postgres: dev $(CHROMIUM) $(NGINX) $(PG_SERVER) $(REDIS_SERVER)
	$(NO_ENV_FILE) DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: every benchmark in bench/, each rewriting its section of docs/PERFORMANCE.md
bench: dev $(NGINX) $(PG_SERVER) $(REDIS_SERVER)
	$(NO_ENV_FILE) $(BIN)/python -m bench.storage
	$(NO_ENV_FILE) $(BIN)/python -m bench.images
	$(NO_ENV_FILE) $(BIN)/python -m bench.trading
	$(NO_ENV_FILE) $(BIN)/python -m bench.stream
	$(NO_ENV_FILE) POSTGRES_URL=$(POSTGRES_URL) $(BIN)/python -m bench.load

## bench-load: locust through nginx: one instance against three, pages under the heaviest uploads
bench-load: dev $(NGINX)
	$(NO_ENV_FILE) POSTGRES_URL=$(POSTGRES_URL) $(BIN)/python -m bench.load

## topology: the production topology on loopback (nginx, 3 gunicorn, matcher, stream, PostgreSQL, Redis, S3), demo data, until Ctrl-C
topology: dev $(NGINX)
	$(NO_ENV_FILE) POSTGRES_URL=$(POSTGRES_URL) $(BIN)/python -m scripts.topology

## s3: a local S3 server (SeaweedFS) on 127.0.0.1:9000, keys minioadmin/minioadmin
s3: dev
	$(BIN)/python scripts/s3_server.py --port 9000

## setup-minio: check and bootstrap the bucket named in the environment / .env
setup-minio: install
	$(BIN)/python scripts/setup_minio.py

## check: system checks, no missing migration, static files collected as in production
check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

## audit: the pinned requirements, and what they pull in, against PyPI's advisory data
# --strict: a package the service cannot look up fails the audit instead of
# passing unaudited. Not in .ci/run: CI's machines cannot reach the service.
audit: dev
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements-dev.txt

## reliability: docs/RELIABILITY.md from the suite's reliability markers (collects, runs no test)
reliability: dev
	$(NO_ENV_FILE) $(BIN)/python -m core.tests.reliability

## check-containers: hadolint and `docker compose config`, no Docker engine needed
check-containers: dev
	BIN=$(BIN) bash scripts/check_containers.sh

## vendor: static/vendor/ again from the npm registry (the chart library, pinned), checked against SHA256SUMS
LIGHTWEIGHT_CHARTS := 5.3.0
vendor:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent lightweight-charts@$(LIGHTWEIGHT_CHARTS) >/dev/null && tar -xzf lightweight-charts-$(LIGHTWEIGHT_CHARTS).tgz && cp package/dist/lightweight-charts.standalone.production.js package/LICENSE $(CURDIR)/static/vendor/lightweight-charts/ && rm -rf $$tmp
	cd static/vendor/lightweight-charts && sha256sum --check --quiet SHA256SUMS
