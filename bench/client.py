"""Building blocks of the benchmark and the soak: services, processes, accounts, clients, counters.

Everything here talks to 127.0.0.1 only. The benchmark process is also the
load client: it sets Django up against its own bench database (to create
users, sessions and conversations with the ORM), starts the scripted provider
and one daphne as child processes, and drives them with `websockets` (the app)
and raw asyncio HTTP (the provider directly, the bound).

Times are `time.monotonic()` seconds: comparable with the scripted server's
records across processes on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres:postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"

# The scripted provider of the benchmark (issue 8): a realistic first-token delay and pace.
PROVIDER_TTFT_MS = 200.0
PROVIDER_TOKENS_PER_SECOND = 50.0
PROVIDER_TOKENS = 200


# --- configuration ------------------------------------------------------------


def bench_database_url(environ: dict[str, str] | None = None) -> str:
    """BENCH_DATABASE_URL, else DATABASE_URL with a database of its own (`<name>_bench`)."""
    environ = os.environ if environ is None else environ
    if environ.get("BENCH_DATABASE_URL"):
        return environ["BENCH_DATABASE_URL"]
    base = environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        return DEFAULT_DATABASE_URL
    parts = urlsplit(base)
    name = parts.path.lstrip("/") or "postgres"
    if not name.endswith("bench"):
        name = f"{name}_bench"
    return urlunsplit(parts._replace(path=f"/{name}"))


def bench_redis_url(environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("BENCH_REDIS_URL") or environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def ensure_database(url: str) -> None:
    """Create the bench database when it is missing (connecting to the server's `postgres` database)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created meanwhile by a parallel run
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(database_url: str, redis_url: str) -> None:
    """Django in this process, on the bench database, migrated (one migrator at a time)."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatplatform.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(8008)")
        try:
            call_command("migrate", verbosity=0, interactive=False)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(8008)")


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it): 1,000+ sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- child processes -------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_http(url: str, process: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}; see {log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s; see {log_path}")


@contextlib.contextmanager
def scripted_provider(
    log_dir: Path,
    *,
    ttft_ms: float = PROVIDER_TTFT_MS,
    tokens_per_second: float = PROVIDER_TOKENS_PER_SECOND,
    tokens: int = PROVIDER_TOKENS,
) -> Iterator[Child]:
    """`python -m bench.fake_openai_server` in a process of its own."""
    port = free_port()
    log_path = log_dir / f"provider-{port}.log"
    command = [
        sys.executable,
        "-m",
        "bench.fake_openai_server",
        "--port",
        str(port),
        "--ttft-ms",
        str(ttft_ms),
        "--tokens-per-second",
        str(tokens_per_second),
        "--tokens",
        str(tokens),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        child = Child("provider", process, port, log_path)
        try:
            _wait_http(f"{child.url}/_stats", process, 20, log_path)
            yield child
        finally:
            child.stop()


# Limits no benchmark reaches: a run measures the app, not its refusals.
GENEROUS_LIMITS = {
    "CHAT_MESSAGES_PER_MINUTE": "100000",
    "CHAT_CONCURRENT_REPLIES": "100000",
    "CHAT_DAILY_TOKEN_BUDGET": "1000000000",
}


def app_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The server's environment: test settings, generous limits, quiet logs."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "CHAT_TITLE_FROM_MODEL": "false",
        "LOG_LEVEL": "WARNING",
        **GENEROUS_LIMITS,
        "CHATPLATFORM_IGNORE_DOTENV": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def provider_env(provider: Child) -> dict[str, str]:
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": f"{provider.url}/v1",
        "LLM_API_KEY": "x",
        "LLM_MODEL": "scripted",
    }


#: The ASGI servers the benchmark can run the app under (docs/perf.md compares them).
SERVERS = ("daphne", "uvicorn", "granian")
#: The one the Dockerfile runs, and the benchmark's default (docs/lld.md says why).
PRODUCTION_SERVER = "daphne"


def server_command(kind: str, port: int, app: str) -> list[str]:
    """The command line of one `kind` server process on loopback, WebSocket pings as in production."""
    if kind == "daphne":
        return [
            *(sys.executable, "-m", "chatplatform.serve", "-b", "127.0.0.1", "-p", str(port)),
            *("--ping-interval", "20", "--ping-timeout", "30", app),
        ]
    if kind == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio"),
            *(
                "--ws-ping-interval",
                "20",
                "--ws-ping-timeout",
                "30",
                "--lifespan",
                "off",
                "--no-access-log",
                "--log-level",
                "warning",
            ),
        ]
    if kind == "granian":
        return [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1", "--loop", "uvloop", "--no-log", app),
        ]
    raise ValueError(f"unknown server {kind!r}; one of {', '.join(SERVERS)}")


@contextlib.contextmanager
def app_server(
    env: dict[str, str], log_dir: Path, *, name: str = "app", server: str = "daphne"
) -> Iterator[Child]:
    """One server process (daphne, uvicorn or granian) serving chatplatform.asgi."""
    port = free_port()
    log_path = log_dir / f"{name}-{server}-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "LLM_", "DB_"))}
    full_env.update(env)
    # An experiment may wrap the application (python -m bench.run --env BENCH_ASGI_APP=module:app).
    command = server_command(server, port, full_env.get("BENCH_ASGI_APP", "chatplatform.asgi:application"))
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        child = Child(name, process, port, log_path)
        try:
            _wait_http(f"{child.url}/health", process, 60, log_path)
            yield child
        finally:
            child.stop()


@contextlib.contextmanager
def daphne(env: dict[str, str], log_dir: Path, *, name: str = "daphne") -> Iterator[Child]:
    """One daphne process serving chatplatform.asgi (the production command line's ping flags)."""
    with app_server(env, log_dir, name=name, server="daphne") as child:
        yield child


@dataclass
class Cluster:
    """K server processes behind Debian's nginx (deploy/nginx/chat.conf): clients see one address."""

    servers: list[Child]
    proxy: Any  # tests.nginx.Nginx, or None for a single process reached directly

    @property
    def url(self) -> str:
        return self.proxy.url if self.proxy is not None else self.servers[0].url

    @property
    def ws_url(self) -> str:
        return self.proxy.ws_url if self.proxy is not None else self.servers[0].ws_url

    @property
    def pid(self) -> int:
        return self.servers[0].pid

    @property
    def pids(self) -> list[int]:
        """The server processes, and their children (granian serves from a worker process)."""
        pids = []
        for child in self.servers:
            pids.append(child.pid)
            with contextlib.suppress(psutil.Error):
                pids += [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        return pids

    @property
    def worker_pid(self) -> int:
        """The first process running the application (granian's worker, else the server itself)."""
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.servers[0].pid).children()
            if children:
                return children[0].pid
        return self.servers[0].pid

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(child.log_tail(lines) for child in self.servers)


@contextlib.contextmanager
def cluster(
    env: dict[str, str], log_dir: Path, *, procs: int = 1, server: str = "daphne", name: str = "app"
) -> Iterator[Cluster]:
    """`procs` server processes; with more than one, nginx in front of them (the benchmark's --procs)."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(app_server(env, log_dir, name=f"{name}{i}", server=server))
            for i in range(procs)
        ]
        proxy = None
        if procs > 1:
            from tests.nginx import nginx

            proxy = stack.enter_context(
                nginx(upstreams=[f"127.0.0.1:{c.port}" for c in servers], prefix=log_dir / f"nginx-{name}")
            )
        yield Cluster(servers, proxy)


# --- accounts --------------------------------------------------------------------


@dataclass
class Account:
    user_id: int
    cookie: str  # "sessionid=..."


def create_accounts(prefix: str, count: int) -> list[Account]:
    """`count` users (no password hashing: unusable passwords) and a real signed-in session each."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
        load_backend,
    )
    from django.contrib.auth.hashers import make_password

    from accounts.models import MEMBER_GROUP, role_group

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"{prefix}-{i}", password=make_password(None)) for i in range(count)],
        batch_size=500,
    )
    # bulk_create sends no post_save: give them the role every new account gets.
    role_group(MEMBER_GROUP).user_set.add(*users)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    # As Django's force_login: the first backend that can load a user (a throttling backend cannot).
    backend = next(
        path for path in settings.AUTHENTICATION_BACKENDS if hasattr(load_backend(path), "get_user")
    )
    accounts = []
    for user in users:
        session = store()
        session[SESSION_KEY] = user._meta.pk.value_to_string(user)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        accounts.append(Account(user.pk, f"{settings.SESSION_COOKIE_NAME}={session.session_key}"))
    return accounts


