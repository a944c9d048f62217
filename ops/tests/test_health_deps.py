"""/health/deps over a real daphne: 200 with everything up, 503 in bounded time when a dependency is not."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.servers import daphne

pytestmark = pytest.mark.multiprocess


class Blackhole:
    """A TCP port that accepts connections and never answers: the worst kind of outage."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


def get_deps(server) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{server.url}/health/deps", timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, json.loads(body), time.monotonic() - started


@pytest.fixture
def base_env(live_database_url, redis_url) -> dict[str, str]:
    return {
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "LLM_PROVIDER": "fake",
        "LOG_LEVEL": "WARNING",
    }


def test_all_dependencies_up_answers_200_with_status_and_latency(base_env, tmp_path):
    with daphne(base_env, log_dir=tmp_path) as server:
        status, body, _ = get_deps(server)
    assert status == 200
    assert set(body["checks"]) == {"database", "channel_layer", "provider"}
    for check in body["checks"].values():
        assert check["status"] == "up"
        assert isinstance(check["latency_ms"], float)
    assert body["checks"]["channel_layer"]["backend"] == "ChatRedisChannelLayer"
    assert body["checks"]["database"]["engine"] == "postgresql"


def test_redis_that_never_answers_gives_503_within_three_seconds(base_env, blackhole, tmp_path):
    env = {**base_env, "REDIS_URL": f"redis://127.0.0.1:{blackhole.port}/0"}
    with daphne(env, log_dir=tmp_path) as server:
        status, body, elapsed = get_deps(server)
    assert status == 503
    assert body["checks"]["channel_layer"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"
    assert elapsed < 3.5


def test_database_that_never_answers_gives_503_within_three_seconds(base_env, blackhole, tmp_path):
    env = {**base_env, "DATABASE_URL": f"postgres://postgres:secret-pw@127.0.0.1:{blackhole.port}/chat"}
    with daphne(env, log_dir=tmp_path) as server:
        status, body, elapsed = get_deps(server)
    assert status == 503
    assert body["checks"]["database"]["status"] == "down"
    assert "secret-pw" not in json.dumps(body)
    assert elapsed < 3.5


def test_no_model_configured_is_reported_plainly(base_env, tmp_path):
    env = {**base_env, "LLM_PROVIDER": "openai", "LLM_BASE_URL": "", "LLM_API_KEY": ""}
    with daphne(env, log_dir=tmp_path) as server:
        status, body, _ = get_deps(server)
    assert status == 503
    assert body["checks"]["provider"]["status"] == "down"
    assert "LLM_BASE_URL" in body["checks"]["provider"]["error"]
