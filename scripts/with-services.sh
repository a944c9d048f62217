#!/usr/bin/env bash
# Run a command with DATABASE_URL and REDIS_URL pointing at the loopback
# PostgreSQL and Redis when they answer. In CI (CI=true) they must answer:
# tests that need them fail rather than skip.
set -euo pipefail
db_url=${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/chatplatform}
redis_url=${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}

if [ "${CI:-}" = "true" ] || { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }; then
  export DATABASE_URL=${DATABASE_URL:-$db_url}
fi
if [ "${CI:-}" = "true" ] || { command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; }; then
  export REDIS_URL=${REDIS_URL:-$redis_url}
fi
echo "with-services: DATABASE_URL=${DATABASE_URL:-<sqlite>} REDIS_URL=${REDIS_URL:-<in-memory>}" >&2
exec "$@"