def create_conversations(accounts: Sequence[Account], *, system_prompts: Sequence[str] = ()) -> list[str]:
    """A new conversation for each account (untitled: the first exchange titles it)."""
    from conversations.models import Conversation

    rows = [
        Conversation(owner_id=a.user_id, system_prompt=system_prompts[i] if system_prompts else "")
        for i, a in enumerate(accounts)
    ]
    Conversation.objects.bulk_create(rows, batch_size=500)
    return [str(c.id) for c in rows]


# --- statistics --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    data = [v for v in values if v is not None]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "max": max(data) if data else None,
        "mean": statistics.fmean(data) if data else None,
    }


# --- the app client (WebSocket) ------------------------------------------------------


@dataclass
class AppReply:
    """One reply through the app, as one signed-in client saw it."""

    prompt: str
    expected: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: float | None = None
    first_delta_at: float | None = None
    last_delta_at: float | None = None
    completed_at: float | None = None
    reply_id: str | None = None
    text: str = ""
    final: str | None = None
    status: str | None = None
    usage: dict | None = None
    frames: int = 0
    deltas: int = 0
    blocks: int = 0
    gaps: int = 0
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        if self.sent_at is None or self.first_delta_at is None:
            return None
        return self.first_delta_at - self.sent_at

    @property
    def duration(self) -> float | None:
        if self.sent_at is None or self.last_delta_at is None:
            return None
        return self.last_delta_at - self.sent_at

    @property
    def exact(self) -> bool:
        return (
            self.error is None
            and self.status == "complete"
            and self.final == self.expected
            and self.text == self.expected
            and self.gaps == 0
        )


