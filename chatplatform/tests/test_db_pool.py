"""PostgreSQL connections come from a pool: reused across requests and hops, never opened per hop."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connection

from chatplatform.tests.test_settings import resolve
from conftest import require_service

POOL_PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
pool = db.get("OPTIONS", {}).get("pool")
check = pool.pop("check") if pool else None  # a callable: its argument instead
print(json.dumps({
    "pool": pool,
    "CONN_MAX_AGE": db["CONN_MAX_AGE"],
    "check_after": check.args[0] if check else None,
    "ENGINE": db["ENGINE"],
}))
"""

PG = "postgres://u:p@db.internal:5432/chat"


def pool_settings(**overrides: str) -> dict:
    proc = resolve(**overrides, PROBE_CODE=POOL_PROBE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_postgres_gets_a_pool_by_default_with_its_sizes_from_settings():
    assert pool_settings(DATABASE_URL=PG) == {
        "pool": {"min_size": 2, "max_size": 10, "timeout": 2.0},
        "CONN_MAX_AGE": 0,
        # The pool's check (chatplatform/pool.py), given to the pool by this project's backend.
        "check_after": 1.0,
        "ENGINE": "chatplatform.postgresql",
    }
    sized = pool_settings(
        DATABASE_URL=PG,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="4",
        DB_POOL_TIMEOUT="2.5",
        DB_POOL_CHECK_AFTER="0",
    )
    assert sized["pool"] == {"min_size": 1, "max_size": 4, "timeout": 2.5}
    assert sized["check_after"] == 0
    assert pool_settings(DATABASE_URL=PG, DB_POOL="", DB_POOL_MAX_SIZE="")["pool"]["max_size"] == 10


def test_persistent_connections_instead_of_the_pool_need_the_pool_off():
    refused = resolve(DATABASE_URL=PG, DB_CONN_MAX_AGE="60", PROBE_CODE=POOL_PROBE)
    assert refused.returncode != 0
    assert "DB_POOL=true needs DB_CONN_MAX_AGE=0" in refused.stderr

    assert pool_settings(DATABASE_URL=PG, DB_POOL="false", DB_CONN_MAX_AGE="60") == {
        "pool": None,
        "CONN_MAX_AGE": 60,
        "check_after": None,
        "ENGINE": "django.db.backends.postgresql",  # Django's own, checking a persistent connection
    }


def test_send_statements_are_prepared_on_their_second_run_and_planned_once_unless_the_threshold_is_zero():
    probe = POOL_PROBE.replace(
        '"pool": pool,',
        '"prepare": [db["OPTIONS"].get("prepare_threshold"), db["OPTIONS"].get("options")],',
    )

    def prepare(**overrides: str):
        proc = resolve(**{"DATABASE_URL": PG, **overrides}, PROBE_CODE=probe)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])["prepare"]

    generic = "-c plan_cache_mode=force_generic_plan"
    assert (prepare(), prepare(DB_PREPARE_THRESHOLD="5"), prepare(DB_PREPARE_THRESHOLD="0")) == (
        [1, generic],
        [5, generic],
        [None, None],
    )
    # Options the URL gives are kept, the plan's after them.
    assert prepare(DATABASE_URL=f"{PG}?options=-c%20search_path%3Dchat") == [
        1,
        f"-c search_path=chat {generic}",
    ]


def test_sqlite_has_no_pool():
    assert pool_settings()["pool"] is None


def pooled_wrapper(alias: str, **pool):
    """A connection of this project's backend configured as settings.py configures the
    default one with DB_POOL on (the suite's own process runs without the pool: see the
    Makefile's test target)."""
    from chatplatform.postgresql.base import DatabaseWrapper

    options = {
        **connection.settings_dict["OPTIONS"],
        "pool": {"min_size": 1, "max_size": 2, "timeout": 2, **pool},
    }
    return DatabaseWrapper({**connection.settings_dict, "OPTIONS": options, "CONN_MAX_AGE": 0}, alias=alias)


def backend_pid(db) -> int:
    """The server process behind the connection `db` hands out now."""
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_closed_connection_goes_back_to_the_pool_and_the_next_hop_reuses_it():
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    from chatplatform.pool import check_unless_recent

    pooled = pooled_wrapper("pooled", check=check_unless_recent(1.0))
    assert pooled.pool is not None

    try:
        seen = [backend_pid(pooled)]
        for _ in range(5):
            # What Django does at the end of every request and database_sync_to_async hop.
            pooled.close_if_unusable_or_obsolete()
            pooled.close()
            seen.append(backend_pid(pooled))
        # Without the pool each of the six hops would have its own server process; with it,
        # the hops take turns on the pool's few open connections.
        assert len(set(seen)) <= pooled.pool.get_stats()["pool_size"] < len(seen)
    finally:
        pooled.close()
        pooled.close_pool()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("check_after", [60, 0])
def test_the_pool_checks_a_connection_unless_it_handed_it_out_within_the_last_seconds(check_after):
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    from chatplatform.pool import check_unless_recent

    pooled = pooled_wrapper(
        f"checked-{check_after}", min_size=1, max_size=1, check=check_unless_recent(check_after)
    )

    try:
        first = backend_pid(pooled)
        pooled.close()  # back to the pool
        with connection.cursor() as cursor:  # the database drops that connection meanwhile
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        if check_after:
            # Handed out a moment ago: handed out again unchecked, and the hop that gets it fails.
            with pytest.raises(OperationalError):
                backend_pid(pooled)
            pooled.close()  # the pool discards the broken connection ...
            assert backend_pid(pooled) != first  # ... and the next hop gets a new one
        else:
            # Checked every time: the pool finds it broken and hands out a new one.
            assert backend_pid(pooled) != first
    finally:
        pooled.close()
        pooled.close_pool()
