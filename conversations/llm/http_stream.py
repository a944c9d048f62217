"""A lean HTTP/1.1 client for one request shape: POST a body, read the answer as it arrives.

A reply's ~200 server-sent events each went through httpx, httpcore, anyio
and h11, with an asyncio timeout per read: ~58 us of CPU an event, a third of
a reply's server CPU (docs/perf.md, issue 18). Here the response is parsed in
the protocol's `data_received`, where the bytes land: the HTTP framing, then
the event stream (`SSEDecoder`), so the reading task wakes once per packet to
a list of whole events. The idle timeout is one timer per stream, moved by a
float (`Response.expire_at`), not one per read.

What it does: HTTP/1.1 over asyncio transports; TLS verified against
certifi's CAs (as httpx does; SSL_CERT_FILE / SSL_CERT_DIR override them);
proxies from the environment like httpx (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
NO_PROXY; https through CONNECT, http in absolute form; credentials in the
proxy URL sent as Basic); bodies framed by chunked encoding, Content-Length
or the connection's end; gzip and deflate; a keep-alive pool per event loop
and origin. What it does not: redirects, HTTP/2, retries, except the one a
browser makes: a request on a reused idle connection that the server closed
before answering a byte is sent again once, on a fresh connection.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

#: A response head longer than this is not HTTP we want to read.
MAX_HEAD = 64 * 1024
#: A chunk-size line (with extensions) longer than this is malformed.
MAX_CHUNK_LINE = 4096
#: One server-sent event longer than this is not a chat completion chunk.
MAX_EVENT = 8 * 1024 * 1024
#: Undelivered event bytes past which the socket is paused until the reader catches up.
HIGH_WATER = 1024 * 1024
#: An idle pooled connection older than this is closed rather than reused.
KEEPALIVE_SECONDS = 30.0
#: Idle connections kept per origin.
MAX_IDLE = 100


class HTTPStreamError(Exception):
    """The exchange failed below HTTP's status codes."""


class ConnectFailed(HTTPStreamError):
    """No connection (refused, DNS, TLS, proxy): the request never reached the server."""


class Disconnected(HTTPStreamError):
    """The server closed the connection before the response's end."""


class MalformedResponse(HTTPStreamError):
    """The bytes are not an HTTP/1.1 response."""


class Interrupted(HTTPStreamError):
    """`Response.interrupt()` was called: the read ends and the connection is closed."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"Not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def authority(self) -> str:
        """The Host header's value (an internationalised name in its ASCII form)."""
        host = self.host if self.host.isascii() else self.host.encode("idna").decode("ascii")
        host = f"[{host}]" if ":" in host else host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class SSEDecoder:
    """Server-sent events, incrementally: `feed(bytes)` returns the `data` of every event it completes.

    Lines end at \\n or \\r\\n; an event ends at a blank line; only `data:` fields
    matter here (comments, `event:`, `id:`, `retry:` are skipped); several
    `data:` lines of one event are joined with \\n.
    """

    def __init__(self) -> None:
        self._tail = b""  # an unfinished line
        self._data: list[bytes] = []  # the `data` lines of an unfinished event

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._tail += chunk
            self._check_size()
            return []
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and self._data:
                events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data = []
        self._check_size()
        return events

    def _check_size(self) -> None:
        if len(self._tail) + sum(map(len, self._data)) > MAX_EVENT:
            raise MalformedResponse("A server-sent event is too long.")


