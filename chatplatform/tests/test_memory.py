"""Giving the allocator's free memory back (chatplatform/memory.py)."""

import asyncio
import subprocess
import sys
import textwrap

import pytest

from chatplatform import memory

# Text made in threads and mostly freed, a little of it kept so that the freed
# chunks sit between live ones and malloc cannot give their pages back by itself.
_FRAGMENT_AND_TRIM = textwrap.dedent(
    """
    import threading
    from chatplatform import memory

    def rss_mb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    kept = []

    def work():
        texts = [("x" * 1000) + str(i) for i in range(40_000)]
        kept.append(texts[::50])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    before = rss_mb()
    released = memory.trim()
    print(before, rss_mb(), released)
    """
)


@pytest.mark.skipif(not memory.available(), reason="the C library has no malloc_trim (not glibc)")
def test_trim_gives_the_free_pages_of_every_threads_arena_back():
    result = subprocess.run(
        [sys.executable, "-c", _FRAGMENT_AND_TRIM], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, released = result.stdout.split()
    # ~160 MB of text was made, a fiftieth of it kept: most of it goes back.
    assert released == "True"
    assert float(before) - float(after) > 60, result.stdout


async def test_trim_every_trims_until_cancelled(monkeypatch):
    calls = 0
    enough, loop = asyncio.Event(), asyncio.get_running_loop()

    def counted() -> bool:  # runs in a thread of its own
        nonlocal calls
        calls += 1
        if calls == 3:
            loop.call_soon_threadsafe(enough.set)
        return True

    monkeypatch.setattr(memory, "available", lambda: True)  # the schedule, on any C library
    monkeypatch.setattr(memory, "trim", counted)
    task = asyncio.create_task(memory.trim_every(0.01))
    await asyncio.wait_for(enough.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_trim_every_zero_seconds_never_trims(monkeypatch):
    monkeypatch.setattr(memory, "trim", lambda: pytest.fail("trimmed although turned off"))
    await asyncio.wait_for(memory.trim_every(0), timeout=1)
