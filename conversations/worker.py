"""This process's share of the generation work: its running replies and its control channel.

Each server process owns the replies it generates. It listens on one
channel-layer channel of its own (recorded on every reply it starts as
`Message.worker`) for `generation.stop` and `generation.sync` requests, which
may come from a socket on any process, and it sweeps replies left
`streaming` by processes that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import structlog
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from conversations import services
from conversations.llm import get_provider
from conversations.pipeline import Generation, ReplyJob

log = structlog.get_logger(__name__)


class Worker:
    def __init__(self) -> None:
        self.channel = ""
        self.generations: dict[str, Generation] = {}
        self._tasks: list[asyncio.Task] = []
        self._ready: asyncio.Future | None = None

    async def ensure_started(self) -> str:
        """Create the control channel and start listening and sweeping (once)."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            layer = get_channel_layer()
            # The default "specific." prefix matters: channels-redis reads every
            # process-local channel through one shared receive loop per prefix.
            self.channel = await layer.new_channel()
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._listen()),
                loop.create_task(self._sweep()),
                loop.create_task(self._warm_up()),
            ]
            self._ready.set_result(self.channel)
            log.info("worker_started", channel=self.channel)
        return await asyncio.shield(self._ready)

    def start(self, job: ReplyJob) -> Generation:
        provider = get_provider()
        generation = Generation(job, provider)
        self.generations[generation.message_id] = generation
        task = generation.start()
        task.add_done_callback(lambda _: self.generations.pop(generation.message_id, None))
        return generation

    async def stop(self, *, message_id: str, worker: str) -> None:
        """Stop a reply wherever it runs."""
        local = self.generations.get(message_id)
        if local is not None:
            local.stop()
        elif worker:
            await get_channel_layer().send(worker, {"type": "generation.stop", "message_id": message_id})

    async def sync(self, *, message_id: str, worker: str, offset: int, reply_channel: str) -> None:
        local = self.generations.get(message_id)
        if local is not None:
            await local.send_sync(reply_channel, offset)
        elif worker:
            await get_channel_layer().send(
                worker,
                {
                    "type": "generation.sync",
                    "message_id": message_id,
                    "offset": offset,
                    "reply": reply_channel,
                },
            )

    async def _listen(self) -> None:
        layer = get_channel_layer()
        failures = 0
        while True:
            try:
                request = await layer.receive(self.channel)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: keep listening once it is back
                failures += 1
                # One traceback per outage, then a line per retry, backing off to 5 s.
                log.warning(
                    "worker_receive_failed", error=repr(exc), attempt=failures, exc_info=failures == 1
                )
                await asyncio.sleep(min(5.0, 0.5 * failures))
                continue
            generation = self.generations.get(request.get("message_id", ""))
            if generation is None:
                continue
            if request["type"] == "generation.stop":
                generation.stop()
            elif request["type"] == "generation.sync":
                with contextlib.suppress(Exception):
                    await generation.send_sync(request["reply"], int(request["offset"]))

    async def _warm_up(self) -> None:
        """Load the local model now rather than on the first person's reply."""
        try:
            provider = await sync_to_async(get_provider)()
            if provider is not None:
                await provider.warm_up()
        except Exception:  # a provider that cannot start says so on /health/deps and per reply
            log.warning("provider_warm_up_failed", exc_info=True)

    async def _sweep(self) -> None:
        """Now (start-up) and periodically: replies whose process died become `interrupted`."""
        interval = max(1.0, settings.CHAT_STALE_AFTER_SECONDS / 2)
        while True:
            try:
                swept = await database_sync_to_async(services.replies_interrupt_stale)()
                if swept:
                    log.warning(
                        "replies_interrupted", count=len(swept), message_ids=[str(m.id) for m in swept]
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a while; try again later
                log.warning("sweep_failed", exc_info=True)
            await asyncio.sleep(interval)


# One worker per event loop: a server process has one loop; tests get a fresh
# loop (and so a fresh worker) per test.
_workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Worker] = weakref.WeakKeyDictionary()


def get_worker() -> Worker:
    loop = asyncio.get_running_loop()
    worker = _workers.get(loop)
    if worker is None:
        worker = _workers[loop] = Worker()
    return worker
