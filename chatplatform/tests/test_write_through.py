"""The launcher's write-through: a frame leaves at once when nothing waits before it,
and whatever the socket does not take keeps Twisted's buffered way, in order.

A real Twisted `tcp.Server` transport on one end of a socket pair, with a
memory reactor (which records what the transport asks it to watch)."""

from __future__ import annotations

import socket
import types

import pytest
from twisted.internet import interfaces, main, protocol, tcp
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from chatplatform.serve import write_through


@pytest.fixture
def shim():
    assert "write" not in vars(tcp.Server)  # Twisted's own, inherited
    write_through()
    write_through()  # twice is once
    yield
    del tcp.Server.write


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    reactor = MemoryReactorClock()
    port = types.SimpleNamespace(_realPortNumber=8000)
    transport = tcp.Server(ours, protocol.Protocol(), ("127.0.0.1", 50000), port, 1, reactor)
    yield transport, peer, reactor
    ours.close()
    peer.close()


def received(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_twisted_alone_waits_for_the_reactor_to_send(pair):
    transport, peer, reactor = pair
    transport.write(b"frame")

    assert received(peer) == b"" and reactor.getWriters() == [transport]


def test_a_frame_leaves_at_once_without_asking_the_reactor(shim, pair):
    transport, peer, reactor = pair
    transport.write(b"frame one")
    transport.write(b"frame two")

    assert received(peer) == b"frame oneframe two"
    assert reactor.getWriters() == []


def test_what_the_socket_does_not_take_goes_out_after_it_in_order(shim, pair):
    transport, peer, reactor = pair
    big = bytes(range(256)) * (32 * 1024)  # 8 MB: more than a socket pair's buffers hold
    transport.write(big)
    assert reactor.getWriters() == [transport]  # the rest waits in Twisted's buffer
    transport.write(b"after")  # written while something is buffered: behind it

    got = [received(peer)]
    for _ in range(10_000):
        if not reactor.getWriters():
            break
        assert transport.doWrite() is None
        got.append(received(peer))
    got.append(received(peer))

    assert b"".join(got) == big + b"after"
    assert reactor.getWriters() == []


def test_a_lost_peer_is_met_the_buffered_way(shim, pair):
    transport, peer, reactor = pair
    peer.close()
    for _ in range(3):  # the first sends may still be taken by the kernel
        transport.write(b"x" * 1024)

    assert reactor.getWriters() == [transport]
    assert transport.doWrite() is main.CONNECTION_LOST


@implementer(interfaces.IPullProducer)
class Pull:
    """Writes a piece each time it is asked, three times."""

    def __init__(self, transport: tcp.Server) -> None:
        self.transport, self.asked = transport, 0

    def resumeProducing(self) -> None:
        self.asked += 1
        if self.asked <= 3:
            self.transport.write(b"piece %d;" % self.asked)

    def stopProducing(self) -> None:
        pass


def test_a_pull_producer_keeps_twisted_way_and_is_asked_again(shim, pair):
    transport, peer, reactor = pair
    producer = Pull(transport)
    transport.registerProducer(producer, streaming=False)  # asks for the first piece at once
    for _ in range(10):
        if not reactor.getWriters():
            break
        transport.doWrite()  # sends, and asks the producer for more once all is sent

    assert received(peer) == b"piece 1;piece 2;piece 3;"
    assert producer.asked == 4  # a fourth time: it had nothing more
