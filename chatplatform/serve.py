"""The production server: daphne, its event loop uvloop's.

    python -m chatplatform.serve [daphne's options] chatplatform.asgi:application

takes daphne's command line unchanged. daphne makes its event loop when
`daphne.server` is imported, before it imports the application, so the loop
can only be chosen by a launcher that sets asyncio's policy first. On uvloop
(libuv's loop, in C) a server process at 100 streams spent 16 % less CPU a
reply (the median of six pairs; docs/perf.md, round ten): a quarter of a
process's time was the loop's own bookkeeping for the provider's packets and
the sockets' frames. Twisted runs on it as on asyncio's loop (its reactor
uses asyncio's `add_reader`, `call_later` and `call_soon_threadsafe`, which
uvloop implements).

The choice is the setting `CHAT_EVENT_LOOP` (the environment or `.env`, read
through Django's settings as everything else): `asyncio` keeps asyncio's own
loop, as plain `daphne chatplatform.asgi:application` and `runserver` do.
Without uvloop installed (it has no Windows build) the launcher says so and
uses asyncio's.

The launcher also makes daphne's connections write at once (`write_through`)
and autobahn's debug lines style their arguments only when written
(`styled_when_logged`).
"""

from __future__ import annotations

import asyncio
import os
import sys


def choose_event_loop(name: str) -> str:
    """Make `name` ("uvloop" or "asyncio") the loop `asyncio.new_event_loop()` builds;
    return the one it will build."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("chatplatform.serve: uvloop is not installed; using asyncio's event loop", file=sys.stderr)
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    if name != "asyncio":
        raise ValueError(f"unknown event loop {name!r}")
    return name


def running_event_loop() -> str:
    """ "uvloop" or "asyncio": the loop the calling coroutine runs on (the runtime logs it)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
    from django.conf import settings  # the environment and .env, validated

    choose_event_loop(settings.CHAT_EVENT_LOOP)
    from daphne.cli import CommandLineInterface  # imports daphne.server, which makes the loop

    write_through()
    styled_when_logged()
    CommandLineInterface.entrypoint()


def write_through() -> None:
    """Twisted's accepted TCP connections send what they are given at once when nothing
    is waiting before it, instead of always through the reactor.

    A Twisted transport buffers every `write` and registers the socket for
    writability; the reactor then sends the buffer and unregisters it: for each
    WebSocket frame, two calls into the event loop, an `epoll` round and a
    callback, ~7 % of a streaming process's samples at N=100 (docs/perf.md,
    change 51). What the socket does not take at once, and everything written
    while something is buffered, keeps Twisted's own way (in order, with its
    back-pressure, its errors and its close), as does a connection with TLS
    started on it (its ciphertext is written below this method) or with a pull
    producer (which Twisted asks for more once its last write has gone out).
    """
    from twisted.internet import abstract, tcp

    buffered = tcp.Connection.write  # Twisted's own (the server's, before this; so twice is once)
    probe = abstract.FileDescriptor(reactor=object())  # what a transport's buffer is made of
    for name in ("dataBuffer", "offset", "_tempDataLen", "_writeDisconnected"):
        if not hasattr(probe, name):  # a Twisted that buffers otherwise
            print(
                f"chatplatform.serve: Twisted has no FileDescriptor.{name}; writes are buffered",
                file=sys.stderr,
            )
            return

    def write(self: tcp.Server, data: bytes) -> None:
        if (
            type(data) is bytes  # anything else: Twisted's own error
            and data
            and not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
            and (self.producer is None or self.streamingProducer)  # a pull producer is asked again by doWrite
        ):
            sent = self.writeSomeData(data)  # bytes sent, or the connection's loss (met again below)
            if type(sent) is int:
                if sent == len(data):
                    return
                data = data[sent:]
        buffered(self, data)

    tcp.Server.write = write


class _StyledWhenLogged:
    """A log argument that autobahn's `style` renders only when a line is written."""

    __slots__ = ("style", "value")

    def __init__(self, style, value) -> None:
        self.style, self.value = style, value

    def __str__(self) -> str:
        return self.style(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def styled_when_logged() -> None:
    """autobahn styles the arguments of its debug lines (`hltype`, `hlval`: a method's
    qualified name, the peer, a length, each through click.style) before its logger drops
    the line: three for every WebSocket frame sent and every packet read, ~5 us a frame
    (about 1 % of a streaming process's CPU at N=100; docs/perf.md, change 62). Its
    WebSocket modules get versions that style a line's arguments when it is written."""
    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    def hltype(obj, style=util.hltype):
        return _StyledWhenLogged(style, obj)

    def hlval(value, style=util.hlval):
        return _StyledWhenLogged(style, value)

    for module in (protocol, twisted_websocket):
        if hasattr(module, "hltype") and hasattr(module, "hlval"):  # else an autobahn that styles otherwise
            module.hltype, module.hlval = hltype, hlval


if __name__ == "__main__":
    main()