async def open_socket(base_ws_url: str, origin: str, conversation_id: str, cookie: str, *, timeout=30):
    from websockets.asyncio.client import connect

    return await connect(
        f"{base_ws_url}/ws/conversations/{conversation_id}/",
        additional_headers={"Cookie": cookie, "Origin": origin},
        open_timeout=timeout,
        ping_interval=None,  # a browser does not ping; daphne pings idle sockets itself
        compression=None,
        proxy=None,
        max_queue=None,
    )


async def open_sockets(
    base_ws_url: str, origin: str, pairs: Sequence[tuple[str, str]], *, concurrency: int = 50
) -> list:
    """One socket per (conversation_id, cookie), `concurrency` handshakes at a time (daphne's backlog)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(conversation_id: str, cookie: str):
        async with gate:
            return await open_socket(base_ws_url, origin, conversation_id, cookie)

    results = await asyncio.gather(*(one(c, k) for c, k in pairs), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_sockets([r for r in results if not isinstance(r, BaseException)])
        raise RuntimeError(f"{len(failures)} of {len(pairs)} sockets failed to open: {failures[0]!r}")
    return list(results)


async def close_sockets(sockets: Sequence) -> None:
    async def one(ws):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


async def chat_once(ws, reply: AppReply, go: asyncio.Event | None = None, *, timeout: float = 120) -> None:
    """Send one message and read until its reply completes, checking every delta's offset."""
    if go is not None:
        await go.wait()
    frame_out = json.dumps({"type": "message.send", "content": reply.prompt, "client_id": reply.client_id})
    reply.sent_at = time.monotonic()
    try:
        await ws.send(frame_out)
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                now = time.monotonic()
                reply.frames += 1
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message.delta":
                    if frame["message_id"] != reply.reply_id:
                        continue
                    reply.deltas += 1
                    if reply.first_delta_at is None:
                        reply.first_delta_at = now
                    reply.last_delta_at = now
                    held, offset, text = len(reply.text), frame["offset"], frame["text"]
                    if offset > held:
                        reply.gaps += 1
                    elif offset + len(text) > held:
                        reply.text += text[held - offset :]
                elif kind == "message.created":
                    message = frame["message"]
                    if message["role"] == "assistant" and reply.reply_id is None:
                        reply.reply_id = message["id"]
                elif kind == "message.blocks":
                    reply.blocks += 1
                elif kind in {"message.completed", "message.failed"}:
                    if frame["message_id"] != reply.reply_id:
                        continue
                    reply.completed_at = now
                    reply.final = frame.get("content")
                    reply.status = frame.get("status")
                    reply.usage = frame.get("usage")
                    if kind == "message.failed":
                        reply.error = f"failed: {frame.get('error')}"
                    return
                elif kind == "error":
                    reply.error = f"refused: {frame.get('code')} {frame.get('message')}"
                    return
    except TimeoutError:
        reply.error = f"timeout after {timeout:g} s"
    except Exception as exc:  # a closed socket, a bad frame: the reply is lost
        reply.error = f"{type(exc).__name__}: {exc}"


