"""The sidebar's history: pages without a cap, date groups, pins, and search with snippets."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from conversations import llm, views
from conversations.models import Conversation, Message
from conversations.search import conversation_search, highlight
from conversations.selectors import conversation_page, date_group
from conversations.services import SendRefused, check_can_generate, send_state
from conversations.tests import rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _configured_provider(monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: ["fake-model"])
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})


@pytest.fixture
def alice(client):
    user = rows.user("alice")
    client.force_login(user)
    return user


def aged(conversation: Conversation, **delta) -> Conversation:
    """Make `conversation` last active `delta` ago."""
    moment = timezone.now() - timedelta(**delta)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    conversation.refresh_from_db()
    return conversation


def titles(page) -> list[str]:
    return [c.title for group in page.groups for c in group.conversations]


def fragment_titles(response) -> list[str]:
    html = response.content.decode()
    return re.findall(r'class="conversation-item__title">([^<]*)<', html)


# --- pages and groups ---------------------------------------------------------------------


def test_every_conversation_is_reachable_page_by_page(alice, settings):
    settings.CHAT_SIDEBAR_PAGE = 7
    made = [aged(rows.conversation(alice, title=f"chat {i:03}"), minutes=i) for i in range(40)]
    seen, cursor = [], ""
    for _ in range(10):
        page = conversation_page(user=alice, cursor=cursor)
        seen.extend(titles(page))
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [c.title for c in made]


def test_pages_never_repeat_or_skip_when_times_tie(alice, settings):
    settings.CHAT_SIDEBAR_PAGE = 3
    moment = timezone.now()
    for i in range(8):
        rows.conversation(alice, title=f"tied {i}", updated_at=moment)
    seen, cursor = [], ""
    while True:
        page = conversation_page(user=alice, cursor=cursor)
        seen.extend(titles(page))
        if not (cursor := page.next_cursor):
            break
    assert sorted(seen) == [f"tied {i}" for i in range(8)]


def test_pinned_conversations_come_first_on_the_first_page_only(alice, settings):
    settings.CHAT_SIDEBAR_PAGE = 2
    old = aged(rows.conversation(alice, title="old but pinned"), days=400)
    old.set_pinned(True)
    for i in range(3):
        aged(rows.conversation(alice, title=f"recent {i}"), minutes=i)
    first = conversation_page(user=alice)
    assert first.groups[0].key == "pinned"
    assert [c.title for c in first.groups[0].conversations] == ["old but pinned"]
    second = conversation_page(user=alice, cursor=first.next_cursor)
    assert "old but pinned" not in titles(second)
    assert titles(first)[1:] + titles(second) == ["recent 0", "recent 1", "recent 2"]


def test_pinning_leaves_the_conversation_where_it_was_in_time(alice):
    conversation = aged(rows.conversation(alice), days=3)
    before = conversation.updated_at
    conversation.set_pinned(True)
    conversation.refresh_from_db()
    assert conversation.pinned and conversation.updated_at == before


def test_groups_are_today_yesterday_week_month_then_months():
    today = date(2026, 12, 1)

    def at(day: date) -> datetime:
        return timezone.make_aware(datetime(day.year, day.month, day.day, 12))

    assert date_group(at(today), today=today) == ("today", "Today")
    assert date_group(at(today - timedelta(days=1)), today=today) == ("yesterday", "Yesterday")
    assert date_group(at(today - timedelta(days=7)), today=today) == ("week", "Previous 7 days")
    assert date_group(at(today - timedelta(days=8)), today=today) == ("month", "Previous 30 days")
    assert date_group(at(today - timedelta(days=30)), today=today) == ("month", "Previous 30 days")
    assert date_group(at(date(2026, 9, 14)), today=today) == ("2026-09", "September 2026")


def test_a_page_is_grouped_in_order(alice):
    for title, delta in [
        ("now", {"minutes": 1}),
        ("y", {"days": 1}),
        ("w", {"days": 4}),
        ("m", {"days": 20}),
    ]:
        aged(rows.conversation(alice, title=title), **delta)
    aged(rows.conversation(alice, title="ancient"), days=400)
    page = conversation_page(user=alice)
    assert [g.label for g in page.groups][:4] == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days"]
    assert re.fullmatch(r"\w+ \d{4}", page.groups[4].label)


# --- the reader's time zone -----------------------------------------------------------------

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def straddling(zone: ZoneInfo) -> tuple[datetime, str, str]:
    """A moment of the last day that falls on a different day in `zone` than in UTC, now:
    (moment, its group key in `zone`, its group key in UTC). Whatever the time of day."""
    now = timezone.now()
    zone_midnight = datetime.combine(now.astimezone(zone).date(), time(), tzinfo=zone)
    utc_midnight = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    early, late = sorted([zone_midnight, utc_midnight])
    moment = early + (late - early) / 2  # after one midnight, before the other
    in_zone = "today" if moment >= zone_midnight else "yesterday"
    return moment, in_zone, "yesterday" if in_zone == "today" else "today"


def group_of(page, title: str) -> str:
    return next(g.key for g in page.groups for c in g.conversations if c.title == title)


@pytest.mark.parametrize("zone", [AUCKLAND, LOS_ANGELES], ids=str)
def test_groups_follow_the_readers_day_not_utcs(alice, zone):
    moment, in_zone, in_utc = straddling(zone)
    conversation = rows.conversation(alice, title="evening chat")
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    with timezone.override(zone):
        assert group_of(conversation_page(user=alice), "evening chat") == in_zone
    assert group_of(conversation_page(user=alice), "evening chat") == in_utc


def test_the_zone_cookie_groups_the_page_and_the_fragments_it_fetches(client, alice, settings):
    settings.CHAT_SIDEBAR_PAGE = 1
    moment, in_zone, in_utc = straddling(AUCKLAND)
    for title in ("older", "evening chat"):
        conversation = rows.conversation(alice, title=title)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
        moment += timedelta(seconds=1)
    client.cookies[settings.TIME_ZONE_COOKIE] = "Pacific/Auckland"
    html = client.get(reverse("conversation-new")).content.decode()
    assert 'data-time-zone="Pacific/Auckland"' in html
    assert f'data-group="{in_zone}"' in html and f'data-group="{in_utc}"' not in html
    # The next page of the sidebar, fetched as a fragment.
    next_url = re.search(r'data-next-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    fragment = client.get(next_url)
    assert fragment_titles(fragment) == ["older"]
    assert f'data-group="{in_zone}"' in fragment.content.decode()


@pytest.mark.parametrize("cookie", ["Mars/Olympus_Mons", "../../../etc/passwd", "UTC" * 40, ""])
def test_a_zone_cookie_that_names_no_zone_is_utc(client, alice, settings, cookie):
    moment, _, in_utc = straddling(AUCKLAND)
    conversation = rows.conversation(alice, title="evening chat")
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    client.cookies[settings.TIME_ZONE_COOKIE] = cookie
    html = client.get(reverse("conversation-list")).content.decode()
    assert f'data-group="{in_utc}"' in html


def test_the_daily_budget_still_renews_at_midnight_utc_whatever_the_readers_zone(alice, fake_llm):
    fake_llm.CHAT_DAILY_TOKEN_BUDGET = 100
    utc_midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows.usage(alice, at=utc_midnight - timedelta(minutes=1), prompt_tokens=1000)  # UTC's yesterday
    conversation = rows.conversation(alice)
    with timezone.override(AUCKLAND):
        check_can_generate(conversation=conversation, state=send_state(conversation))
        rows.usage(alice, at=utc_midnight + timedelta(minutes=1), prompt_tokens=1000)
        with pytest.raises(SendRefused, match="midnight UTC"):
            check_can_generate(conversation=conversation, state=send_state(conversation))


def test_a_cursor_we_did_not_make_is_refused():
    for cursor in ("nonsense", "2026-01-01T00:00:00|not-a-uuid", "2026-01-01T00:00:00|" + "0" * 32):
        with pytest.raises(ValueError):
            conversation_page(user=None, cursor=cursor)


def test_the_page_shows_the_first_page_and_a_link_to_the_next(client, alice, settings):
    settings.CHAT_SIDEBAR_PAGE = 5
    for i in range(12):
        aged(rows.conversation(alice, title=f"chat {i:02}"), minutes=i)
    here = Conversation.objects.get(title="chat 00")
    html = client.get(reverse("conversation", args=[here.id])).content.decode()
    assert "chat 04" in html and "chat 05" not in html
    next_url = re.search(r'data-next-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert next_url.startswith(reverse("conversation-list"))
    response = client.get(next_url)
    assert fragment_titles(response) == [f"chat {i:02}" for i in range(5, 10)]
    third = client.get(response["X-Next-Url"])
    assert fragment_titles(third) == ["chat 10", "chat 11"]
    assert third["X-Next-Url"] == ""


def test_the_fragment_marks_the_open_conversation(client, alice):
    here = rows.conversation(alice, title="here")
    rows.conversation(alice, title="there")
    html = client.get(reverse("conversation-list"), {"current": str(here.id)}).content.decode()
    assert re.search(rf'href="/c/{here.id}/"[^>]*aria-current="page"', html)


def test_the_fragment_lists_only_ones_own_conversations(client, alice):
    rows.conversation(rows.user("mallory"), title="Mallory's")
    rows.conversation(alice, title="Mine")
    assert fragment_titles(client.get(reverse("conversation-list"))) == ["Mine"]


def test_the_archive_lists_archived_conversations_only(client, alice):
    rows.conversation(alice, title="Kept", archived=True)
    rows.conversation(alice, title="Current")
    assert fragment_titles(client.get(reverse("conversation-list"), {"archived": "1"})) == ["Kept"]


def test_pin_and_unpin_from_the_sidebar(client, alice):
    conversation = rows.conversation(alice, title="Pin me")
    url = reverse("conversation-pin", args=[conversation.id])
    response = client.post(url, {"pinned": "true"}, HTTP_ACCEPT="application/json")
    assert response.json() == {"conversation": {"id": str(conversation.id), "pinned": True}}
    assert Conversation.objects.get(pk=conversation.pk).pinned
    html = client.get(reverse("conversation-list")).content.decode()
    assert 'id="group-pinned"' in html and "Unpin Pin me" in html
    client.post(url, {"pinned": "false"})
    assert not Conversation.objects.get(pk=conversation.pk).pinned


def test_pin_of_someone_elses_conversation_is_404(client, alice):
    theirs = rows.conversation(rows.user("mallory"))
    assert client.post(reverse("conversation-pin", args=[theirs.id]), {"pinned": "true"}).status_code == 404
    assert not Conversation.objects.get(pk=theirs.pk).pinned


# --- search ---------------------------------------------------------------------------------


def test_search_matches_titles_and_message_text(alice):
    rows.conversation(alice, title="Pasta recipes")
    by_content = rows.conversation(alice, title="Untitled thoughts")
    rows.exchange(by_content, "how long do I boil pasta?", "About ten minutes.")
    rows.conversation(alice, title="Taxes")
    hits, more = conversation_search(user=alice, query="pasta")
    assert {h.conversation.title for h in hits} == {"Pasta recipes", "Untitled thoughts"}
    assert not more


def test_search_matches_a_word_while_it_is_being_typed(alice):
    conversation = rows.conversation(alice, title="Cooking")
    rows.exchange(conversation, "what about spaghetti carbonara?", "Eggs, cheese, pepper.")
    hits, _ = conversation_search(user=alice, query="carbo")
    assert [h.conversation for h in hits] == [conversation]


def test_search_snippet_marks_the_match_and_escapes_the_rest(alice):
    conversation = rows.conversation(alice, title="Web")
    rows.exchange(conversation, "why does <script>alert(1)</script> break my pasta page?", "Escape it.")
    (hit,), _ = conversation_search(user=alice, query="pasta")
    assert "<mark>pasta</mark>" in hit.snippet_html
    assert "<script>" not in hit.snippet_html
    assert "&lt;script&gt;" in hit.snippet_html
    assert set(re.findall(r"</?(\w+)", hit.snippet_html)) == {"mark"}


def test_search_finds_a_reply_once_it_is_no_longer_being_written(alice):
    conversation = rows.conversation(alice, title="Geology")
    asked = rows.message(conversation, "tell me about rocks")
    reply = rows.message(
        conversation, "Basalt forms from lava.", role=Message.Role.ASSISTANT, parent=asked, status="streaming"
    )
    assert conversation_search(user=alice, query="basalt") == ([], False)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE)
    (hit,), _ = conversation_search(user=alice, query="basalt")
    assert hit.message_id == reply.id


def test_search_finds_text_in_a_hidden_branch_and_names_that_message(alice):
    conversation = rows.conversation(alice, title="Branches")
    asked, old = rows.exchange(conversation, "tell me about volcanoes", "Old answer about zebras.")
    # A regeneration: a new reply to the same question is now the current path.
    new = rows.message(conversation, "New answer about giraffes.", role=Message.Role.ASSISTANT, parent=asked)
    (hit,), _ = conversation_search(user=alice, query="zebras")
    assert (hit.conversation, hit.message_id) == (conversation, old.id)
    assert "<mark>zebras</mark>" in hit.snippet_html
    (hit,), _ = conversation_search(user=alice, query="giraffes")
    assert (hit.conversation, hit.message_id) == (conversation, new.id)


def test_search_costs_the_same_queries_however_many_conversations_match(alice, django_assert_max_num_queries):
    for i in range(8):
        conversation = rows.conversation(alice, title=f"Trip {i}")
        asked, _ = rows.exchange(conversation, f"packing list {i}", "Take a compass.")
        rows.message(conversation, "Take a map.", role=Message.Role.ASSISTANT, parent=asked)
    # Titles, messages, their conversations, the snippets' text.
    with django_assert_max_num_queries(4):
        hits, _ = conversation_search(user=alice, query="compass")
    assert len(hits) == 8


def test_search_never_finds_another_users_words(alice):
    theirs = rows.conversation(rows.user("mallory"), title="secret pasta")
    rows.exchange(theirs, "pasta secret", "pasta")
    assert conversation_search(user=alice, query="pasta") == ([], False)


def test_search_ranks_a_title_hit_above_a_passing_mention(alice):
    mention = rows.conversation(alice, title="Groceries")
    rows.exchange(mention, "milk, bread, and some volcano cake", "Noted.")
    titled = aged(rows.conversation(alice, title="Volcano trip"), days=30)
    hits, _ = conversation_search(user=alice, query="volcano")
    assert [h.conversation for h in hits] == [titled, mention]


def test_search_pages_through_many_hits(alice):
    for i in range(7):
        rows.conversation(alice, title=f"pasta night {i}")
    first, more = conversation_search(user=alice, query="pasta", limit=5)
    rest, more_after = conversation_search(user=alice, query="pasta", offset=5, limit=5)
    assert len(first) == 5 and more
    assert len(rest) == 2 and not more_after
    assert {h.conversation.pk for h in first}.isdisjoint({h.conversation.pk for h in rest})


def test_search_of_punctuation_only_finds_nothing(alice):
    rows.conversation(alice, title="!!!")
    assert conversation_search(user=alice, query="&|!:*()") == ([], False)


def test_titles_are_highlighted_and_escaped():
    assert highlight("<b>Pasta</b> & pastry", ["past"]) == (
        "&lt;b&gt;<mark>Pasta</mark>&lt;/b&gt; &amp; <mark>pastry</mark>"
    )


def test_search_fragment_shows_results_with_snippets(client, alice):
    conversation = rows.conversation(alice, title="Dinner")
    rows.exchange(conversation, "how long should I boil the pasta?", "Ten minutes.")
    response = client.get(reverse("conversation-list"), {"q": "pasta"})
    html = response.content.decode()
    assert 'id="group-results"' in html
    assert "<mark>pasta</mark>" in html
    reply = conversation.messages.get(role=Message.Role.USER)
    assert f'href="/c/{conversation.id}/?q=pasta&amp;m={reply.id}"' in html


def test_a_title_only_hit_links_to_the_conversation(client, alice):
    conversation = rows.conversation(alice, title="Pasta plans")
    html = client.get(reverse("conversation-list"), {"q": "pasta"}).content.decode()
    assert f'href="/c/{conversation.id}/?q=pasta"' in html


def test_search_fragment_says_when_nothing_matches(client, alice):
    rows.conversation(alice, title="Dinner")
    html = client.get(reverse("conversation-list"), {"q": "zebra"}).content.decode()
    assert "Nothing matches “zebra”" in html


@pytest.mark.skipif(connection.vendor != "postgresql", reason="GIN indexes exist on PostgreSQL only")
def test_message_search_can_use_the_gin_index(alice):
    from django.db import connection as conn

    from conversations.search import _tsquery, message_matches

    query = message_matches(user=alice, tsquery=_tsquery(["pasta"]), archived=False)
    with conn.cursor() as cursor:
        # On an all but empty table the planner's choice follows its statistics of the moment:
        # with the whole table's scan and a plain index scan (message_time, in the default
        # order, filtering every row) priced out, it uses the search index if it can.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        # Nor one conversation's messages at a time (the search joins the owner's conversations).
        cursor.execute("SET LOCAL enable_nestloop = off")
        plan = query.explain()
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_content_search'")
        (definition,) = cursor.fetchone()
    assert "message_content_search" in plan
    # Partial (migration 0008): a streaming reply's checkpoints do not index its text.
    assert definition.endswith("WHERE ((status)::text <> 'streaming'::text)")
