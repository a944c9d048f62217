"""The reply reader's HTTP client (conversations/llm/http_stream.py) against raw servers:
framing, keep-alive, TLS, proxies, malformed answers and back-pressure, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import ssl

import pytest
import trustme

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.llm import http_stream
from conversations.llm.base import ChatMessage
from conversations.llm.openai_compatible import OpenAICompatibleProvider

pytestmark = pytest.mark.timeout(30)


def events(*texts: str, finish: str = "stop") -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": None}]}
    out = b""
    for text in texts:
        chunk["choices"][0]["delta"] = {"content": text}
        out += b"data: " + json.dumps(chunk).encode() + b"\n\n"
    chunk["choices"][0].update(delta={}, finish_reason=finish)
    return out + b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


def chunk_of(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


def chunked(body: bytes, piece: int = 50) -> bytes:
    parts = [body[i : i + piece] for i in range(0, len(body), piece)]
    return b"".join(chunk_of(part) for part in parts) + b"0\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    """One request off a connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return line, headers, body


class RawServer:
    """An asyncio server whose connections run `handler(reader, writer, number)`; counts connections."""

    def __init__(self, handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls, self.connections = handler, tls, 0

    async def __aenter__(self) -> RawServer:
        async def accept(reader, writer):
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            finally:
                writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def url(self, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}/v1"


def provider(base_url: str, **overrides) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(base_url=base_url, model="m", timeout=overrides.pop("timeout", 5.0))


async def reply(p: OpenAICompatibleProvider, text: str = "hi") -> str:
    """The reply's text (a read's tokens come as one delta: how they split is the network's)."""
    return "".join(await reply_of(p.stream([ChatMessage(role="user", content=text)])))


async def reply_of(stream) -> list[str]:
    return [delta async for delta in stream]


async def sse_forever(reader, writer, number, *, body: bytes = events("Hel", "lo")) -> None:
    """Answer every request on the connection with a chunked event stream, keep-alive."""
    while await read_request(reader) is not None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(chunked(body))
        await writer.drain()


async def test_replies_one_after_another_share_one_connection():
    async with ScriptedOpenAIServer(ttft_ms=1, tokens_per_second=1000, tokens=8) as server:
        p = OpenAICompatibleProvider(base_url=server.base_url, model="scripted-model", timeout=5)
        messages = [ChatMessage(role="user", content="one")]
        first = [d async for d in p.stream(messages)]
        second = await reply_of(p.stream(messages))

        assert "".join(first) == "".join(second) == server.expected_reply(messages)
        assert p.pool().opened == 1
        await p.close()


async def test_a_pooled_connection_the_server_dropped_unanswered_is_replaced_once():
    async def once_then_drop(reader, writer, number):
        await sse_forever_once(reader, writer)
        await read_request(reader)  # the second request on this connection: closed unanswered

    async def sse_forever_once(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(events("a", "b")))
        await writer.drain()

    async with RawServer(once_then_drop) as server:
        p = provider(server.url())
        assert await reply(p) == "ab"
        assert await reply(p) == "ab"  # sent again on a fresh connection

        assert server.connections == 2
        assert p.pool().opened == 2


async def test_a_fresh_connection_closed_unanswered_fails_without_a_retry():
    async def drop(reader, writer, number):
        await read_request(reader)

    async with RawServer(drop) as server:
        with pytest.raises(Exception) as caught:
            await reply(provider(server.url()))

        assert caught.value.code == "unreachable"
        assert server.connections == 1


async def test_the_request_names_its_host_agent_and_the_encodings_it_reads():
    seen = []

    async def record(reader, writer, number):
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(events("x")), events("x")))
        await writer.drain()

    async with RawServer(record) as server:
        assert await reply(provider(f"http://user:p%40ss@localhost:{server.port}/v1")) == "x"

    line, headers, body = seen[0]
    assert line == "POST /v1/chat/completions HTTP/1.1"
    assert headers["host"] == f"localhost:{server.port}"  # no credentials in the Host
    assert headers["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"]
    assert json.loads(body)["stream"] is True


def test_an_internationalised_host_is_sent_in_its_ascii_form():
    assert http_stream.Origin.of("https://bücher.example:8443/v1").authority == "xn--bcher-kva.example:8443"
    assert http_stream.Origin.of("http://[::1]:8000/v1").authority == "[::1]:8000"


