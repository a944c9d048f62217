"""This process's sockets and listeners, by group and channel, and the fan-out of one event.

Every socket joins its groups on the channel layer, so an event from any
process reaches it. The publishing process hands the frame to its own
sockets directly: with channels-redis a frame through Redis costs about ten
commands, and a process reads its sockets' messages one at a time through a
single receive loop, which caps it at a few thousand frames a second however
idle the CPU is. Only the members on other processes go through the layer,
one `send` each, found with the layer's public `group_channels`
(conversations/layers.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from channels.layers import get_channel_layer

log = structlog.get_logger(__name__)

Deliver = Callable[[dict], Awaitable[None]]

# Deltas and blocks follow each other many times a second: they go to the group's
# members as read up to MEMBERS_TTL seconds before, usually the read made for the
# reply's `message.created`, so a reply of a few seconds reads them once. A tab that
# joins on another process in the middle of a reply is not among them: the page syncs
# every reply still being written when its socket opens (static/js/app.js), and a
# `sync` refreshes the members on the reply's process; any other client sees a gap in
# the offsets once the members are read again and asks `sync`, as after any reconnect.
# A socket that leaves elsewhere gets up to MEMBERS_TTL of frames it no longer reads
# (they expire in Redis). Every other event reads the members afresh: after it was
# queued, so events queued together (a send's two `message.created`) share one read.
MEMBERS_TTL = 5.0


class LocalSockets:
    """The sockets (and in-process listeners) of this process, and how an event reaches a group."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Deliver]] = {}
        self.channels: dict[str, Deliver] = {}
        self._members: dict[str, tuple[float, list[str]]] = {}  # group -> (read at, channels)

    def join(self, group: str, channel: str, deliver: Deliver) -> None:
        """A socket of this process (already in the layer's group) takes the group's events directly."""
        self.groups.setdefault(group, {})[channel] = deliver
        self.channels[channel] = deliver
        self._members.pop(group, None)

    def leave(self, group: str, channel: str) -> None:
        self._members.pop(group, None)
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self.groups[group]
        if not any(channel in members for members in self.groups.values()):
            self.channels.pop(channel, None)

    def forget_members(self, group: str) -> None:
        """Read the group's members afresh for the next event (someone joined elsewhere)."""
        self._members.pop(group, None)

    async def group_send(
        self, group: str, message: dict, *, stream: bool = False, queued_at: float | None = None
    ) -> None:
        """`layer.group_send`, but this process's members get the message without the layer.

        `stream` events (deltas, blocks) may use the members read within MEMBERS_TTL;
        an event queued at `queued_at` (time.monotonic) those read since then.
        """
        layer = get_channel_layer()
        local = dict(self.groups.get(group, {}))
        if not local:  # nobody here: the layer does it all
            await layer.group_send(group, message)
            return
        now = time.monotonic()
        read_since = now - MEMBERS_TTL if stream else (now if queued_at is None else queued_at)
        members = await self._group_members(layer, group, read_since=read_since)
        for deliver in local.values():
            await _deliver(deliver, message)
        for channel in members:
            if channel not in local:
                try:
                    await layer.send(channel, message)
                except Exception as exc:  # a full or vanished channel, as group_send would skip it
                    log.warning("group_member_send_failed", channel=channel, error=type(exc).__name__)

    async def send_to(self, channel: str, message: dict) -> None:
        """`layer.send` to one socket's channel, directly when the socket is in this process."""
        deliver = self.channels.get(channel)
        if deliver is not None:
            await _deliver(deliver, message)
        else:
            await get_channel_layer().send(channel, message)

    async def _group_members(self, layer, group: str, *, read_since: float) -> list[str]:
        """The group's members as read at `read_since` (time.monotonic) or later."""
        entry = self._members.get(group)
        if entry is not None and entry[0] >= read_since:
            return entry[1]
        read_at = time.monotonic()
        members = await layer.group_channels(group)
        if group in self.groups:
            self._members[group] = (read_at, members)
        return members


async def _deliver(deliver: Deliver, message: dict) -> None:
    try:
        await deliver(message)
    except Exception:  # one closing socket must not stop the others' events
        log.debug("local_delivery_failed", exc_info=True)
