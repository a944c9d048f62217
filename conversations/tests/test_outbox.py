"""The outbox sends each group's events in order, and the groups beside each other."""

from __future__ import annotations

import asyncio
import threading

from channels.layers import channel_layers

from conversations.generation.outbox import Outbox
from conversations.generation.sockets import LocalSockets
from conversations.layers import ChatInMemoryChannelLayer


class HeldSockets:
    """group_send that records what it sends and holds one group's sends until released."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict, *, queued_at: float | None = None) -> None:
        if group == self.held:
            await self.release.wait()
        self.sent.append((group, message))


async def test_a_groups_events_go_out_while_another_groups_are_held_and_each_in_order():
    sockets = HeldSockets(held="busy")
    outbox = Outbox(sockets, asyncio.get_running_loop())
    outbox.start()
    for n in range(3):
        outbox.put("busy", {"n": n})
    # Queued from another thread, as a commit in the ORM's thread does.
    thread = threading.Thread(target=lambda: [outbox.put("quiet", {"n": n}) for n in range(2)])
    thread.start()
    thread.join()

    await asyncio.wait_for(outbox.flushed("quiet"), timeout=2)  # not behind "busy"
    assert [m["n"] for g, m in sockets.sent if g == "quiet"] == [0, 1]
    everything = asyncio.ensure_future(outbox.flushed())
    await asyncio.sleep(0)
    assert not everything.done()  # "busy" is still held

    sockets.release.set()
    await asyncio.wait_for(everything, timeout=2)
    assert [m["n"] for g, m in sockets.sent if g == "busy"] == [0, 1, 2]
    await outbox.close()


class CountingLayer(ChatInMemoryChannelLayer):
    def __init__(self) -> None:
        super().__init__()
        self.member_reads = 0

    async def group_channels(self, group: str) -> list[str]:
        self.member_reads += 1
        return await super().group_channels(group)


async def test_events_queued_together_share_one_read_of_the_groups_members():
    layer = channel_layers.backends["default"] = CountingLayer()
    here: list[dict] = []

    async def deliver(message: dict) -> None:
        here.append(message)

    elsewhere = await layer.new_channel()  # a tab on another process
    await layer.group_add("chat", elsewhere)
    await layer.group_add("chat", "local!tab")
    sockets = LocalSockets()
    sockets.join("chat", "local!tab", deliver)
    outbox = Outbox(sockets, asyncio.get_running_loop())
    outbox.start()

    outbox.put("chat", {"type": "chat.event", "n": 0})  # a send's two message.created
    outbox.put("chat", {"type": "chat.event", "n": 1})
    await asyncio.wait_for(outbox.flushed("chat"), timeout=2)
    assert layer.member_reads == 1
    assert [m["n"] for m in here] == [0, 1]
    assert [(await layer.receive(elsewhere))["n"] for _ in range(2)] == [0, 1]

    outbox.put("chat", {"type": "chat.event", "n": 2})  # queued after that read: read again
    await asyncio.wait_for(outbox.flushed("chat"), timeout=2)
    assert layer.member_reads == 2
    assert [m["n"] for m in here] == [0, 1, 2]
    await outbox.close()


async def test_a_replys_deltas_reuse_the_members_read_for_its_start_until_they_are_stale(monkeypatch):
    from conversations.generation import sockets as sockets_module

    layer = channel_layers.backends["default"] = CountingLayer()
    clock = [1000.0]
    monkeypatch.setattr(sockets_module.time, "monotonic", lambda: clock[0])
    here: list[dict] = []

    async def deliver(message: dict) -> None:
        here.append(message)

    elsewhere = await layer.new_channel()
    await layer.group_add("chat", elsewhere)
    await layer.group_add("chat", "local!tab")
    sockets = LocalSockets()
    sockets.join("chat", "local!tab", deliver)

    await sockets.group_send("chat", {"type": "chat.event", "n": "created"})  # read afresh
    for n in range(4):  # a reply's deltas over four seconds
        clock[0] += 1.0
        await sockets.group_send("chat", {"type": "chat.event", "n": n}, stream=True)
    assert layer.member_reads == 1

    sockets.forget_members("chat")  # a sync: the asker may have joined elsewhere
    await sockets.group_send("chat", {"type": "chat.event", "n": 4}, stream=True)
    assert layer.member_reads == 2
    clock[0] += sockets_module.MEMBERS_TTL + 0.1  # stale: read again
    await sockets.group_send("chat", {"type": "chat.event", "n": 5}, stream=True)
    assert layer.member_reads == 3

    assert [m["n"] for m in here] == ["created", 0, 1, 2, 3, 4, 5]
    assert [(await layer.receive(elsewhere))["n"] for _ in range(7)] == ["created", 0, 1, 2, 3, 4, 5]