# The parser's states.
_IDLE, _HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _LENGTH, _UNTIL_CLOSE, _DONE = range(9)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: parses a response as it arrives and hands its body to a sink."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._state = _IDLE
        self._buffer = bytearray()
        self._remaining = 0
        self._received_any = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._deadline = float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False  # reading paused: the reader is HIGH_WATER behind
        self._resting: asyncio.TimerHandle | None = None  # reading paused until this fires (`rest`)
        self._decompress: Callable[[bytes], bytes] | None = None
        # What the reader takes: the head, then body pieces handed to `sink` (or kept).
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.sink: Callable[[bytes], None] | None = None
        self.body: list[bytes] = []
        self.pending: list[bytes] = []  # the sink's output not yet taken by the reader
        self.pending_bytes = 0

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._state in (_IDLE, _DONE):  # bytes nobody asked for: the connection is unusable
            self.abort(MalformedResponse("The server sent bytes outside a response."))
            return
        self._received_any = True
        self._buffer += data
        try:
            self._parse()
        except HTTPStreamError as exc:
            self.abort(exc)

    def eof_received(self) -> bool:
        if self._state == _UNTIL_CLOSE:
            self._finish_body()
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _UNTIL_CLOSE:
            self._finish_body()
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state not in (_IDLE, _DONE):
            error = Disconnected("The server closed the connection before the response ended.")
            error.__cause__ = exc
            self._fail(error)

    # --- the parser ------------------------------------------------------------

    def _parse(self) -> None:
        pieces: list[bytes] = []  # this read's chunks of the body: handed to the sink together
        try:
            self._parse_into(pieces)
        finally:  # a malformed chunk after them still leaves them to the reader
            self._deliver_all(pieces)

    def _parse_into(self, pieces: list[bytes]) -> None:
        buffer = self._buffer
        while buffer:
            state = self._state
            if state == _HEAD:
                head = self._take_line(b"\r\n\r\n", MAX_HEAD, "The response head is too long.")
                if head is None:
                    return
                self._read_head(head)
            elif state == _CHUNK_SIZE:
                line = self._take_line(b"\r\n", MAX_CHUNK_LINE, "A chunk size line is too long.")
                if line is None:
                    return
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise MalformedResponse("A chunk size is not hexadecimal.") from None
                if size < 0:
                    raise MalformedResponse("A chunk size is negative.")
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                pieces.append(self._take_remaining())
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise MalformedResponse("A chunk does not end with CRLF.")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                trailer = self._take_line(b"\r\n", MAX_HEAD, "The trailers are too long.")
                if trailer is None:
                    return
                if not trailer:
                    self._deliver_all(pieces)
                    self._finish_body()
            elif state == _LENGTH:
                self._deliver(self._take_remaining())
                if not self._remaining:
                    self._finish_body()
            elif state == _UNTIL_CLOSE:
                piece = bytes(buffer)
                buffer.clear()
                self._deliver(piece)
            else:  # _DONE with bytes left: a second response nobody asked for
                raise MalformedResponse("The server sent bytes after the response.")

    def _take_line(self, end: bytes, limit: int, too_long: str) -> bytes | None:
        """The buffer up to `end` (taken off it, `end` too), or None until it has arrived."""
        buffer = self._buffer
        at = buffer.find(end)
        if at < 0:
            if len(buffer) > limit:
                raise MalformedResponse(too_long)
            return None
        line = bytes(buffer[:at])
        del buffer[: at + len(end)]
        return line

    def _take_remaining(self) -> bytes:
        """As much of the current chunk or body as the buffer holds (taken off it)."""
        piece = bytes(self._buffer[: self._remaining])
        del self._buffer[: len(piece)]
        self._remaining -= len(piece)
        return piece

    def _read_head(self, head: bytes) -> None:
        try:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            version, status, *reason = status_line.split(" ", 2)
            code = int(status)
        except ValueError:
            raise MalformedResponse("The response does not start with an HTTP status line.") from None
        if not version.startswith("HTTP/1.") or not 100 <= code <= 599:
            raise MalformedResponse("The response does not start with an HTTP/1.x status line.")
        if code < 200:  # 100 Continue and friends: the real head follows
            return
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise MalformedResponse("A response header has no colon.")
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        self.status, self.reason, self.headers = code, reason[0] if reason else "", headers
        connection = headers.get("connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and "close" not in connection
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decompress = zlib.decompressobj(zlib.MAX_WBITS | 32).decompress  # gzip or zlib, by header
        elif encoding not in ("", "identity"):
            raise MalformedResponse(
                f"The response is encoded as {encoding!r}, which this client does not read."
            )
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise MalformedResponse("The Content-Length is not a number.") from None
            self._state = _LENGTH
            if self._remaining <= 0:
                self._finish_body()
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE
        self._wake()

    def _deliver_all(self, pieces: list[bytes]) -> None:
        """The chunks a read brought, as one piece: a server that sends an event a chunk
        (most do) costs one decode a read, not one an event (docs/perf.md, change 53)."""
        if pieces:
            piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._deliver(piece)

    def _deliver(self, piece: bytes) -> None:
        if self._decompress is not None:
            piece = self._decompress(piece)
        if not piece:
            return
        if self.sink is None:  # nobody reads events (yet): keep the bytes
            self.body.append(piece)
            self.pending_bytes += len(piece)
        else:
            self.sink(piece)
            if not self.pending:
                return
        if self.pending_bytes > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _finish_body(self) -> None:
        self._state = _DONE
        self._wake()

    # --- the reader's side -------------------------------------------------------

    def begin(self, request: bytes, deadline: float) -> None:
        """Send a request; from here the connection belongs to one response."""
        self._state, self._received_any, self._error = _HEAD, False, None
        self.status, self.headers, self.body, self.pending, self.pending_bytes = 0, {}, [], [], 0
        self.sink, self._decompress, self._deadline = None, None, deadline
        self.transport.write(request)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def silent(self) -> bool:
        """No byte of the response has arrived."""
        return not self._received_any

    def expire_at(self, deadline: float) -> None:
        self._deadline = deadline

    async def wait(self) -> None:
        """Until something new for the reader (the head, events, the end) or an error."""
        if self._error is not None:
            raise self._error
        if self._paused and self.pending_bytes <= HIGH_WATER // 2:
            self._paused = False
            if self._resting is None:
                self.transport.resume_reading()
        now = self.loop.time()
        if now >= self._deadline:
            raise TimeoutError
        if self._timer is None or self._timer.when() > self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def rest(self, seconds: float) -> None:
        """Leave the socket unread for `seconds`: what the server sends meanwhile waits in
        the kernel and arrives in one read (one wake-up instead of one per packet)."""
        if seconds <= 0 or self._resting is not None or self.closed or self._state in (_IDLE, _DONE):
            return
        if not self._paused:
            self.transport.pause_reading()
        self._resting = self.loop.call_later(seconds, self._end_rest)

    def _end_rest(self) -> None:
        if self._resting is not None:
            self._resting.cancel()
            self._resting = None
            if not self._paused and not self.closed and not self.transport.is_closing():
                self.transport.resume_reading()

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # nobody waits: the next wait checks the deadline itself
        if self.loop.time() >= self._deadline:
            if not self._waiter.done():
                self._waiter.set_exception(TimeoutError())
        else:  # the deadline moved on since the timer was set
            self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)

    def abort(self, error: BaseException | None = None) -> None:
        """Close now; a pending or later `wait()` raises `error` (Interrupted by default)."""
        self._fail(error or Interrupted())
        self.closed = True
        self._stop_timer()
        self._end_rest()
        if self.transport is not None:
            self.transport.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def enter_tunnel(self) -> None:
        """After a proxy's 2xx to CONNECT: that answer has no body whatever its headers
        say, and the bytes that follow belong to the tunnel (TLS, then the request)."""
        self._state, self._buffer = _IDLE, bytearray()
        self._stop_timer()

    def settle(self) -> bool:
        """After a response: True when the connection can carry another request."""
        self._stop_timer()
        self._end_rest()
        if self.closed or not self.keep_alive or self._state != _DONE or self._buffer or self._paused:
            return False
        self._state, self.sink, self.pending, self.body = _IDLE, None, [], []
        self.idle_since = time.monotonic()
        return True


