"""Settings resolve from the environment with safe defaults (each case in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "APP_ENV": settings.APP_ENV,
    "DEBUG": settings.DEBUG,
    "ENGINE": db["ENGINE"],
    "NAME": str(db["NAME"]),
    "HOST": db.get("HOST", ""),
    "PORT": str(db.get("PORT", "")),
    "USER": db.get("USER", ""),
    "PASSWORD": db.get("PASSWORD", ""),
    "CHANNEL_BACKEND": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "CACHE_BACKEND": settings.CACHES["default"]["BACKEND"],
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "LOG_FORMAT": settings.LOG_FORMAT,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "LLM_TIMEOUT": settings.LLM_TIMEOUT,
}))
"""

_OURS = ("APP_", "LLM_", "CHAT_", "POSTGRES_", "LOG_", "SECURE_", "DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY",
         "ALLOWED_HOSTS", "CSRF_", "SESSION_", "ALLOW_SIGNUP", "DB_")  # fmt: skip


def resolve(*, PROBE_CODE: str = PROBE, **overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(DJANGO_SETTINGS_MODULE="chatplatform.settings", CHATPLATFORM_IGNORE_DOTENV="1", **overrides)
    return subprocess.run(
        [sys.executable, "-c", PROBE_CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def settings_with(**overrides: str) -> dict:
    proc = resolve(**overrides)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fresh_checkout_defaults_to_sqlite_in_memory_layer_and_debug():
    s = settings_with()
    assert s["APP_ENV"] == "development"
    assert s["DEBUG"] is True
    assert s["ENGINE"] == "django.db.backends.sqlite3"
    assert s["NAME"].endswith("db.sqlite3")
    assert s["CHANNEL_BACKEND"] == "conversations.layers.ChatInMemoryChannelLayer"
    assert s["CACHE_BACKEND"].endswith("LocMemCache")
    assert s["LOG_FORMAT"] == "console"


def test_empty_values_fall_back_to_defaults():
    s = settings_with(APP_ENV="", DEBUG="", DATABASE_URL="", REDIS_URL="", LLM_TIMEOUT="  ", ALLOWED_HOSTS="")
    assert s["APP_ENV"] == "development"
    assert s["ENGINE"] == "django.db.backends.sqlite3"
    assert s["CHANNEL_BACKEND"] == "conversations.layers.ChatInMemoryChannelLayer"
    assert s["LLM_TIMEOUT"] == 30.0
    assert "localhost" in s["ALLOWED_HOSTS"]


def test_postgres_variables_are_composed_into_one_url():
    s = settings_with(
        POSTGRES_HOST="db.internal", POSTGRES_PORT="6543", POSTGRES_DB="chat", POSTGRES_USER="app",
        POSTGRES_PASSWORD="p@ss:word",
    )  # fmt: skip
    assert s["ENGINE"] == "chatplatform.postgresql"  # Django's, its pool checked as chatplatform/pool.py says
    assert (s["HOST"], s["PORT"], s["NAME"], s["USER"], s["PASSWORD"]) == (
        "db.internal", "6543", "chat", "app", "p@ss:word",
    )  # fmt: skip


def test_database_url_wins_over_postgres_variables():
    s = settings_with(DATABASE_URL="postgres://u:p@h1:5432/one", POSTGRES_HOST="h2")
    assert (s["HOST"], s["NAME"]) == ("h1", "one")


def test_redis_url_selects_redis_channel_layer_and_cache():
    s = settings_with(REDIS_URL="redis://127.0.0.1:6379/3")
    assert s["CHANNEL_BACKEND"] == "conversations.layers.ChatRedisChannelLayer"
    assert s["CACHE_BACKEND"] == "chatplatform.cache.ChatRedisCache"


def test_production_without_secret_key_refuses_to_start():
    proc = resolve(APP_ENV="production")
    assert proc.returncode != 0
    assert "SECRET_KEY is required when APP_ENV=production" in proc.stderr


def test_production_defaults_are_secure():
    s = settings_with(APP_ENV="production", SECRET_KEY="k" * 60)
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] is True
    assert s["LOG_FORMAT"] == "json"


def test_unknown_app_env_is_refused():
    proc = resolve(APP_ENV="staging-ish")
    assert proc.returncode != 0
    assert "APP_ENV must be" in proc.stderr


@pytest.mark.parametrize("secret", ["a-long-random-secret-" + "z" * 40])
def test_check_deploy_passes_in_production(secret):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(APP_ENV="production", SECRET_KEY=secret, ALLOWED_HOSTS="chat.example.com",
               CHATPLATFORM_IGNORE_DOTENV="1")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
