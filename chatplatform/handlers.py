"""One object of a Django connection handler's (`connections`, `caches`) for the whole process.

`connections[alias]` and `caches[alias]` are lookups in asgiref's `Local`: the
object is per thread and per asyncio context, and the first lookup in a
context makes one. Code on the hot path that needs an object only for what
does not depend on its thread (a database's vendor, quoting and value
adaptation; a cache whose client is the process's anyway) asks `ProcessWide`
instead: made once with the handler's own `create_connection`, made again
when the handler's setting (DATABASES, CACHES) changes (docs/perf.md,
changes 64-65).
"""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.utils.connection import BaseConnectionHandler


class ProcessWide:
    def __init__(self, handler: BaseConnectionHandler) -> None:
        self.handler = handler
        self._made: dict[str, Any] = {}
        setting_changed.connect(self._forget, weak=False)

    def __getitem__(self, alias: str) -> Any:
        made = self._made.get(alias)
        if made is None:  # racing threads at most make two equivalent objects
            made = self._made[alias] = self.handler.create_connection(alias)
        return made

    def _forget(self, *, setting: str, **kwargs) -> None:
        if setting == self.handler.settings_name:
            self._made.clear()
