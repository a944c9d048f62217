"""Logs: one formatter for every logger; JSON lines carry the request id."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.servers import daphne

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def json_server(tmp_path):
    env = {"APP_ENV": "test", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "LLM_PROVIDER": "fake"}
    with daphne(env, log_dir=tmp_path) as server:
        request = urllib.request.Request(f"{server.url}/health", headers={"X-Request-ID": "trace-42"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["X-Request-ID"] == "trace-42"
        urllib.request.urlopen(f"{server.url}/metrics", timeout=5).read()
        yield server


def test_every_line_daphne_and_django_write_is_one_json_object(json_server):
    lines = [line for line in json_server.log().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)  # raises on any line that is not JSON
        assert {"event", "level", "timestamp"} <= set(record)


def test_access_log_line_carries_the_request_id(json_server):
    records = [json.loads(line) for line in json_server.log().splitlines() if line.strip()]
    access = [r for r in records if r["event"] == "request_finished" and r.get("request_id") == "trace-42"]
    assert access, records
    assert access[0]["path"] == "/health"
    assert access[0]["status"] == 200
    assert "duration_ms" in access[0]


def test_daphne_own_messages_go_through_the_same_formatter(json_server):
    loggers = {json.loads(line).get("logger", "") for line in json_server.log().splitlines() if line.strip()}
    assert any(name.startswith("daphne") for name in loggers), loggers
