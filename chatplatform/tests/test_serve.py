"""The production launcher: daphne on uvloop; asyncio's loop on request; plain daphne still serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.servers import ROOT, daphne

pytestmark = pytest.mark.multiprocess

ENV = {"APP_ENV": "test", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "LLM_PROVIDER": "fake"}


def loop_of(log_text: str) -> str | None:
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "runtime_started":
            return record["event_loop"]
    return None


def started_on(log_text: str) -> str:
    """The loop the runtime says it started on. The first request starts the runtime and
    waits for it, and the line is written (unbuffered) before that request is answered,
    so it is in the log once `daphne()` has had /health answered."""
    found = loop_of(log_text)
    assert found is not None, log_text
    return found


def new_loop_module(event_loop: str) -> subprocess.CompletedProcess:
    code = (
        "import asyncio; from chatplatform.serve import choose_event_loop; "
        f"print(choose_event_loop({event_loop!r})); print(type(asyncio.new_event_loop()).__module__)"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_launcher_makes_uvloop_the_loop_daphne_builds():
    done = new_loop_module("uvloop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["uvloop", "uvloop"]


def test_asyncio_keeps_asyncio_own_loop():
    done = new_loop_module("asyncio")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["asyncio", "asyncio.unix_events"]


def test_an_unknown_loop_stops_the_launcher_with_the_choices():
    done = subprocess.run(
        [sys.executable, "-m", "chatplatform.serve", "chatplatform.asgi:application"],
        cwd=ROOT,
        env={**os.environ, **ENV, "CHAT_EVENT_LOOP": "trio"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "CHAT_EVENT_LOOP must be uvloop or asyncio, not 'trio'" in done.stderr


def test_a_served_process_runs_on_uvloop(tmp_path):
    with daphne(ENV, log_dir=tmp_path, name="uvloop") as server:
        assert started_on(server.log()) == "uvloop"


def test_chat_event_loop_asyncio_serves_on_asyncio_own_loop(tmp_path):
    with daphne({**ENV, "CHAT_EVENT_LOOP": "asyncio"}, log_dir=tmp_path, name="asyncio") as server:
        assert started_on(server.log()) == "asyncio"


def test_plain_daphne_still_serves_the_application(tmp_path):
    with daphne(ENV, log_dir=tmp_path, name="plain", module="daphne") as server:
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
            assert response.status == 200
        assert started_on(server.log()) == "asyncio"
