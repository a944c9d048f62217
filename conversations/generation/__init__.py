"""The per-process generation runtime (runtime.py) and its parts, one job each:

- job.py: what a reply needs, read from the database;
- reply.py: one reply streamed from the provider and finished;
- relay.py: coalesced deltas and finished markdown blocks to the tabs;
- checkpoints.py: every reply's partial text written together;
- final.py: the final row, its UsageEvent, the title, metrics;
- sockets.py: this process's sockets and the fan-out of an event;
- outbox.py: events after commit, sent in order (per group) by the event loop;
- hops.py: database hops that may run beside each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversations.generation.runtime import Runtime

_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime (made on first use; chatplatform/asgi.py makes it at import)."""
    global _runtime
    if _runtime is None:
        from conversations.generation.runtime import Runtime

        _runtime = Runtime()
    return _runtime
