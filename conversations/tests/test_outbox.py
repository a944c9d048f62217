"""The outbox sends each group's events in order, and the groups beside each other."""

from __future__ import annotations

import asyncio
import threading

from conversations.generation.outbox import Outbox


class HeldSockets:
    """group_send that records what it sends and holds one group's sends until released."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
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
