"""Time-ordered primary keys (chatplatform/ids.py)."""

import threading
import time
import uuid

from chatplatform.ids import uuid7, uuid7_time


def test_a_uuid7_is_version_7_of_rfc_9562():
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid.UUID(str(value)) == value


def test_a_uuid7_carries_the_time_it_was_made():
    before = time.time()
    value = uuid7()
    after = time.time()
    # Milliseconds, truncated: up to 1 ms before `before`.
    assert before - 0.001 <= uuid7_time(value) <= after


def test_uuid7s_sort_in_the_order_they_were_made_within_a_millisecond_and_across():
    values = [uuid7() for _ in range(5000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert [str(v) for v in values] == sorted(str(v) for v in values)  # as PostgreSQL compares them
    assert all(v.version == 7 and v.variant == uuid.RFC_4122 for v in values)
    times = [uuid7_time(v) for v in values]
    assert len(set(times)) < len(values)  # some shared a millisecond: the counter ordered them


def test_uuid7s_made_by_threads_at_once_are_distinct_and_each_threads_own_in_order():
    made: dict[int, list[uuid.UUID]] = {}

    def make(index: int) -> None:
        made[index] = [uuid7() for _ in range(2000)]

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [v for values in made.values() for v in values]
    assert len(set(every)) == len(every) == 8000
    assert all(values == sorted(values) for values in made.values())


def test_a_new_millisecond_starts_the_counter_at_random():
    firsts = []
    for _ in range(40):
        previous = uuid7()
        first = uuid7()
        while uuid7_time(first) == uuid7_time(previous):  # until one in the next millisecond
            first = uuid7()
        firsts.append(first)
    counters = {(v.int >> 32) & 0x3FFF_FFFF for v in firsts}  # the counter's low 30 bits
    assert len(counters) == len(firsts)
