"""The admin usage page: its figures against rows the test made, its chart, and who may see it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.admin_usage import (
    MAX_CHART_SERIES,
    OTHER_MODELS,
    WINDOW_DAYS,
    daily_usage_by_model,
    window_start,
)
from conversations.tests import rows

pytestmark = pytest.mark.django_db

USAGE = reverse("admin:usage")


@pytest.fixture
def admin_client(client):
    return rows.superuser_client(client)


def days_ago(days: int, hour: int = 12):
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days) + timedelta(hours=hour)


@pytest.fixture
def ledger():
    """Three users' calls over the window, plus one call just before it."""
    alice, bob, carol = rows.user("alice"), rows.user("bob"), rows.user("carol")
    rows.usage(
        alice, at=days_ago(0), model="gpt-4o-mini", prompt_tokens=100, completion_tokens=50, ttft_ms=200
    )
    rows.usage(
        alice, at=days_ago(0), model="smollm2", provider="llamacpp", prompt_tokens=10, completion_tokens=5
    )
    rows.usage(
        bob, at=days_ago(1), model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=500, ttft_ms=400
    )
    rows.usage(
        bob, at=days_ago(1), status="failed", error_code="timeout", prompt_tokens=0, completion_tokens=0
    )
    rows.usage(bob, at=days_ago(2), status="failed", error_code="rate_limited")
    rows.usage(
        carol,
        at=days_ago(WINDOW_DAYS - 1),
        provider="llamacpp",
        model="smollm2",
        status="cancelled",
        completion_tokens=7,
    )
    rows.usage(carol, at=days_ago(WINDOW_DAYS), prompt_tokens=999_999)  # the day before the window
    return alice, bob, carol


def test_usage_page_is_linked_from_the_admin_index(admin_client):
    assert f'href="{USAGE}"' in admin_client.get(reverse("admin:index")).content.decode()


def test_usage_page_is_for_staff_only(client):
    response = client.get(USAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_usage_permission_is_refused(client):
    client.force_login(rows.user("helper", is_staff=True))
    assert client.get(USAGE).status_code == 403


def test_totals_cover_the_window_and_nothing_before_it(admin_client, ledger):
    context = admin_client.get(USAGE).context
    assert (context["total_calls"], context["total_tokens"]) == (6, 100 + 50 + 15 + 1500 + 7)


def test_days_hold_each_days_tokens_and_calls(admin_client, ledger):
    daily = {
        row["day"]: (row["tokens"], row["calls"]) for row in admin_client.get(USAGE).context["daily_rows"]
    }
    assert len(daily) == WINDOW_DAYS
    assert daily[days_ago(0).date()] == (165, 2)
    assert daily[days_ago(1).date()] == (1500, 2)
    assert daily[days_ago(2).date()] == (0, 1)
    assert daily[days_ago(3).date()] == (0, 0)
    assert daily[days_ago(WINDOW_DAYS - 1).date()] == (7, 1)


def test_chart_series_split_tokens_by_model(ledger):
    tokens, calls = daily_usage_by_model(since=window_start())
    today = tokens.days.index(days_ago(0).date())
    assert tokens.by_model["gpt-4o-mini"][today] == 150
    assert tokens.by_model["smollm2"][today] == 15
    assert calls.by_model["gpt-4o-mini"][today + 0] == 1


def test_top_users_are_ranked_by_tokens(admin_client, ledger):
    top = admin_client.get(USAGE).context["top_users"]
    assert [(u["user__username"], u["tokens"], u["calls"]) for u in top] == [
        ("bob", 1500, 3),
        ("alice", 165, 2),
        ("carol", 7, 1),
    ]
    assert top[0]["avg_ttft_ms"] == 400


def test_failure_rate_by_provider_counts_failures_not_cancellations(admin_client, ledger):
    providers = {
        p["provider"]: (p["calls"], p["failed"]) for p in admin_client.get(USAGE).context["providers"]
    }
    assert providers == {"openai": (4, 2), "llamacpp": (2, 0)}


def test_failures_are_broken_down_by_error_code(admin_client, ledger):
    codes = admin_client.get(USAGE).context["error_codes"]
    assert [(c["provider"], c["error_code"], c["failed"], c["rate"]) for c in codes] == [
        ("openai", "rate_limited", 1, 0.25),
        ("openai", "timeout", 1, 0.25),
    ]


def test_page_shows_the_figures(admin_client, ledger):
    text = admin_client.get(USAGE).content.decode()
    assert "<strong>1,672</strong> tokens" in text
    assert "50.0 %" in text  # openai's failure rate
    assert "bob" in text


def test_chart_is_inline_svg_without_script_or_inline_style(admin_client, ledger):
    text = admin_client.get(USAGE).content.decode()
    assert text.count("<svg xmlns") >= 2
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)  # the admin's own scripts are files
    assert "style=" not in text
    assert "<style" not in text


def test_chart_bars_carry_their_exact_figures(admin_client, ledger):
    text = admin_client.get(USAGE).content.decode()
    assert f"<title>{days_ago(1).date().isoformat()} · gpt-4o-mini: 1,500 tokens</title>" in text


def test_model_names_are_escaped_in_the_chart(admin_client):
    rows.usage(rows.user(), model='<img src=x onerror="alert(1)">', prompt_tokens=5)
    text = admin_client.get(USAGE).content.decode()
    assert "<img src=x" not in text
    assert "&lt;img src=x" in text


def test_many_models_are_folded_into_other(db):
    user = rows.user()
    for i in range(MAX_CHART_SERIES + 3):
        rows.usage(user, model=f"model-{i:02d}", prompt_tokens=100 - i)
    tokens, _ = daily_usage_by_model(since=window_start())
    assert len(tokens.by_model) == MAX_CHART_SERIES
    assert sum(tokens.by_model[OTHER_MODELS]) == sum(
        100 - i for i in range(MAX_CHART_SERIES - 1, MAX_CHART_SERIES + 3)
    )


def test_empty_ledger_renders_an_empty_page(admin_client):
    response = admin_client.get(USAGE)
    assert response.status_code == 200
    assert "No usage in this period." in response.content.decode()