class Response:
    """A response whose head has arrived; its body is read with `events()` or `read()`."""

    def __init__(self, connection: _Connection, pool: Pool) -> None:
        self._connection = connection
        self._pool = pool
        self.status = connection.status
        self.reason = connection.reason
        self.headers = connection.headers
        self._released = False

    def expire_at(self, deadline: float) -> None:
        """Fail the next read with TimeoutError if nothing arrives by `deadline` (the loop's clock)."""
        self._connection.expire_at(deadline)

    async def events(self) -> list[bytes] | None:
        """The `data` of the next server-sent events (at least one), or None at the body's end."""
        connection = self._connection
        if connection.sink is None:
            decoder = SSEDecoder()
            pending = connection.pending

            def sink(piece: bytes) -> None:
                events = decoder.feed(piece)
                if events:
                    pending.extend(events)
                    connection.pending_bytes += sum(map(len, events))

            kept, connection.body, connection.pending_bytes = connection.body, [], 0
            for piece in kept:
                sink(piece)
            connection.sink = sink
        while not connection.pending:
            if connection.done:
                return None
            await connection.wait()
        events = connection.pending[:]
        connection.pending.clear()
        connection.pending_bytes = 0
        return events

    async def read(self, limit: int) -> bytes:
        """The body, up to `limit` bytes (the rest is not waited for)."""
        connection = self._connection
        while not connection.done and connection.pending_bytes < limit:
            await connection.wait()
        return b"".join(connection.body)[:limit]

    def rest(self, seconds: float) -> None:
        """Read nothing for `seconds` (the kernel keeps what arrives; the next read takes it
        all): a reader that consumes text only so often needs no wake-up per packet."""
        self._connection.rest(seconds)

    def interrupt(self) -> None:
        """From any task: the pending read raises Interrupted and the connection closes."""
        self._connection.abort()

    def close(self) -> None:
        """Give the connection back to the pool if the response ended cleanly, else close it."""
        if self._released:
            return
        self._released = True
        connection = self._connection
        if connection.settle():
            self._pool.release(connection)
        else:
            connection.abort(Interrupted())