@pytest.mark.parametrize(
    ("head", "encode"),
    [
        ("Content-Length: {n}", lambda body: body),
        ("Content-Encoding: gzip\r\nContent-Length: {n}", gzip.compress),
        (
            "Content-Encoding: gzip\r\nTransfer-Encoding: chunked",
            lambda body: chunked(gzip.compress(body), 7),
        ),
        ("Connection: close", lambda body: body),
    ],
    ids=["content-length", "gzip", "gzip-chunked", "until-close"],
)
async def test_every_body_framing_reads_the_same_reply(head, encode):
    body = encode(events("Grüße", ", ", "world"))

    async def answer(reader, writer, number):
        await read_request(reader)
        length = len(body) if "chunked" not in head else 0
        writer.write(f"HTTP/1.1 200 OK\r\n{head.format(n=length)}\r\n\r\n".encode() + body)
        await writer.drain()

    async with RawServer(answer) as server:
        assert await reply(provider(server.url())) == "Grüße, world"


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ids=["not-http", "bad-chunk-size"],
)
async def test_a_response_that_is_not_http_is_a_malformed_provider_error(answer):
    async def garbage(reader, writer, number):
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()

    async with RawServer(garbage) as server:
        with pytest.raises(Exception) as caught:
            await reply(provider(server.url()))

    assert caught.value.code == "provider_error"
    assert "malformed" in caught.value.message


