"""The benchmark's short form (what CI runs) and the short soak, end to end, plus their arithmetic.

The short form starts its own scripted provider and daphne on loopback, on a
database of its own derived from DATABASE_URL, streams N=20 replies directly
and through the app, and fails on any lost or inexact reply (never on timings).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import client as bc
from bench.run import failed_points, server_label, top_entries
from bench.soak import memory_verdict

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, args: list[str], postgres_url: str, redis_url: str, timeout: float):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "CHAT_", "LLM_", "DB_"))}
    env.update(DATABASE_URL=postgres_url, REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_short_benchmark_streams_every_reply_exactly(postgres_url, redis_url, tmp_path):
    done = run_module("bench.run", ["--short", "--output", str(tmp_path)], postgres_url, redis_url, 280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "short.json").read_text())
    (point,) = result["sweep"]
    assert (point["n"], point["replies"]) == (20, 40)
    assert point["app"]["lost"] == point["app"]["inexact"] == 0
    assert point["direct"]["lost_or_inexact"] == 0
    assert point["app"]["deltas_per_reply"] > 1  # streamed, not one block
    # Where first-token time goes, over the replies whose first-token time is measured.
    assert point["ttft_breakdown_ms"]["before_provider"]["n"] == point["measured_replies"] == 20
    assert point["db"]["rows_written_per_reply"] is not None
    assert (tmp_path / "short.png").stat().st_size > 0
    assert "| 20 |" in done.stdout


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_short_soak_loses_nothing(postgres_url, redis_url, tmp_path):
    args = ["--sockets", "50", "--minutes", "0.5", "--output", str(tmp_path)]
    done = run_module("bench.soak", args, postgres_url, redis_url, 280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["complete"] > 50
    assert result["lost"] == result["inexact"] == 0
    assert len(result["series"]) >= 6


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_the_sends_benchmark_stores_a_burst_both_ways(postgres_url, redis_url):
    done = run_module("bench.sends", ["--sends", "5", "--rounds", "2"], postgres_url, redis_url, 280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = {line.split(":")[0].strip(): line for line in done.stdout.splitlines() if ":" in line}
    assert set(lines) >= {"hop", "loop"}, done.stdout
    for line in (lines["hop"], lines["loop"]):
        assert re.search(r"wall ms \[\d+\], median \d+; CPU a send ms \[[\d.]+\]", line), line


# --- the arithmetic, without services -------------------------------------------


def test_the_bench_database_is_derived_from_database_url():
    derive = bc.bench_database_url
    assert (
        derive({"DATABASE_URL": "postgres://u:p@db:5432/chatplatform"})
        == "postgres://u:p@db:5432/chatplatform_bench"
    )
    assert derive({"DATABASE_URL": "postgres://u:p@db:5432/bench"}) == "postgres://u:p@db:5432/bench"
    assert (
        derive({"DATABASE_URL": "postgres://u@h/x", "BENCH_DATABASE_URL": "postgres://o/y"})
        == "postgres://o/y"
    )
    assert derive({}) == bc.DEFAULT_DATABASE_URL


def test_percentiles_interpolate():
    assert bc.percentile([1, 2, 3, 4], 50) == 2.5
    assert bc.percentile([5], 99) == 5
    assert bc.percentile([], 50) is None
    assert bc.percentile([0, 10], 90) == 9.0


def test_results_name_the_server_and_its_event_loop():
    assert server_label({"server": "daphne", "event_loop": "uvloop"}) == "daphne (uvloop)"
    assert server_label({"server": "daphne", "event_loop": "asyncio"}) == "daphne (asyncio)"
    assert server_label({"server": "daphne"}) == "daphne"  # a result from before round ten


def test_a_run_fails_on_lost_or_inexact_replies_not_on_timings():
    def point(n, lost=0, inexact=0, direct=0, ttft=10_000.0):
        return {
            "n": n,
            "mode": "steady",
            "app": {"lost": lost, "inexact": inexact},
            "direct": {"lost_or_inexact": direct},
            "added_ttft_ms": {"p99": ttft},
        }

    assert failed_points({"sweep": [point(20)], "burst": []}) == []  # slow is not failed
    assert failed_points({"sweep": [point(20, lost=1), point(30, inexact=2), point(40, direct=1)]}) == [
        "steady N=20",
        "steady N=30",
        "steady N=40",
    ]


def test_memory_that_stops_growing_levels_off_and_memory_that_keeps_growing_does_not():
    flat = [{"t": t * 5.0, "rss_mb": 120 + min(t, 3)} for t in range(24)]
    leak = [{"t": t * 5.0, "rss_mb": 120 + 3 * t} for t in range(24)]
    assert memory_verdict(flat)["verdict"] == "levels off"
    assert memory_verdict(leak)["verdict"] == "grows"


def test_profile_entries_from_collapsed_stacks(tmp_path):
    stacks = tmp_path / "profile.txt"
    stacks.write_text(
        "run (asyncio/base_events.py:1);group_send (conversations/events.py:10) 3\n"
        "run (asyncio/base_events.py:1);_connect_gen (psycopg/_connection_base.py:5) 1\n"
    )
    top = top_entries(stacks)
    assert top["samples"] == 4
    assert top["self"][0] == ("group_send (conversations/events.py)", 75.0)
    assert dict(top["areas"])["PostgreSQL: connecting (no persistent connections)"] == 25.0