@dataclass(frozen=True)
class _Proxy:
    origin: Origin
    authorization: str | None


def proxy_for(origin: Origin) -> _Proxy | None:
    """The proxy the environment names for `origin`, as httpx picks it (None: connect directly)."""
    proxies = urllib.request.getproxies()
    url = proxies.get(origin.scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass(origin.host):
        return None
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectFailed(f"Only http:// proxies are supported (the environment names {parts.scheme}://).")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode()
    return _Proxy(Origin("http", parts.hostname, parts.port or 80), authorization)


def tls_context() -> ssl.SSLContext:
    """Verify servers against certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set (as httpx does)."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or None, capath=os.environ.get("SSL_CERT_DIR") or None
        )
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Pool:
    """Keep-alive connections of one event loop, by origin. The environment's proxy for
    an origin is read once per pool, as httpx reads it once per client (reading it takes
    a walk through the whole environment)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._proxies: dict[Origin, _Proxy | None] = {}
        self._ssl = ssl_context
        self.opened = 0  # connections opened so far (tests and the benchmark read it)

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = tls_context()
        return self._ssl

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, deadline: float) -> Response:
        """POST `body` to `url`; returns once the response's head has arrived, or raises
        ConnectFailed, Disconnected, MalformedResponse or TimeoutError (past `deadline`)."""
        origin = Origin.of(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if origin not in self._proxies:
            self._proxies[origin] = proxy_for(origin)
        proxy = self._proxies[origin]
        if proxy is not None and origin.scheme == "http":
            target = f"http://{origin.authority}{target}"  # absolute form, through the proxy
        lines = [f"POST {target} HTTP/1.1", f"Host: {origin.authority}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if proxy is not None and proxy.authorization and origin.scheme == "http":
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        request = _request_head(lines) + body

        connection = self._take(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, request, deadline)
            except (Disconnected, MalformedResponse):
                if not connection.silent:
                    raise
                # The server had closed the idle connection: once more, on a fresh one.
        connection = await self._open(origin, proxy, deadline)
        return await self._exchange(connection, request, deadline)

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> Response:
        await _until_head(connection, request, deadline)
        return Response(connection, self)

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if (
                not connection.closed
                and not connection.transport.is_closing()
                and now - connection.idle_since < KEEPALIVE_SECONDS
            ):
                return connection
            connection.abort()
        return None

    def release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= MAX_IDLE:
            connection.abort()
            return
        idle.append(connection)

    async def _open(self, origin: Origin, proxy: _Proxy | None, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context() if origin.scheme == "https" else None
        host, port = (proxy.origin.host, proxy.origin.port) if proxy else (origin.host, origin.port)
        try:
            async with asyncio.timeout_at(deadline):
                if proxy is None or tls is None:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(loop, origin),
                        host,
                        port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
                else:
                    connection = await self._tunnel(loop, origin, proxy, tls, deadline)
        except TimeoutError:  # an OSError too, but the deadline's, not the network's
            raise
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"Could not connect to {origin.authority}: {type(exc).__name__}") from exc
        self.opened += 1
        return connection

    async def _tunnel(self, loop, origin: Origin, proxy: _Proxy, tls: ssl.SSLContext, deadline: float):
        """A CONNECT tunnel through the proxy, then TLS with the origin inside it."""
        transport, connection = await loop.create_connection(
            lambda: _Connection(loop, origin), proxy.origin.host, proxy.origin.port
        )
        lines = [f"CONNECT {origin.host}:{origin.port} HTTP/1.1", f"Host: {origin.host}:{origin.port}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        await _until_head(connection, _request_head(lines), deadline)
        if not 200 <= connection.status < 300:
            connection.abort()
            raise ConnectFailed(f"The proxy refused the tunnel: {connection.status} {connection.reason}")
        connection.enter_tunnel()
        connection.transport = await loop.start_tls(transport, connection, tls, server_hostname=origin.host)
        return connection

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()


def _request_head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _until_head(connection: _Connection, request: bytes, deadline: float) -> None:
    """Send `request` and wait for the response's head; on any failure the connection is closed."""
    connection.begin(request, deadline)
    try:
        while not connection.status:
            await connection.wait()
    except BaseException:
        connection.abort()
        raise
