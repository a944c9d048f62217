"""The launcher's `styled_when_logged`: autobahn's per-frame debug lines style their
arguments when a line is written, not for every frame whose line the logger drops."""

from __future__ import annotations

import click
import pytest
from autobahn import util
from autobahn.twisted import websocket
from autobahn.websocket import protocol

from chatplatform.serve import styled_when_logged

PEER = "tcp4:127.0.0.1:50000"


@pytest.fixture
def styles(monkeypatch):
    for module in (protocol, websocket):  # autobahn's own back after the test
        monkeypatch.setattr(module, "hltype", module.hltype)
        monkeypatch.setattr(module, "hlval", module.hlval)
    styled_when_logged()
    styled: list[str] = []
    style = click.style
    monkeypatch.setattr(click, "style", lambda text, **kwargs: styled.append(text) or style(text, **kwargs))
    return styled


def test_a_line_the_logger_drops_styles_nothing(styles):
    for module in (protocol, websocket):
        module.hltype(websocket.WebSocketServerProtocol.sendData)
        module.hlval(PEER)
        module.hlval(1024)

    assert styles == []


def test_a_line_written_reads_as_autobahn_styles_it(styles):
    line = "{func} sent {data_len} bytes for peer {peer}"
    func = websocket.WebSocketServerProtocol.sendData

    written = line.format(
        func=protocol.hltype(func), data_len=protocol.hlval(1024), peer=websocket.hlval(PEER)
    )

    assert styles  # styled as it was written
    assert written == line.format(func=util.hltype(func), data_len=util.hlval(1024), peer=util.hlval(PEER))
    assert "\x1b[" in written and "sendData" in written and PEER in written