def test_an_endless_event_is_refused_not_buffered():
    decoder = http_stream.SSEDecoder()
    assert decoder.feed(b"data: " + b"x" * (http_stream.MAX_EVENT // 2)) == []
    with pytest.raises(http_stream.MalformedResponse):
        decoder.feed(b"x" * (http_stream.MAX_EVENT // 2 + 10))


def test_events_of_any_number_never_count_against_the_limit():
    decoder = http_stream.SSEDecoder()
    event = b"data: " + b"y" * 1000 + b"\n\n"
    received = sum(len(decoder.feed(event * 1000)) for _ in range(10))  # 10 MB in whole events
    assert received == 10_000


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_https_is_verified_against_ssl_cert_file(ca, tmp_path, monkeypatch):
    async with RawServer(sse_forever, tls=server_tls(ca)) as server:
        with pytest.raises(Exception) as caught:  # certifi's CAs do not know this one
            await reply(provider(server.url("https")))
        assert caught.value.code == "unreachable"

        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        p = provider(server.url("https"))
        assert await reply(p) == "Hello"
        assert await reply(p) == "Hello"
        assert p.pool().opened == 1  # TLS connections are pooled too


class Proxy(RawServer):
    """A forward proxy: CONNECT tunnels, and absolute-form requests forwarded once. Records request lines."""

    def __init__(self) -> None:
        super().__init__(self.relay)
        self.seen: list[tuple[str, str | None]] = []

    async def relay(self, reader, writer, number) -> None:
        request = await read_request(reader)
        if request is None:
            return
        line, headers, body = request
        self.seen.append((line, headers.get("proxy-authorization")))
        method, target, _ = line.split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            hostport = target.split("/")[2]
            host, port = hostport.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            path = "/" + target.split("/", 3)[3]
            kept = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "proxy-authorization")
            upstream_writer.write(f"{method} {path} HTTP/1.1\r\n{kept}\r\n".encode() + body)

        async def pipe(source, sink):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )


async def test_https_goes_through_the_environments_proxy_in_a_connect_tunnel(ca, tmp_path, monkeypatch):
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    async with RawServer(sse_forever, tls=server_tls(ca)) as server, Proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://alice:s%40cret@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        assert await reply(provider(server.url("https", "localhost"))) == "Hello"

    assert proxy.seen == [
        (f"CONNECT localhost:{server.port} HTTP/1.1", "Basic " + base64.b64encode(b"alice:s@cret").decode())
    ]


async def test_http_goes_through_the_proxy_in_absolute_form_unless_no_proxy_names_the_host(monkeypatch):
    async with RawServer(sse_forever) as server, Proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert await reply(provider(server.url())) == "Hello"
        assert proxy.seen == [(f"POST http://127.0.0.1:{server.port}/v1/chat/completions HTTP/1.1", None)]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert await reply(provider(server.url())) == "Hello"
        assert len(proxy.seen) == 1


async def test_a_reader_that_falls_behind_pauses_the_socket_and_loses_nothing():
    texts = [f"{i:05d}" + "x" * 2000 for i in range(1500)]  # ~3 MB of events

    async def flood(reader, writer, number):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(events(*texts), 65536)
        )
        await writer.drain()

    async with RawServer(flood) as server:
        pool = http_stream.Pool()
        loop = asyncio.get_running_loop()
        response = await pool.post(f"{server.url()}/chat/completions", b"{}", {}, deadline=loop.time() + 10)
        connection = response._connection
        for _ in range(500):  # the server writes as fast as it can; the reader does not read yet
            if connection._paused:
                break
            await asyncio.sleep(0.01)
        assert connection._paused
        received = []
        while (batch := await response.events()) is not None:
            received += [json.loads(e)["choices"][0]["delta"].get("content") for e in batch if e != b"[DONE]"]
        response.close()
        pool.close()

    assert received == [*texts, None]


async def test_a_resting_reader_takes_what_arrived_meanwhile_in_one_read_and_one_decode(monkeypatch):
    go, written = asyncio.Event(), asyncio.Event()
    fed = []
    feed = http_stream.SSEDecoder.feed
    monkeypatch.setattr(
        http_stream.SSEDecoder, "feed", lambda self, piece: (fed.append(piece), feed(self, piece))[1]
    )
    first, *later = [chunk_of(e + b"\n\n") for e in events("a", "b", "c", "d").split(b"\n\n") if e]

    async def paced(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + first)
        await go.wait()
        for piece in [*later, b"0\r\n\r\n"]:  # each in a packet of its own
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        written.set()

    async with RawServer(paced) as server:
        pool = http_stream.Pool()
        loop = asyncio.get_running_loop()
        response = await pool.post(f"{server.url()}/chat/completions", b"{}", {}, deadline=loop.time() + 10)
        connection = response._connection
        reads = []
        received = connection.data_received
        connection.data_received = lambda data: (reads.append(data), received(data))
        assert len(await response.events()) == 1

        response.rest(30)
        go.set()
        await written.wait()
        assert reads == []  # six packets sent, none read
        connection._end_rest()  # what the rest's timer does when it fires
        fed.clear()
        batch = await response.events()
        assert await response.events() is None
        response.close()

        assert len(reads) == 1
        assert len(fed) == 1  # the read's five chunks, decoded at once
        assert [json.loads(e)["choices"][0]["delta"].get("content") for e in batch[:-1]] == [
            "b",
            "c",
            "d",
            None,
        ]
        assert batch[-1] == b"[DONE]"
        assert pool.opened == 1 and connection in pool._idle[connection.origin]  # reusable after its rest
        pool.close()


async def test_a_reader_stopped_while_it_rests_stops_at_once():
    async def endless(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk_of(events("a")[:40]))
        await reader.read()  # until the client closes

    async with RawServer(endless) as server:
        pool = http_stream.Pool()
        loop = asyncio.get_running_loop()
        response = await pool.post(f"{server.url()}/chat/completions", b"{}", {}, deadline=loop.time() + 10)
        response.rest(30)
        reading = asyncio.create_task(response.events())
        await asyncio.sleep(0)
        response.interrupt()

        with pytest.raises(http_stream.Interrupted):
            await asyncio.wait_for(reading, 2)
        assert response._connection.closed and response._connection._resting is None
        pool.close()


async def test_a_stream_told_to_gather_reads_its_reply_in_a_few_reads_and_keeps_the_connection():
    async with ScriptedOpenAIServer(ttft_ms=1, tokens_per_second=200, tokens=20) as server:
        p = OpenAICompatibleProvider(base_url=server.base_url, model="scripted-model", timeout=5)
        messages = [ChatMessage(role="user", content="gather")]
        asked = []
        stream = p.stream(messages)
        stream.gather = lambda: asked.append(1) or 0.5
        first = await reply_of(stream)
        second = await reply_of(p.stream(messages))

        assert "".join(first) == "".join(second) == server.expected_reply(messages)
        assert stream.result.finish_reason == "stop"
        assert 1 <= len(asked) <= 5  # once a read, not once a token (20 tokens, 100 ms)
        assert p.pool().opened == 1
        await p.close()


async def test_the_end_of_a_reply_is_not_kept_waiting_by_a_rest():
    body = events("all", "at", "once")

    async def end_apart(reader, writer, number):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk_of(body))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")  # the body's end, in a packet after the finish
        await writer.drain()

    async with RawServer(end_apart) as server:
        stream = provider(server.url()).stream([ChatMessage(role="user", content="hi")])
        stream.gather = lambda: 30.0

        assert await asyncio.wait_for(reply_of(stream), 3) == ["allatonce"]  # one read, one delta
