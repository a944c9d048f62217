"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_service(name: str, configured: bool) -> None:
    """Tests that need PostgreSQL or Redis fail in CI when it is missing; elsewhere they skip."""
    if configured:
        return
    if IN_CI:
        pytest.fail(f"{name} is required in CI but is not configured")
    pytest.skip(f"{name} not configured (run `make services`)")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    require_service("Redis (REDIS_URL)", bool(url))
    return url


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    require_service("PostgreSQL (DATABASE_URL)", url.startswith("postgres"))
    return url


@pytest.fixture
def live_database_url(postgres_url, transactional_db) -> str:
    """The test database as a URL, for server processes started by a test (rows must be committed)."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """After the session, end connections that worker threads of finished event
    loops still hold, so the test database can be dropped at once."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session", autouse=True)
def _quick_password_hashes():
    """Passwords hashed in one iteration in this process (tests/hashers.py says why)."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["tests.hashers.QuickPBKDF2PasswordHasher"]):
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Browser tests last: Playwright's sync API keeps an event loop running in the
    main thread while its browser is open, which no asyncio test can share."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None or "/browser/" in item.nodeid)


@pytest.fixture(autouse=True)
def _close_loop_connections():
    """A test's event loop ends with the test: close the PostgreSQL connections its sockets'
    sends opened on it (chatplatform/loopdb.py), or they would hold the test database."""
    yield
    from chatplatform import loopdb

    loopdb.close_all()
