"""compose.yaml's services, run for real on loopback without a Docker engine: the
migrate one-shot, web (daphne on uvloop) behind Debian's nginx with deploy/nginx/chat.conf,
Redis with its password, and each service's health check command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets
import yaml
from django.contrib.auth import get_user_model
from django.test import Client

from conftest import require_service
from conversations.models import Conversation, Message
from tests.nginx import nginx, nginx_binary
from tests.servers import ROOT, Server, free_port, wait_for_http

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def on_loopback(command: list[str], *, port: int) -> list[str]:
    """A service's command as this machine runs it: our interpreter, loopback, a free port."""
    out: list[str] = []
    for i, arg in enumerate(command):
        if arg == "python" and i == 0:
            out.append(sys.executable)
        elif arg == "0.0.0.0":
            out.append("127.0.0.1")
        elif i > 0 and command[i - 1] == "--port":
            out.append(str(port))
        else:
            out.append(arg)
    return out


def shell(command: str) -> str:
    """compose's `$$` is a literal `$` for the container's shell."""
    return command.replace("$$", "$")


@contextlib.contextmanager
def web_service(env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    port = free_port()
    log_path = log_dir / f"web-{port}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            on_loopback(SERVICES["web"]["command"], port=port),
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = Server(process=process, port=port, log_path=log_path)
        try:
            wait_for_http(f"{server.url}/health", process=process)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def nginx_installed() -> None:
    require_service("nginx (scripts/services.sh installs it)", nginx_binary() is not None)


@pytest.fixture
def stack(nginx_installed, live_database_url, redis_url, tmp_path):
    """web (compose's command) behind nginx (chat.conf), on the test database and Redis."""
    env = {
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.02",
        "LLM_FAKE_TOKENS": "30",
        "CHAT_TITLE_FROM_MODEL": "false",
        "LOG_LEVEL": "WARNING",
    }
    with (
        web_service(env, tmp_path) as web,
        nginx(upstreams=[f"127.0.0.1:{web.port}"], prefix=tmp_path / "nginx") as proxy,
    ):
        yield web, proxy


def get(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        return urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as error:
        return error


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_nginx_proxies_pages_with_the_host_and_its_own_request_id(stack):
    _web, proxy = stack
    response = get(f"{proxy.url}/health", {"X-Request-ID": "forged-by-client"})
    assert response.status == 200
    assert json.loads(response.read())["status"] == "ok"
    # Django echoes the id it was given: nginx's, never the client's.
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    # The Host reaches Django (else its host check answers 400) and the page renders.
    login = get(f"{proxy.url}/accounts/login/")
    assert login.status == 200
    assert b"csrfmiddlewaretoken" in login.read()
    assert "nginx/" not in (login.headers.get("Server") or "")  # server_tokens off


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_a_chat_over_a_websocket_through_nginx_streams_the_whole_reply(stack):
    _web, proxy = stack
    user = get_user_model().objects.create_user("nginx-user", password="pw-for-tests-1")
    conversation = Conversation.objects.create(owner=user)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def chat() -> tuple[list[dict], dict]:
        frames: list[dict] = []
        async with websockets.connect(
            f"{proxy.ws_url}/ws/conversations/{conversation.id}/",
            additional_headers={"Cookie": cookie, "Origin": proxy.url},
            open_timeout=10,
        ) as ws:
            await ws.send(
                json.dumps({"type": "message.send", "content": "hi", "client_id": str(uuid.uuid4())})
            )
            async with asyncio.timeout(20):
                while True:
                    frame = json.loads(await ws.recv())
                    frames.append(frame)
                    if frame["type"] in {"message.completed", "message.failed"}:
                        return frames, frame

    frames, final = asyncio.run(chat())
    assert final["type"] == "message.completed", final
    deltas = "".join(f["text"] for f in frames if f["type"] == "message.delta")
    assert deltas == final["content"] and final["content"]
    reply = Message.objects.get(pk=final["message_id"])
    assert (reply.status, reply.content) == ("complete", final["content"])


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_metrics_through_nginx_only_from_loopback(stack):
    _web, proxy = stack
    assert get(f"{proxy.url}/metrics").status == 200
    chat_conf = (ROOT / "deploy/nginx/chat.conf").read_text()
    metrics_block = chat_conf.split("location = /metrics", 1)[1].split("}", 1)[0]
    assert "deny all;" in metrics_block


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_the_web_health_check_command_passes_against_the_web_service(stack):
    web, _ = stack
    test = SERVICES["web"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [
        sys.executable if arg == "python" else arg.replace(":8000/", f":{web.port}/") for arg in test[1:]
    ]
    assert subprocess.run(command, timeout=10).returncode == 0
    web.process.terminate()
    web.process.wait(timeout=10)
    assert subprocess.run(command, timeout=10, capture_output=True).returncode != 0


@pytest.fixture
def fresh_database(postgres_url):
    """An empty database beside the test database, dropped afterwards."""
    import psycopg

    name = f"chatplatform_deploy_migrate_{uuid.uuid4().hex[:8]}"
    admin = re.sub(r"/[^/]*$", "/postgres", postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield re.sub(r"/[^/]*$", f"/{name}", postgres_url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migrate_service_migrates_once_and_then_has_nothing_to_do(fresh_database):
    env = {**os.environ, "DATABASE_URL": fresh_database, "APP_ENV": "test"}
    command = on_loopback(SERVICES["migrate"]["command"], port=0)
    check = [sys.executable, "manage.py", "migrate", "--check"]  # the Kubernetes init container's wait
    assert subprocess.run(check, cwd=ROOT, env=env, capture_output=True).returncode != 0
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "Applying conversations.0001_initial... OK" in first.stdout
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "No migrations to apply." in second.stdout
    assert subprocess.run(check, cwd=ROOT, env=env, capture_output=True).returncode == 0


@pytest.fixture
def compose_redis(tmp_path):
    """redis-server started with the compose service's own command and password."""
    password = uuid.uuid4().hex
    port = free_port()
    script = shell(SERVICES["redis"]["command"][2]) + f" --port {port} --bind 127.0.0.1"
    process = subprocess.Popen(
        ["sh", "-c", script],
        env={**os.environ, "REDIS_PASSWORD": password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            subprocess.run(["sleep", "0.05"])
        yield port, password
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_refuses_clients_without_the_password(compose_redis):
    port, password = compose_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
    # The app's URL carries the password, as compose builds REDIS_URL.
    assert redis.Redis.from_url(f"redis://:{password}@127.0.0.1:{port}/0").ping()


def test_the_redis_health_check_command_authenticates(compose_redis):
    port, password = compose_redis
    test = SERVICES["redis"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = shell(test[1]).replace("redis-cli", f"redis-cli -p {port}")
    env = {**os.environ, "REDIS_PASSWORD": password}
    assert subprocess.run(["sh", "-c", command], env=env, timeout=10).returncode == 0
    wrong = {**os.environ, "REDIS_PASSWORD": "wrong"}
    assert subprocess.run(["sh", "-c", command], env=wrong, timeout=10, capture_output=True).returncode != 0


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_the_api_streams_server_sent_events_through_nginx_as_they_are_written(stack):
    """The API's server-sent events pass through nginx as they are written: the first text
    reaches the client while the reply is still streaming (not when it is complete)."""
    from api.services import api_key_create

    _web, proxy = stack
    user = get_user_model().objects.create_user("api-user", password="pw-for-tests-1")
    _, key = api_key_create(user=user, name="nginx test")
    auth = {"Authorization": f"Bearer {key}"}
    models = json.loads(get(f"{proxy.url}/v1/models", auth).read())["data"]
    body = json.dumps(
        # Slow enough that the reply is still being written when its first chunk arrives.
        {
            "model": models[0]["id"],
            "stream": True,
            "store": True,
            "messages": [{"role": "user", "content": "[[slow:150]]hi"}],
        }
    ).encode()
    request = urllib.request.Request(
        f"{proxy.url}/v1/chat/completions",
        data=body,
        headers={**auth, "Content-Type": "application/json"},
        method="POST",
    )
    chunks: list[dict] = []
    status_at_first_text = None
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[len("data: ") :])
            chunks.append(chunk)
            text = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if text and status_at_first_text is None:
                status_at_first_text = (
                    Message.objects.filter(role="assistant").values_list("status", flat=True).first()
                )
    assert status_at_first_text == "streaming"
    assert len(chunks) > 2
    assert list(Message.objects.values_list("role", "status")) == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
