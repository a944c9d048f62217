"""The generation runtime: one object per server process that owns the replies it streams.

Built once with the ASGI application (chatplatform/asgi.py), started on the
process's event loop by the first event of any kind (or the ASGI lifespan
startup), and shut down with the process. It owns:

- `replies`: this process's running replies, by message id;
- `sockets`: this process's sockets and in-process listeners (fan-out);
- `outbox`: events queued after commit, sent in order by the loop;
- `checkpoints`: the batch that writes every reply's partial text together;
- a control channel on the channel layer (recorded on each reply it starts as
  `Message.worker`) where stop and sync requests from other processes arrive;
- the crash sweep, which marks replies of dead processes `interrupted`.

Its interface is keyed by message id: `start`, `stop`, `sync`. Callers (the
WebSocket consumer, the HTTP API) write rows through services and name the
reply; the runtime reads what it needs itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import structlog
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chatplatform import loopdb, memory
from chatplatform.serve import running_event_loop
from conversations import events, services
from conversations.generation import liveness
from conversations.generation.checkpoints import CheckpointBatch
from conversations.generation.hops import parallel_hop
from conversations.generation.job import ReplyJob, load_job
from conversations.generation.outbox import Outbox
from conversations.generation.reply import Reply
from conversations.generation.sockets import LocalSockets
from conversations.llm import get_provider, provider_built
from conversations.llm.base import GenerationOptions
from conversations.models import Message
from documents.selectors import sources_of

log = structlog.get_logger(__name__)


class NotAccepting(Exception):
    """The process is shutting down: it starts no new reply."""


def stored_with_job(service, **fields):
    """Run a service that starts a reply (its own transaction) and, once it has
    committed, read the new reply's job: one database hop for both (see
    `Runtime.start`). Returns (ReplyStart, ReplyJob or None for a resend)."""
    start = service(**fields)
    job = load_job(start.reply.id) if start.created and start.reply is not None else None
    return start, job


class Runtime:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.accepting = False
        self._starting: asyncio.Future | None = None

    # --- lifecycle -----------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start on the running loop (once). A new loop is a new life: tests run one per test."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self._bind(loop)
        await asyncio.shield(self._starting)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.accepting = True
        self.replies: dict[str, Reply] = {}
        self.sockets = LocalSockets()
        self.outbox = Outbox(self.sockets, loop)
        self.checkpoints = CheckpointBatch(window=min(0.25, settings.CHAT_CHECKPOINT_SECONDS / 4))
        self.channel = ""
        self._acks: dict[str, asyncio.Future] = {}
        self._starting = loop.create_future()
        self._tasks = [loop.create_task(self._start(), name="runtime-start")]

    async def _start(self) -> None:
        try:
            await self._start_tasks()
        except BaseException as exc:
            self.loop = None  # the next caller tries again
            self._starting.set_exception(exc)
            raise
        self._starting.set_result(None)
        log.info("runtime_started", channel=self.channel, event_loop=running_event_loop())

    async def _start_tasks(self) -> None:
        self.outbox.start()
        # The default "specific." prefix matters: channels-redis reads every
        # process-local channel through one shared receive loop per prefix.
        self.channel = await get_channel_layer().new_channel()
        self._tasks += [
            self.loop.create_task(self._listen(), name="runtime-control"),
            self.loop.create_task(self._sweep(), name="runtime-sweep"),
            self.loop.create_task(self._warm_up(), name="runtime-warm-up"),
            self.loop.create_task(memory.trim_every(settings.CHAT_MALLOC_TRIM_SECONDS), name="runtime-trim"),
        ]
        _on_server_shutdown(self)

    async def shutdown(self, grace: float | None = None) -> None:
        """Refuse new replies, let running ones finish within `grace` seconds, then
        stop the rest as `interrupted` (their text kept), and release the model."""
        if self.loop is None or not self.accepting:
            return
        self.accepting = False
        grace = settings.CHAT_SHUTDOWN_GRACE_SECONDS if grace is None else grace
        running = [reply.task for reply in self.replies.values() if reply.task is not None]
        log.info("runtime_draining", replies=len(running), grace_seconds=grace)
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for reply in list(self.replies.values()):
                reply.stop("shutdown")
            if pending:
                await asyncio.wait(pending, timeout=settings.CHAT_STALE_AFTER_SECONDS)
        for task in self._tasks:
            task.cancel()
        await self.outbox.close()
        loopdb.close_all()
        provider = get_provider()
        if provider is not None:
            await provider.close()
        log.info("runtime_stopped")

    # --- replies ---------------------------------------------------------------

    async def start(
        self,
        message_id: uuid.UUID | str,
        *,
        options: GenerationOptions | None = None,
        job: ReplyJob | None = None,
    ) -> None:
        """Stream the `streaming` reply `message_id` (written by a service) from this process.

        `job`: the reply's job as `load_job` read it after the service's commit,
        in the caller's own database hop (the socket's send does: one thread
        hop fewer, and under a burst each reply starts as its send is stored
        instead of queueing behind every other send). Otherwise it is read here.
        """
        await self.ensure_started()
        if job is None:
            job = await parallel_hop(load_job)(uuid.UUID(str(message_id)), options)
        if job is None:  # finished or deleted meanwhile
            return
        # Built once per process: then no thread hop (a burst's starts queued on the one sync thread).
        provider = get_provider() if provider_built() else await sync_to_async(get_provider)()
        reply = Reply(job, provider, self)
        self.replies[reply.message_id] = reply
        reply.start().add_done_callback(lambda _: self.replies.pop(reply.message_id, None))

    async def stop(self, message_id: uuid.UUID | str) -> None:
        """Stop a reply wherever it runs; when its process is gone, mark it `interrupted` now."""
        message_id = str(message_id)
        local = self.replies.get(message_id)
        if local is not None:
            local.stop()
            return
        row = await database_sync_to_async(
            Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).values("worker").first
        )()
        if row is None:
            return  # nothing running: stopping twice is not an error
        owner = row["worker"]
        if (
            owner
            and owner != self.channel
            and await self._ask(owner, "generation.stop", message_id=message_id)
        ):
            return
        # No process owns it (it died, or never started it): keep its last checkpoint.
        message = await database_sync_to_async(services.reply_interrupt)(message_id=message_id, worker=owner)
        if message is not None:
            log.warning("reply_interrupted_on_stop", message_id=message_id, owner=owner)
            await self.publish_final(message)

    async def sync(
        self,
        message_id: uuid.UUID | str,
        offset: int,
        reply_channel: str,
        *,
        conversation_id: uuid.UUID | str,
    ) -> bool:
        """Send `reply_channel` what it misses of a reply from `offset` on, wherever the reply
        runs. False when the conversation has no such message."""
        message_id = str(message_id)
        local = self.replies.get(message_id)
        if local is not None and str(local.job.conversation_id) == str(conversation_id):
            await self._answer_sync(local, reply_channel, offset)
            return True
        message = await database_sync_to_async(
            Message.objects.filter(pk=message_id, conversation_id=conversation_id).first
        )()
        if message is None:
            return False
        if message.status == Message.Status.STREAMING and message.worker and message.worker != self.channel:
            request = {
                "type": "generation.sync",
                "message_id": message_id,
                "offset": offset,
                "reply": reply_channel,
            }
            await get_channel_layer().send(message.worker, request)
        elif message.is_final:  # finished: the final state answers everything the client missed
            sources = await database_sync_to_async(sources_of)(message_id=message.id)
            event_type, payload = events.reply_final(message, sources=sources)
            await self.sockets.send_to(reply_channel, events.envelope(event_type, **payload))
        return True

    # --- events ----------------------------------------------------------------

    def post(self, group: str, message: dict) -> None:
        """Queue an event for a group from any thread (after a commit); the loop sends it.
        A process whose runtime never started (a management command) sends it now."""
        if self.loop is None:
            async_to_sync(get_channel_layer().group_send)(group, message)
        else:
            self.outbox.put(group, message)

    async def publish(self, group: str, message: dict, *, stream: bool = False) -> None:
        await self.sockets.group_send(group, message, stream=stream)

    async def publish_final(self, message: Message) -> None:
        event_type, payload = events.reply_final(message)
        await self.publish(events.group_name(message.conversation_id), events.envelope(event_type, **payload))

    @contextlib.asynccontextmanager
    async def listen(self, conversation_id: uuid.UUID | str) -> AsyncIterator[AsyncIterator[dict]]:
        """In-process listener of a conversation's events (decoded frames), e.g. for the HTTP API."""
        await self.ensure_started()
        queue: asyncio.Queue[dict] = asyncio.Queue()
        group, channel = events.group_name(conversation_id), f"listener.{uuid.uuid4().hex}"

        async def deliver(message: dict) -> None:
            if message.get("type") == events.EVENT:
                queue.put_nowait(message)

        async def frames() -> AsyncIterator[dict]:
            import json

            while True:
                yield json.loads((await queue.get())["frame"])

        self.sockets.join(group, channel, deliver)
        try:
            yield frames()
        finally:
            self.sockets.leave(group, channel)

    # --- the control channel: requests from other processes --------------------

    async def _ask(self, owner: str, request_type: str, **fields) -> bool:
        """Send a request to the process `owner`; True when it answers that it has the reply."""
        request_id = uuid.uuid4().hex
        answer = self.loop.create_future()
        self._acks[request_id] = answer
        try:
            request = {"type": request_type, "request_id": request_id, "reply_to": self.channel, **fields}
            await get_channel_layer().send(owner, request)
            async with asyncio.timeout(settings.CHAT_STOP_ACK_SECONDS):
                return await answer
        except TimeoutError:
            return False
        finally:
            self._acks.pop(request_id, None)

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
                    "runtime_receive_failed", error=repr(exc), attempt=failures, exc_info=failures == 1
                )
                await asyncio.sleep(min(5.0, 0.5 * failures))
                continue
            try:
                await self._handle(request, layer)
            except Exception:  # one bad request must not end the listener
                log.warning("runtime_request_failed", request_type=request.get("type"), exc_info=True)

    async def _handle(self, request: dict, layer) -> None:
        kind = request.get("type")
        if kind == "generation.ack":
            answer = self._acks.get(request.get("request_id", ""))
            if answer is not None and not answer.done():
                answer.set_result(bool(request.get("known")))
            return
        reply = self.replies.get(request.get("message_id", ""))
        if kind == "generation.stop":
            if reply is not None:
                reply.stop()
            await layer.send(
                request["reply_to"],
                {"type": "generation.ack", "request_id": request["request_id"], "known": reply is not None},
            )
        elif kind == "generation.sync" and reply is not None:
            await self._answer_sync(reply, request["reply"], int(request["offset"]))

    async def _answer_sync(self, reply: Reply, channel: str, offset: int) -> None:
        """A running reply's missing text, or, once it is written, its final state
        (the reply stays here a moment after, for its title)."""
        if reply.final_event is not None:
            await self.sockets.send_to(channel, reply.final_event)
            return
        self.sockets.forget_members(reply.group)  # the asker may be new
        await reply.relay.answer_sync(channel, offset)

    # --- background --------------------------------------------------------------

    async def _warm_up(self) -> None:
        """Load the local model now rather than on the first person's reply."""
        try:
            provider = await sync_to_async(get_provider)()
            if provider is not None:
                await provider.warm_up()
        except Exception:  # a provider that cannot start says so on /health/deps and per reply
            log.warning("provider_warm_up_failed", exc_info=True)

    async def _sweep(self) -> None:
        """Now (start-up) and every CHAT_SWEEP_SECONDS: replies whose process died become `interrupted`."""
        while True:
            try:
                # Off the database's thread: a process busy with database work still says it is alive.
                await sync_to_async(liveness.announce, thread_sensitive=False)(self.channel)
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a while; try again later
                log.warning("sweep_failed", exc_info=True)
            await asyncio.sleep(settings.CHAT_SWEEP_SECONDS)

    async def sweep_once(self) -> list[Message]:
        """Mark replies of dead processes `interrupted` and tell their tabs."""
        swept = await database_sync_to_async(services.replies_interrupt_stale)(alive=liveness.alive)
        for message in swept:
            await self.publish_final(message)
        if swept:
            log.warning("replies_interrupted", count=len(swept), message_ids=[str(m.id) for m in swept])
        return swept


def _on_server_shutdown(runtime: Runtime) -> None:
    """Under daphne (Twisted), drain before the reactor stops: SIGTERM stops the
    reactor, which waits for the Deferreds of its "before shutdown" triggers.
    Servers that speak the ASGI lifespan protocol call `shutdown` from there."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import defer, reactor

    if not reactor.running:
        return
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(runtime.shutdown()))
    )
