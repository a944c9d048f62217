"""The admin's usage page: aggregate queries over the UsageEvent ledger and their SVG charts.

Everything is computed by the database (TruncDate, values, annotate) over a
fixed window and drawn on the server as inline SVG using presentation
attributes only: the site's CSP allows no script and no inline style.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Avg, Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from conversations.feedback import feedback_totals
from conversations.models import UsageEvent

WINDOW_DAYS = 30
TOP_USERS = 10
# Beyond this many models a chart stops being readable; the rest share one colour.
MAX_CHART_SERIES = 7
OTHER_MODELS = "other models"
UNNAMED_MODEL = "(default model)"
# Colour-blind-safe palette (Okabe-Ito), then grey for "other models".
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
OTHER_COLOUR = "#999999"


@dataclass
class DailySeries:
    """Per-day values of one measure, split by model, over consecutive days."""

    days: list[dt.date]
    by_model: dict[str, list[int]] = field(default_factory=dict)

    def totals(self) -> list[int]:
        return [sum(values[i] for values in self.by_model.values()) for i in range(len(self.days))]


def window_start(today: dt.date | None = None, days: int = WINDOW_DAYS) -> dt.datetime:
    """Midnight (current time zone) at the start of the window that ends today."""
    today = today or timezone.localdate()
    first_day = today - dt.timedelta(days=days - 1)
    return timezone.make_aware(dt.datetime.combine(first_day, dt.time.min))


def _tokens() -> F:
    return F("prompt_tokens") + F("completion_tokens")


def daily_usage_by_model(*, since: dt.datetime, days: int = WINDOW_DAYS) -> tuple[DailySeries, DailySeries]:
    """Tokens and calls per day and model, every day of the window present (zero when idle)."""
    rows = (
        UsageEvent.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(tokens=Sum(_tokens()), calls=Count("id"))
        .order_by()
    )
    first_day = timezone.localtime(since).date()
    day_list = [first_day + dt.timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(day_list)}
    tokens: dict[str, list[int]] = {}
    calls: dict[str, list[int]] = {}
    for row in rows:
        i = index.get(row["day"])
        if i is None:  # an event stamped in the future (clock skew) is not drawn
            continue
        model = row["model"] or UNNAMED_MODEL
        tokens.setdefault(model, [0] * days)[i] += row["tokens"] or 0
        calls.setdefault(model, [0] * days)[i] += row["calls"]
    # Both charts share one ranking (by tokens) so a model keeps its colour in both.
    ranked = sorted(tokens, key=lambda name: (-sum(tokens[name]), -sum(calls[name]), name))
    return DailySeries(day_list, _fold(tokens, ranked)), DailySeries(day_list, _fold(calls, ranked))


def _fold(values: dict[str, list[int]], ranked: list[str]) -> dict[str, list[int]]:
    if len(ranked) <= MAX_CHART_SERIES:
        return {name: values[name] for name in ranked}
    kept = {name: values[name] for name in ranked[: MAX_CHART_SERIES - 1]}
    rest = [values[name] for name in ranked[MAX_CHART_SERIES - 1 :]]
    kept[OTHER_MODELS] = [sum(column) for column in zip(*rest, strict=True)]
    return kept


def top_users(*, since: dt.datetime, limit: int = TOP_USERS) -> list[dict]:
    """The users who spent the most tokens in the window, with their call counts."""
    return list(
        UsageEvent.objects.filter(created_at__gte=since)
        .values("user_id", "user__username")
        .annotate(tokens=Sum(_tokens()), calls=Count("id"), avg_ttft_ms=Avg("ttft_ms"))
        .order_by("-tokens", "user__username")[:limit]
    )


def usage_by_source(*, since: dt.datetime) -> list[dict]:
    """Tokens and calls in the window from the chat and from the HTTP API (per key name)."""
    return list(
        UsageEvent.objects.filter(created_at__gte=since)
        .values("source", "api_key_name")
        .annotate(tokens=Sum(_tokens()), calls=Count("id"), users=Count("user", distinct=True))
        .order_by("source", "-tokens", "api_key_name")
    )


def failure_rates(*, since: dt.datetime) -> tuple[list[dict], list[dict]]:
    """Failure rate per provider, and the share of each provider's calls per error code.

    Cancelled calls are the user's choice, not a failure: they count as calls only.
    """
    providers = list(
        UsageEvent.objects.filter(created_at__gte=since)
        .values("provider")
        .annotate(calls=Count("id"), failed=Count("id", filter=Q(status=UsageEvent.Status.FAILED)))
        .order_by("provider")
    )
    calls_by_provider = {row["provider"]: row["calls"] for row in providers}
    for row in providers:
        row["rate"] = row["failed"] / row["calls"] if row["calls"] else 0.0
        row["rate_percent"] = row["rate"] * 100
    codes = list(
        UsageEvent.objects.filter(created_at__gte=since, status=UsageEvent.Status.FAILED)
        .values("provider", "error_code")
        .annotate(failed=Count("id"))
        .order_by("provider", "-failed", "error_code")
    )
    for row in codes:
        row["calls"] = calls_by_provider.get(row["provider"], 0)
        row["rate"] = row["failed"] / row["calls"] if row["calls"] else 0.0
        row["rate_percent"] = row["rate"] * 100
    return providers, codes


# --- SVG -------------------------------------------------------------------
CHART_WIDTH = 760
CHART_HEIGHT = 240
MARGIN_LEFT = 64
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 36


def _nice_ceiling(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above value, so gridlines land on round numbers."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _short_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def series_colours(names: list[str]) -> dict[str, str]:
    return {
        name: OTHER_COLOUR if name == OTHER_MODELS else PALETTE[i % len(PALETTE)]
        for i, name in enumerate(names)
    }


def stacked_bar_chart(series: DailySeries, *, title: str, unit: str) -> SafeString:
    """A stacked bar per day, one colour per model, as standalone SVG markup.

    Only numbers and escaped text go into the markup, hence mark_safe. Each
    bar segment carries a <title> so hovering shows its exact figure.
    """
    days = series.days
    totals = series.totals()
    top = _nice_ceiling(max(totals, default=0))
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1)
    colours = series_colours(list(series.by_model))

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h - value / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" role="img" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # horizontal gridlines and their labels
        value = top * i / 4
        gy = y(value)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" y1="{gy:.1f}" x2="{CHART_WIDTH - MARGIN_RIGHT}" y2="{gy:.1f}" '
            f'stroke="#dddddd" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#666666">{escape(_short_number(value))}</text>'
        )
    for d, day in enumerate(days):
        x = MARGIN_LEFT + d * slot + (slot - bar_w) / 2
        base = 0
        for name, values in series.by_model.items():
            value = values[d]
            if not value:
                continue
            y_top, y_bottom = y(base + value), y(base)
            label = f"{day.isoformat()} · {name}: {value:,} {unit}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" '
                f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{colours[name]}">'
                f"<title>{escape(label)}</title></rect>"
            )
            base += value
        if d % 5 == 0 or d == len(days) - 1:  # a date label every five days keeps them legible
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{CHART_HEIGHT - MARGIN_BOTTOM + 16}" '
                f'text-anchor="middle" font-size="11" fill="#666666">{day.strftime("%b %d")}</text>'
            )
    parts.append(
        f'<line x1="{MARGIN_LEFT}" y1="{y(0):.1f}" x2="{CHART_WIDTH - MARGIN_RIGHT}" y2="{y(0):.1f}" '
        f'stroke="#666666" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # built from numbers and escaped text only


def legend(series: DailySeries) -> list[dict]:
    colours = series_colours(list(series.by_model))
    return [{"name": name, "colour": colours[name], "total": sum(v)} for name, v in series.by_model.items()]


def swatch(colour: str) -> SafeString:
    """A small colour square for the legend (SVG, since the CSP forbids style attributes)."""
    return mark_safe(  # the colour comes from PALETTE, never from data
        f'<svg class="usage-swatch" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">'
        f'<rect width="12" height="12" fill="{escape(colour)}"/></svg>'
    )


def usage_context(today: dt.date | None = None) -> dict:
    """Every figure of the usage page, for the template and for tests."""
    since = window_start(today)
    tokens, calls = daily_usage_by_model(since=since)
    providers, codes = failure_rates(since=since)
    token_legend = legend(tokens)
    for item in token_legend:
        item["swatch"] = swatch(item["colour"])
    daily_rows = [
        {"day": day, "tokens": t, "calls": c}
        for day, t, c in zip(tokens.days, tokens.totals(), calls.totals(), strict=True)
    ]
    return {
        "since": since,
        "window_days": WINDOW_DAYS,
        "tokens_chart": stacked_bar_chart(tokens, title="Tokens per day by model", unit="tokens"),
        "calls_chart": stacked_bar_chart(calls, title="Calls per day by model", unit="calls"),
        "legend": token_legend,
        "daily_rows": daily_rows,
        "total_tokens": sum(row["tokens"] for row in daily_rows),
        "total_calls": sum(row["calls"] for row in daily_rows),
        "top_users": top_users(since=since),
        "by_source": usage_by_source(since=since),
        "providers": providers,
        "error_codes": codes,
        "feedback": feedback_totals(since=since),
    }


def usage_view(request: HttpRequest) -> HttpResponse:
    """/admin/usage/: behind admin_site.admin_view (staff only), and it shows
    everyone's usage, so it also takes the right to view usage events."""
    if not request.user.has_perm("conversations.view_usageevent"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": f"Usage, last {WINDOW_DAYS} days",
        **usage_context(),
    }
    return TemplateResponse(request, "admin/conversations/usage.html", context)
