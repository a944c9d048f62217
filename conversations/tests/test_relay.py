"""The relay's pump: deltas at most once per flush interval, the end sent at once, the
checkpoint clock ticking while the model is silent. Bounds hold on a busy machine:
load only makes gaps longer, and waits are on conditions."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.generation.relay import READ_LEAD, Relay, flush_interval
from conversations.llm.base import ChatMessage
from conversations.llm.openai_compatible import OpenAICompatibleProvider

pytestmark = pytest.mark.timeout(30)


class Frames:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, dict]] = []
        self.changed = asyncio.Event()

    async def publish(self, event_type: str, **payload) -> None:
        self.sent.append((asyncio.get_running_loop().time(), event_type, payload))
        self.changed.set()

    async def send_to(self, channel: str, message: dict) -> None:
        raise AssertionError("no sync asked")

    def deltas(self) -> list[tuple[float, dict]]:
        return [(at, payload) for at, kind, payload in self.sent if kind == "message.delta"]

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def relay_and_frames() -> tuple[Relay, Frames]:
    frames = Frames()
    return Relay("m1", publish=frames.publish, send_to=frames.send_to), frames


async def test_deltas_go_out_at_most_once_per_flush_interval_and_lose_nothing(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 40
    relay, frames = relay_and_frames()
    pump = asyncio.create_task(relay.pump(every=1.0, tick=lambda: None))
    tokens = [f"t{i} " for i in range(60)]
    for token in tokens:  # a token every 5 ms: about eight a flush
        relay.feed(token)
        await asyncio.sleep(0.005)
    relay.end()
    await pump

    deltas = frames.deltas()
    assert "".join(payload["text"] for _, payload in deltas) == "".join(tokens)
    assert [payload["offset"] for _, payload in deltas] == [
        sum(len(p["text"]) for _, p in deltas[:i]) for i in range(len(deltas))
    ]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(deltas[:-1])]  # the last is the end's, sooner
    assert all(gap >= 0.039 for gap in gaps), gaps
    assert len(deltas) < 60 / 4


async def test_while_text_keeps_coming_the_pump_sleeps_once_a_frame(settings):
    """Text that comes while the pump waits for its next frame does not wake it early."""
    settings.CHAT_FLUSH_INTERVAL_MS = 10
    loop = asyncio.get_running_loop()
    tokens = iter([f"t{i} " for i in range(1, 21)])
    frames = Frames()

    async def publish(event_type: str, **payload) -> None:
        await frames.publish(event_type, **payload)
        token = next(tokens, None)  # the next token comes once the pump has gone back to sleep
        loop.call_soon(relay.end) if token is None else loop.call_soon(relay.feed, token)

    relay = Relay("m1", publish=publish, send_to=frames.send_to)
    sleeps = []
    sleep = relay._sleep

    async def counted_sleep(*args, **kwargs) -> None:
        sleeps.append(kwargs["text_wakes"])
        await sleep(*args, **kwargs)

    relay._sleep = counted_sleep
    relay.feed("t0 ")
    await relay.pump(every=60.0, tick=lambda: None)

    deltas = frames.deltas()
    assert "".join(payload["text"] for _, payload in deltas) == "".join(f"t{i} " for i in range(21))
    assert len(deltas) == 21
    assert len(sleeps) <= len(deltas), sleeps  # a sleep woken by text and another to the frame: twice


async def test_the_end_is_sent_at_once_not_at_the_next_flush(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 60_000
    relay, frames = relay_and_frames()
    pump = asyncio.create_task(relay.pump(every=60.0, tick=lambda: None))
    relay.feed("first ")
    await frames.wait_for(lambda: len(frames.deltas()) == 1)  # the first flush is immediate
    relay.feed("last")  # now the pump rate-limits for a minute
    await asyncio.sleep(0)
    relay.end()

    async with asyncio.timeout(10):
        await pump
    assert [payload["text"] for _, payload in frames.deltas()] == ["first ", "last"]


async def test_new_text_wakes_an_idle_pump_and_the_clock_ticks_while_the_model_is_silent(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 0
    relay, frames = relay_and_frames()
    ticks = []
    pump = asyncio.create_task(relay.pump(every=0.02, tick=lambda: (ticks.append(1), frames.changed.set())))

    await frames.wait_for(lambda: len(ticks) >= 3)  # nothing streamed: the clock ticks alone
    relay.feed("hello")
    await frames.wait_for(lambda: len(frames.deltas()) == 1)
    relay.end()
    await pump

    assert frames.deltas()[0][1] == {"message_id": "m1", "offset": 0, "text": "hello"}


async def test_stopping_the_pump_leaves_no_timer_behind(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 40
    relay, _ = relay_and_frames()
    loop = asyncio.get_running_loop()
    timers = lambda: {handle for handle in loop._scheduled if not handle.cancelled()}  # noqa: E731
    before = timers()
    pump = asyncio.create_task(relay.pump(every=30.0, tick=lambda: None))
    await asyncio.sleep(0.01)
    pump.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pump
    assert timers() == before


def test_a_busy_process_lengthens_the_interval_to_keep_its_frame_budget(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 40
    settings.CHAT_FLUSH_FRAMES_PER_SECOND = 1000
    settings.CHAT_FLUSH_MAX_INTERVAL_MS = 100

    assert [flush_interval(n) for n in (0, 1, 40, 60, 100, 300)] == [0.04, 0.04, 0.04, 0.06, 0.1, 0.1]


async def test_a_read_rests_until_just_before_the_frame_after_the_one_it_feeds():
    frames = Frames()
    relay = Relay("m1", publish=frames.publish, send_to=frames.send_to, interval=lambda: 0.1)
    loop = asyncio.get_running_loop()

    # Nothing sent yet: what was just read goes out at once, the next read comes a frame later.
    assert relay.read_pause() == pytest.approx(0.1 - READ_LEAD)

    pump = asyncio.create_task(relay.pump(every=60.0, tick=lambda: None))
    relay.feed("a")
    await frames.wait_for(lambda: len(frames.deltas()) == 1)
    sent_at = frames.deltas()[0][0]
    before = loop.time()
    pause = relay.read_pause()
    # Read now, the text waits for the frame due at sent_at + 0.1; the next read comes just
    # before the frame after that one.
    if before < sent_at + 0.1:
        assert before + pause == pytest.approx(sent_at + 0.2 - READ_LEAD, abs=0.005)

    await asyncio.sleep(sent_at + 0.101 - loop.time())  # the next frame is due: what is read now goes out now
    assert relay.read_pause() == pytest.approx(0.1 - READ_LEAD)
    relay.end()
    await pump


async def test_a_reply_read_at_its_frames_pace_costs_a_read_a_frame_not_one_a_packet():
    # A token every 5 ms, a frame every 50 ms: read as it came, this reply took about one
    # read a token.
    async with ScriptedOpenAIServer(ttft_ms=1, tokens_per_second=200, tokens=60) as server:
        provider = OpenAICompatibleProvider(base_url=server.base_url, model="scripted-model", timeout=5)
        messages = [ChatMessage(role="user", content="paced")]
        frames = Frames()
        relay = Relay("m1", publish=frames.publish, send_to=frames.send_to, interval=lambda: 0.05)
        reads = []
        stream = provider.stream(messages)
        stream.gather = lambda: reads.append(1) or relay.read_pause()
        pump = asyncio.create_task(relay.pump(every=60.0, tick=lambda: None))
        async for text in stream:
            relay.feed(text)
        relay.end()
        await pump
        await provider.close()

    deltas = frames.deltas()
    assert "".join(payload["text"] for _, payload in deltas) == server.expected_reply(messages)
    assert len(deltas) < 60 / 2  # frames, not a delta a token
    assert len(reads) <= len(deltas) + 1  # the last read ends the reply and asks no rest


def test_a_maximum_below_the_interval_keeps_the_interval(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 200
    settings.CHAT_FLUSH_MAX_INTERVAL_MS = 100

    assert flush_interval(10_000) == 0.2


async def test_the_pump_asks_for_the_interval_at_every_frame(settings):
    relay_intervals = iter([0.0, 60.0])  # the first frame at once, then a minute
    frames = Frames()
    relay = Relay(
        "m1", publish=frames.publish, send_to=frames.send_to, interval=lambda: next(relay_intervals)
    )
    pump = asyncio.create_task(relay.pump(every=60.0, tick=lambda: None))
    relay.feed("a")
    await frames.wait_for(lambda: len(frames.deltas()) == 1)
    relay.feed("b")
    await asyncio.sleep(0.2)

    assert len(frames.deltas()) == 1  # held by the minute the second call gave
    relay.end()
    await pump
    assert [payload["text"] for _, payload in frames.deltas()] == ["a", "b"]