# --- the direct client (the bound) ---------------------------------------------------


@dataclass
class DirectReply:
    prompt: str
    expected: str
    sent_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    text: str = ""
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        if self.sent_at is None or self.first_token_at is None:
            return None
        return self.first_token_at - self.sent_at

    @property
    def duration(self) -> float | None:
        if self.sent_at is None or self.last_token_at is None:
            return None
        return self.last_token_at - self.sent_at

    @property
    def exact(self) -> bool:
        return self.error is None and self.text == self.expected


def sse_text(body: bytes) -> str:
    """The streamed text of a chunked SSE body (each chunk is one whole event)."""
    text = []
    for line in body.decode().split("\n"):
        if line.startswith("data: {") and '"choices":[{' in line:
            text.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    return "".join(text)


async def direct_once(
    port: int, reply: DirectReply, go: asyncio.Event | None = None, *, timeout: float = 120
) -> None:
    """Stream one chat completion from the provider over raw HTTP/1.1 (connection opened before `go`)."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(
            {
                "model": "scripted",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": reply.prompt}],
            }
        ).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        if go is not None:
            await go.wait()
        reply.sent_at = time.monotonic()
        writer.write(request)
        data = bytearray()
        async with asyncio.timeout(timeout):
            while not data.endswith(b"0\r\n\r\n"):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if b'"content"' in chunk:
                    now = time.monotonic()
                    if reply.first_token_at is None:
                        reply.first_token_at = now
                    reply.last_token_at = now
                data += chunk
        reply.text = sse_text(bytes(data))
    except TimeoutError:
        reply.error = f"timeout after {timeout:g} s"
    except Exception as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()


# --- server-side counters ----------------------------------------------------------


class Sampler:
    """RSS and CPU of a process (or the sum over several), sampled on the event loop every `interval` s."""

    def __init__(self, pid: int | Sequence[int], interval: float = 0.1) -> None:
        self.processes = [psutil.Process(p) for p in ([pid] if isinstance(pid, int) else pid)]
        self.process = self.processes[0]
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task | None = None
        self._cpu0 = 0.0
        self.cpu_seconds = 0.0
        self.peak_rss = 0

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes)

    def cpu(self) -> float:
        return sum(t.user + t.system for t in (p.cpu_times() for p in self.processes))

    async def _run(self) -> None:
        while True:
            rss = self.rss()
            self.peak_rss = max(self.peak_rss, rss)
            self.samples.append((time.monotonic(), rss))
            await asyncio.sleep(self.interval)

    def start(self) -> Sampler:
        self._cpu0 = self.cpu()
        self.peak_rss = self.rss()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> Sampler:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak_rss = max(self.peak_rss, self.rss())
        self.cpu_seconds += self.cpu() - self._cpu0
        return self


class PgCounters:
    """Rows written and transactions committed in the bench database (pg_stat_* views).

    Statistics reach the views when a backend flushes them (at the latest when
    it exits), so a reading waits until two snapshots agree.
    """

    TABLES = (
        "conversations_message",
        "conversations_usageevent",
        "conversations_conversation",
        "django_session",
    )

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self.name = parts.path.lstrip("/")
        self.server_url = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
        self.db_url = urlunsplit(parts._replace(scheme="postgresql"))

    def _read(self) -> dict[str, int]:
        import psycopg

        out: dict[str, int] = {}
        # Read from another database so that reading does not count as a commit here.
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                "WHERE datname = %s",
                [self.name],
            ).fetchone()
            out.update(zip(("commits", "inserted", "updated", "deleted"), row, strict=True))
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            for relname, ins, upd, dele in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                "WHERE relname = ANY(%s)",
                [list(self.TABLES)],
            ):
                out[f"{relname}.ins"], out[f"{relname}.upd"], out[f"{relname}.del"] = ins, upd, dele
        return out

    def read(self, *, settle: float = 12.0) -> dict[str, int]:
        deadline = time.monotonic() + settle
        previous = self._read()
        while time.monotonic() < deadline:
            time.sleep(0.6)
            current = self._read()
            rows = ("inserted", "updated", "deleted")
            if all(current[k] == previous[k] for k in rows):
                return current
            previous = current
        return previous

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {k: after.get(k, 0) - before.get(k, 0) for k in after}


class RedisCounter:
    """Commands the app sends to its Redis database, counted exactly with MONITOR.

    `redis-cli monitor` writes every command of the server to a file; a phase
    is delimited by ECHO markers on the bench's database, and only lines of
    that database are counted (`[DB client]`: commands the app sent;
    `[DB lua]`: commands its scripts ran). Without redis-cli: INFO totals
    (every database of the server).
    """

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        parts = urlsplit(redis_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int((parts.path or "/0").lstrip("/") or 0)
        self.path = log_dir / f"redis-monitor-{os.getpid()}.log"
        self._process: subprocess.Popen | None = None
        self._redis = None

    def client(self):
        if self._redis is None:
            import redis

            self._redis = redis.Redis(host=self.host, port=self.port, db=self.db)
        return self._redis

    def start(self) -> RedisCounter:
        cli = shutil.which("redis-cli")
        if cli:
            self._out = self.path.open("wb")
            self._process = subprocess.Popen(
                [cli, "-h", self.host, "-p", str(self.port), "monitor"],
                stdout=self._out,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.3)
        return self

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._out.close()
            self._process = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def total_commands(self) -> int:
        stats = self.client().info("commandstats")
        return sum(v["calls"] for v in stats.values() if isinstance(v, dict))

    def mark(self, label: str) -> dict[str, Any]:
        marker = f"bench-mark-{label}-{uuid.uuid4().hex[:8]}"
        offset = self.path.stat().st_size if self._process is not None else 0
        total = self.total_commands()
        self.client().echo(marker)
        return {"marker": marker, "offset": offset, "total": total}

    def count(self, start: dict[str, Any], end: dict[str, Any]) -> dict[str, int]:
        """Commands between two marks: `client` and `lua` on our database, `server_total` all databases."""
        # Our own INFO and ECHO of the start mark are not the app's.
        result = {"server_total": end["total"] - start["total"] - 2}
        if self._process is None:
            return result
        begin, finish = start["marker"].encode(), end["marker"].encode()
        deadline = time.monotonic() + 5
        data = b""
        while time.monotonic() < deadline:  # the monitor may lag behind a little
            with self.path.open("rb") as log:
                log.seek(start["offset"])
                data = log.read()
            if begin in data and finish in data:
                break
            time.sleep(0.2)
        else:
            return result
        data = data[data.index(begin) :]
        data = data[data.index(b"\n") + 1 : data.index(finish)]
        prefix_client, prefix_lua = f"[{self.db} ".encode(), f"[{self.db} lua]".encode()
        client = lua = 0
        for line in data.split(b"\n"):
            head = line[:64]
            if prefix_lua in head:
                lua += 1
            elif prefix_client in head:
                client += 1
        result.update(client=client - 1, lua=lua)  # minus the INFO of the end mark
        return result


def tree_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    return 0.0
