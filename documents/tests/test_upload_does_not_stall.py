"""A 20 MB upload, its extraction and indexing do not stall a reply streaming on another socket.

A real daphne on loopback (the pytest database, Redis): one socket streams a
reply of a few seconds while another client uploads a 20 MB text file over
HTTP, which the server then reads, chunks and indexes in its worker threads.
The deltas of the reply must keep coming: the largest gap between two of
them stays far below a second (they are flushed every 40 ms).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation
from documents.models import Attachment
from tests.security.conftest import make_user, send_frame, server_env, session_cookie, ws_open
from tests.servers import daphne

db = database_sync_to_async
UPLOAD_BYTES = 20 * 1024 * 1024 - 4096  # just under the default limit
CSRF = "a" * 32
REPLY_TOKENS = 400
TOKEN_MS = 25  # 400 tokens at 25 ms: a reply of about 10 s
BASELINE_DELTAS = 40  # about 1.6 s of streaming before the upload starts, for comparison
# 25 flush intervals. Before daphne was kept from parsing upload bodies in the event
# loop (documents/daphne.py) the same upload froze the reply for 1.3 to 1.8 s.
MAX_GAP_SECONDS = 1.0


def twenty_megabytes_of_text() -> bytes:
    paragraph = (
        "The harbour report lists cargo, fishing boats, dredging and the lighthouse; "
        "each section repeats figures for the committee. "
    ) * 6
    block = (paragraph.strip() + "\n\n").encode()
    return (block * (UPLOAD_BYTES // len(block) + 1))[:UPLOAD_BYTES]


def upload(base_url: str, conversation_id, cookie: str, data: bytes) -> tuple[int, dict, float]:
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        response = client.post(
            f"/c/{conversation_id}/attachments/",
            files={"file": ("big-report.txt", data, "text/plain")},
            headers={"Cookie": f"{cookie}; csrftoken={CSRF}", "X-CSRFToken": CSRF, "Origin": base_url},
        )
    return response.status_code, response.json(), time.monotonic() - started


@pytest.mark.django_db(transaction=True)
async def test_a_20_mb_upload_does_not_stall_a_reply_streaming_on_another_socket(tmp_path):
    env = server_env(
        DOCUMENTS_STORAGE_OPTIONS=json.dumps({"location": str(tmp_path / "files")}),
        DOCUMENTS_MAX_TEXT_CHARS="30000000",  # so the whole file is read and indexed, not refused
        CHAT_FLUSH_INTERVAL_MS="40",
    )
    data = twenty_megabytes_of_text()
    alice = await db(make_user)("alice")
    conversation = await db(Conversation.objects.create)(owner=alice)
    other = await db(Conversation.objects.create)(owner=alice)
    cookie = await db(session_cookie)(alice)

    with daphne(env, log_dir=tmp_path, name="stall") as server:
        ws = await ws_open(server, conversation.id, cookie)
        await ws.send(send_frame(f"[[tokens:{REPLY_TOKENS}]][[slow:{TOKEN_MS}]] a long answer"))
        arrivals: list[float] = []
        uploading: asyncio.Task | None = None
        upload_started = 0.0
        async with asyncio.timeout(60):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message.delta":
                    arrivals.append(time.monotonic())
                    if uploading is None and len(arrivals) >= BASELINE_DELTAS:  # streaming: upload now
                        upload_started = time.monotonic()
                        uploading = asyncio.ensure_future(
                            asyncio.to_thread(upload, server.url, other.id, cookie, data)
                        )
                if frame["type"] in {"message.completed", "message.failed"}:
                    break
        await ws.close()
        assert frame["type"] == "message.completed", frame
        status, body, upload_seconds = await uploading
        assert status == 201, body

        # The file is read and indexed too (in the server's worker threads).
        deadline = time.monotonic() + 120
        while (attachment := await db(Attachment.objects.get)(pk=body["id"])).status not in {
            "ready",
            "failed",
        }:
            assert time.monotonic() < deadline, "the upload was never processed"
            await asyncio.sleep(0.1)
        assert attachment.status == "ready", attachment.error
        chunks = await db(attachment.chunks.count)()

    during = [b - a for a, b in itertools.pairwise(arrivals) if b >= upload_started]
    before = [b - a for a, b in itertools.pairwise(arrivals) if b < upload_started]
    worst = max(during)
    slow = [
        (round(a - upload_started, 2), round(b - a, 2))
        for a, b in itertools.pairwise(arrivals)
        if b >= upload_started and b - a > 0.2
    ]
    print(f"\ngaps over 200 ms (seconds after the upload began, gap): {slow}")
    print(
        f"\nupload of {len(data) / 2**20:.1f} MB took {upload_seconds:.2f} s; {chunks} chunks indexed; "
        f"{len(during)} deltas after it began, largest gap {worst * 1000:.0f} ms, "
        f"median {sorted(during)[len(during) // 2] * 1000:.0f} ms; before it: largest gap "
        f"{max(before) * 1000:.0f} ms, median {sorted(before)[len(before) // 2] * 1000:.0f} ms"
    )
    assert len(during) >= 20, "the reply ended before the upload started"
    assert worst < MAX_GAP_SECONDS, f"a {worst * 1000:.0f} ms gap between deltas while the upload ran"


def test_daphne_leaves_form_bodies_to_django():
    from daphne.http_protocol import WebRequest
    from twisted.internet.testing import StringTransport
    from twisted.web.http import HTTPChannel

    channel = HTTPChannel()
    channel.makeConnection(StringTransport())
    channel.factory = type(
        "Factory", (), {"server": type("Server", (), {"protocol_connected": lambda *a: None})()}
    )()
    request = WebRequest(channel)
    assert request._parsePOSTFormSubmission is False
