"""The channel layers this project names in CHANNEL_LAYERS: channels' own, plus one public method.

The runtime hands a conversation's events to this process's sockets directly
and sends through the layer only to the group's members on other processes
(see conversations/generation/sockets.py). For that it must know a group's
members, which channels' layers keep private: these subclasses expose them
as `group_channels`, so no app code reaches into a layer's internals and a
channels upgrade breaks, at most, these few lines, which tests cover.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer


class ChatRedisChannelLayer(RedisChannelLayer):
    async def group_channels(self, group: str) -> list[str]:
        """The group's live channels, as `group_send` would find them (one ZRANGEBYSCORE)."""
        self.require_valid_group_name(group)
        connection = self.connection(self.consistent_hash(group))
        names = await connection.zrangebyscore(
            self._group_key(group), min=int(time.time()) - self.group_expiry, max="+inf"
        )
        return [name.decode() for name in names]


class ChatInMemoryChannelLayer(InMemoryChannelLayer):
    async def group_channels(self, group: str) -> list[str]:
        self.require_valid_group_name(group)
        self._clean_expired()
        return list(self.groups.get(group, {}))
