"""A scripted OpenAI-compatible HTTP server (SSE streaming) for provider tests and the benchmark.

Real HTTP/1.1 over a socket, on asyncio protocols with a small hand-written
parser, so one core carries hundreds of concurrent streams:

    POST /v1/chat/completions   streaming (server-sent events) and not
    GET  /v1/models             the model list
    GET  /_stats                every request recorded so far, as JSON
    POST /_reset                forget the records

Replies are deterministic (`expected_reply` computes them) and the last user
message can script failures: see `conversations/llm/fake.py` for the
directives ([[echo]], [[error:429]], [[hang]], [[drop:K]], [[garbage]],
[[tokens:N]], [[slow:MS]], [[ttft:MS]], [[fail:CODE]]).

Per request the server records when it started, when the first body byte
left, when the client closed the connection (if it did before the end) and
how many tokens were sent; times are `time.monotonic()` seconds, comparable
with the test's own clock in-process (and across processes on Linux).

    async with ScriptedOpenAIServer(ttft_ms=20) as server:  # in a test's event loop
        client = AsyncOpenAI(base_url=server.base_url, api_key="x")
    server = ScriptedOpenAIServer().start_in_thread()      # for sync tests; server.stop()
    python -m bench.fake_openai_server --port 8100 --ttft-ms 200 --tokens-per-second 50 --tokens 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conversations.llm.fake import (
    DEFAULT_TOKENS,
    expected_reply,
    last_user_text,
    parse_script,
    prompt_token_estimate,
    reply_tokens,
)

__all__ = ["DEFAULT_MODEL", "RequestRecord", "ScriptedOpenAIServer", "expected_reply", "main"]

DEFAULT_MODEL = "scripted-model"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# The OpenAI-style error body for each scripted status: (type, code, message).
_ERROR_BODIES = {
    400: ("invalid_request_error", None, "Invalid request (scripted)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to use this model: {key}."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (scripted)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (scripted)."),
    500: ("server_error", None, "The server had an error while processing your request (scripted)."),
    503: ("server_error", None, "The engine is currently overloaded (scripted)."),
}
_CONTEXT_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9000 tokens. Please reduce the length of the messages."
)
# [[fail:CODE]] on the wire: the HTTP status a real server would send for that code.
_STATUS_FOR_CODE = {
    "auth": (401, "invalid_api_key"),
    "rate_limited": (429, "rate_limit_exceeded"),
    "context_too_long": (400, "context_length_exceeded"),
    "provider_error": (500, "server_error"),
}
_ids = itertools.count(1)


@dataclass
class RequestRecord:
    """What the server saw of one request (times are time.monotonic() seconds)."""

    id: int
    method: str
    path: str
    started_at: float
    authorization: str = ""
    model: str = ""
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    first_byte_at: float | None = None
    closed_by_client_at: float | None = None
    finished_at: float | None = None
    tokens_sent: int = 0

    @property
    def last_user_message(self) -> str:
        return last_user_text(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Connection(asyncio.Protocol):
    """One client connection: parse requests one after another, answer each in a task."""

    def __init__(self, server: ScriptedOpenAIServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task | None = None
        self.record: RequestRecord | None = None
        self.closed = False
        self.aborted = False  # we dropped the connection ourselves ([[drop:K]])
        self._can_write = asyncio.Event()
        self._can_write.set()

    # --- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_HEAD_BYTES + MAX_BODY_BYTES:
            self.transport.close()
            return
        self._next_request()

    def eof_received(self) -> bool:
        return False  # close our side too: the client is gone

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._connections.discard(self)
        record = self.record
        if record is not None and record.finished_at is None and not self.aborted:
            record.closed_by_client_at = time.monotonic()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # --- parsing -------------------------------------------------------------

    def _next_request(self) -> None:
        if self.task is not None and not self.task.done():
            return  # one request at a time; the rest waits in the buffer
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.transport.close()
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self.transport.close()
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if end + 4 + length > len(self.buffer):
            return  # wait for the whole body
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.task = asyncio.get_running_loop().create_task(self._handle(method, target, headers, body))
        self.task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and self.transport is not None:
            self.transport.close()
        if not self.closed and self.buffer:
            self._next_request()

    # --- writing -------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("client closed the connection")
        if self.record is not None and self.record.first_byte_at is None:
            self.record.first_byte_at = time.monotonic()
        self.transport.write(data)
        if not self._can_write.is_set():
            await self._can_write.wait()

    async def write_chunk(self, data: bytes) -> None:
        await self.write(b"%x\r\n%b\r\n" % (len(data), data))

    async def respond_json(self, status: int, payload: Any, *, close: bool = False) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode()
        self.transport.write(head + body)  # headers are not "body bytes": first_byte_at stays for SSE
        if self.record is not None:
            self.record.status = status
        if close:
            self.transport.close()

    async def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        path = urlsplit(target).path.rstrip("/")
        record = RequestRecord(
            id=next(_ids),
            method=method,
            path=path,
            started_at=time.monotonic(),
            authorization=headers.get("authorization", ""),
        )
        self.record = record
        self.server.requests.append(record)
        try:
            await self.server._dispatch(self, record, method, path, headers, body)
        finally:
            if record.closed_by_client_at is None and not self.closed:
                record.finished_at = time.monotonic()


class ScriptedOpenAIServer:
    """The scripted server: in a running event loop (`async with`) or in its own thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ttft_ms: float = 20.0,
        tokens_per_second: float = 200.0,
        tokens: int = DEFAULT_TOKENS,
        model: str = DEFAULT_MODEL,
        models: list[str] | None = None,
        api_key: str | None = None,
        usage: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.ttft_ms = ttft_ms
        self.tokens_per_second = tokens_per_second
        self.tokens = tokens
        self.model = model
        self.models = models or [model]
        self.api_key = api_key
        #: Send the usage chunk when the client asks for it (False: a server that never reports usage).
        self.usage = usage
        self.requests: list[RequestRecord] = []
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    # --- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as base_url (LLM_BASE_URL)."""
        return f"{self.url}/v1"

    async def start(self) -> ScriptedOpenAIServer:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> ScriptedOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start_in_thread(self) -> ScriptedOpenAIServer:
        """Serve from a daemon thread with its own event loop (for sync tests); `stop()` ends it."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stop_event = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stop_event.wait()
            await self.aclose()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="scripted-openai", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with start_in_thread() (in-loop servers use `aclose()`)."""
        if self._thread is None:
            raise RuntimeError("stop() is for start_in_thread(); use `await server.aclose()` in a loop")
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start_in_thread()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- helpers for tests -------------------------------------------------------

    def completions(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def last_completion(self) -> RequestRecord:
        return self.completions()[-1]

    def expected_reply(self, messages: Any, *, max_tokens: int | None = None, stop: Any = ()) -> str:
        return expected_reply(messages, tokens=self.tokens, max_tokens=max_tokens, stop=stop)

    def stats(self) -> dict[str, Any]:
        active = sum(1 for r in self.requests if r.finished_at is None and r.closed_by_client_at is None)
        return {
            "total": len(self.requests),
            "active": active,
            "open_connections": len(self._connections),
            "requests": [r.to_dict() for r in self.requests],
        }

    # --- routes ----------------------------------------------------------------

    async def _dispatch(
        self,
        conn: _Connection,
        record: RequestRecord,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if path == "/_stats" and method == "GET":
            await conn.respond_json(200, self.stats())
        elif path == "/_reset" and method == "POST":
            self.requests.clear()
            await conn.respond_json(200, {"ok": True})
        elif path in {"/v1/models", "/models"} and method == "GET":
            if not self._authorized(record):
                await self._error(conn, 401)
                return
            now = int(time.time())
            data = [{"id": m, "object": "model", "created": now, "owned_by": "bench"} for m in self.models]
            await conn.respond_json(200, {"object": "list", "data": data})
        elif path in {"/v1/chat/completions", "/chat/completions"}:
            if method != "POST":
                await self._error(conn, 405)
                return
            await self._chat(conn, record, body)
        else:
            await self._error(conn, 404)

    def _authorized(self, record: RequestRecord) -> bool:
        return self.api_key is None or record.authorization == f"Bearer {self.api_key}"

    async def _error(self, conn: _Connection, status: int, code: str | None = None) -> None:
        error_type, default_code, message = _ERROR_BODIES.get(
            status, ("server_error", None, "Error (scripted).")
        )
        if code == "context_length_exceeded":
            error_type, message = "invalid_request_error", _CONTEXT_MESSAGE
        key = conn.record.authorization.removeprefix("Bearer ") if conn.record else ""
        error = {
            "message": message.format(key=key),
            "type": error_type,
            "param": None,
            "code": code or default_code,
        }
        await conn.respond_json(status, {"error": error})

    async def _chat(self, conn: _Connection, record: RequestRecord, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
            messages = request["messages"]
            if not isinstance(messages, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            await self._error(conn, 400)
            return
        record.messages = messages
        record.model = str(request.get("model") or "")
        record.stream = bool(request.get("stream"))
        record.include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        record.max_tokens = int(max_tokens) if isinstance(max_tokens, int) else None
        record.temperature = request.get("temperature")
        record.top_p = request.get("top_p")
        stop = request.get("stop") or []
        record.stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        if not self._authorized(record):
            await self._error(conn, 401)
            return

        script = parse_script(last_user_text(messages))
        loop = asyncio.get_running_loop()
        start = loop.time()
        ttft = (script.ttft_ms if script.ttft_ms is not None else self.ttft_ms) / 1000
        rate = self.tokens_per_second
        interval = script.slow_ms / 1000 if script.slow_ms is not None else (1 / rate if rate > 0 else 0.0)

        if script.hang == "headers":
            await asyncio.Event().wait()  # until the client gives up (the task is cancelled)
        status, code = script.error_status, script.error_code
        fail_midway = False
        if script.fail is not None:
            if script.fail in {"timeout"}:
                script.hang = "body"
            elif script.fail == "unreachable":
                conn.aborted = True
                conn.transport.abort()
                return
            elif script.fail_after:
                fail_midway = True
            else:
                status, code = _STATUS_FOR_CODE.get(script.fail, (500, None))
        if status is not None:
            await asyncio.sleep(ttft)
            await self._error(conn, status, code)
            return

        tokens, finish_reason = reply_tokens(
            messages, tokens=self.tokens, max_tokens=record.max_tokens, stop=record.stop
        )
        prompt_tokens = prompt_token_estimate(messages)
        model = record.model or self.model
        if not record.stream:
            await asyncio.sleep(ttft + max(len(tokens) - 1, 0) * interval)
            record.tokens_sent = len(tokens)
            await conn.respond_json(
                200, _completion(model, "".join(tokens), finish_reason, prompt_tokens, len(tokens))
            )
            return

        conn.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        record.status = 200
        if script.hang is not None:
            await asyncio.Event().wait()
        chunk_id = f"chatcmpl-{record.id}"
        created = int(time.time())
        envelope = f'{{"id":"{chunk_id}","object":"chat.completion.chunk","created":{created},'
        envelope += f'"model":{json.dumps(model)},"choices":'
        prefix = (envelope + '[{"index":0,').encode()

        # How the stream ends, and after how many tokens.
        ending, stop_at = "finish", len(tokens)
        for kind, after in (
            ("drop", script.drop_after),
            ("garbage", script.garbage_after),
            ("fail", script.fail_after if fail_midway else None),
        ):
            if after is not None:
                ending, stop_at = kind, min(after, stop_at)
                break

        # The role rides on the first token, so the first body byte is the first token.
        role = b'"role":"assistant",'
        for index in range(stop_at + (ending != "finish")):
            delay = start + ttft + index * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if index == stop_at:
                break
            content = json.dumps(tokens[index]).encode()
            await conn.write_chunk(
                b'data: %b"delta":{%b"content":%b},"finish_reason":null}]}\n\n' % (prefix, role, content)
            )
            role = b""
            record.tokens_sent += 1

        if ending == "drop":
            await self._drop(conn)
            return
        if ending == "garbage":
            tail = b"data: {this is not json\n\n"
        elif ending == "fail":
            tail = self._error_event(script.fail)
        else:
            tail = b'data: %b"delta":{},"finish_reason":"%b"}]}\n\n' % (prefix, finish_reason.encode())
            if record.include_usage and self.usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": record.tokens_sent,
                    "total_tokens": prompt_tokens + record.tokens_sent,
                }
                tail += f'data: {envelope}[],"usage":{json.dumps(usage)}}}\n\n'.encode()
        await conn.write_chunk(tail + b"data: [DONE]\n\n")
        await conn.write(b"0\r\n\r\n")

    async def _drop(self, conn: _Connection) -> None:
        """Close the TCP connection mid-body, once what was written has left."""
        for _ in range(100):
            if conn.transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.001)
        conn.aborted = True
        conn.transport.abort()

    def _error_event(self, code: str | None) -> bytes:
        """An error in the middle of a stream, as OpenAI sends it: a data line with an `error` object."""
        status, error_code = _STATUS_FOR_CODE.get(code or "", (500, None))
        error = {
            "message": f"Scripted failure mid-stream: {code}.",
            "type": _ERROR_BODIES.get(status, ("server_error",))[0],
            "code": error_code,
        }
        return b"data: %b\n\n" % json.dumps({"error": error}).encode()


def _completion(
    model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict:
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="delay before the first token")
    parser.add_argument("--tokens-per-second", type=float, default=50.0, help="pace of the tokens")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="reply length in tokens")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = ScriptedOpenAIServer(
            host=args.host,
            port=args.port,
            ttft_ms=args.ttft_ms,
            tokens_per_second=args.tokens_per_second,
            tokens=args.tokens,
            model=args.model,
            api_key=args.api_key,
        )
        async with server:
            print(f"scripted OpenAI server on {server.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
