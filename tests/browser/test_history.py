"""The history a person meets in the sidebar: every conversation reachable, date groups,
pins, and live search with snippets, in Chromium against the live server."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    composer,
    last_reply,
    live_orm,
    new_chat,
    open_new_chat,
    open_tab,
    screenshot,
    send,
    sign_up,
    wait_connected,
    wait_reply_done,
)

# Rows are made with the ORM in a `manage.py shell` on the live server's database:
# the same models and defaults as the app, whatever columns other work adds.
SEED_150 = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from conversations.models import Conversation
owner = get_user_model().objects.get(username={username!r})
now = timezone.now()
# Spread over time so every date group shows: a few minutes apart today, then days back.
ages = [timedelta(minutes=i) for i in range(5)] + [timedelta(days=1, minutes=i) for i in range(5)]
ages += [timedelta(days=3 + i % 4, minutes=i) for i in range(20)]
ages += [timedelta(days=10 + i % 20, minutes=i) for i in range(40)]
ages += [timedelta(days=40 + i, minutes=i) for i in range(80)]
Conversation.objects.bulk_create(
    Conversation(owner=owner, title=f"History {{i:03}}", created_at=now - age, updated_at=now - age)
    for i, age in enumerate(ages)
)
"""

SEED_SEARCH = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from conversations.models import Conversation, Message
owner = get_user_model().objects.get(username={username!r})
now = timezone.now()
def chat(title, *turns):
    c = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for i, (role, text) in enumerate(turns):
        parent = Message.objects.create(conversation=c, role=role, content=text, parent=parent,
                                        created_at=now + timedelta(seconds=i))
    return c
chat("Weeknight dinners", ("user", "How long should I boil fresh tagliatelle for dinner?"),
     ("assistant", "Fresh tagliatelle needs two to three minutes in salted boiling water."))
chat("Tax questions", ("user", "Which receipts do I keep?"), ("assistant", "Keep them for five years."))
"""


def new_person(browser, live, problems, viewport=DESKTOP, scheme="light"):
    """A fresh account (so its history holds only what the test makes), signed in."""
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = problems.watch(context.new_page())
    username = f"history-{uuid.uuid4().hex[:8]}"
    sign_up(page, live.url, username)
    return context, page, username


def scroll_sidebar_to_the_end(page) -> None:
    """Scroll the list as a person would until no "Show more" is left."""
    more = page.locator("#sidebar-more")
    for _ in range(20):
        if more.is_hidden():
            return
        page.locator("#sidebar-list").evaluate("(nav) => nav.scrollTo(0, nav.scrollHeight)")
        page.wait_for_function(
            "(n) => document.querySelectorAll('#conversation-list .conversation-item').length > n"
            " || document.getElementById('sidebar-more').hidden",
            arg=page.locator("#conversation-list .conversation-item").count(),
        )
    raise AssertionError("the sidebar kept offering more pages")


@pytest.mark.timeout(300)  # 150 rows made through the ORM, then three pages scrolled
def test_all_150_conversations_are_reachable_from_the_sidebar_grouped_by_date(browser, live, problems):
    context, page, username = new_person(browser, live, problems)
    live_orm(SEED_150.format(username=username))
    page.reload()
    items = page.locator("#conversation-list .conversation-item")
    expect(items.first).to_be_visible()
    assert items.count() < 150  # the first page is a page, not everything
    scroll_sidebar_to_the_end(page)
    titles = page.locator("#conversation-list .conversation-item__title").all_inner_texts()
    history = [t for t in titles if t.startswith("History ")]
    assert sorted(history) == [f"History {i:03}" for i in range(150)]
    assert len(history) == len(set(history))
    headings = [h.strip() for h in page.locator("#conversation-list .sidebar__title").all_text_contents()]
    assert headings[:4] == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days"]
    assert all(re.fullmatch(r"[A-Z][a-z]+ \d{4}", h) for h in headings[4:]), headings
    assert len(headings) == len(set(headings))  # a group continued on the next page is not repeated
    # The last one can be opened.
    page.get_by_role("link", name="History 149").click()
    expect(page.locator("#conversation-title")).to_have_text("History 149")
    context.close()
    assert not problems.errors and not problems.dialogs


def test_pin_puts_a_conversation_first_and_unpin_returns_it(browser, live, problems):
    context, page, username = new_person(browser, live, problems)
    live_orm(SEED_150.format(username=username))
    page.reload()
    old = page.locator(".conversation-item", has_text="History 020")
    old.hover()
    old.get_by_role("button", name="Pin History 020").click()
    pinned = page.locator('section[data-group="pinned"]')
    expect(pinned.get_by_role("heading", name="Pinned")).to_be_visible()
    expect(pinned.locator(".conversation-item__title")).to_have_text(["History 020"])
    assert page.locator("#conversation-list .sidebar__title").first.text_content() == "Pinned"
    # It stays pinned across a reload (stored on the server).
    page.reload()
    expect(page.locator('section[data-group="pinned"] .conversation-item__title')).to_have_text(
        ["History 020"]
    )
    page.get_by_role("button", name="Unpin History 020").click()
    expect(page.locator('section[data-group="pinned"]')).to_have_count(0)
    expect(page.locator(".conversation-item__title", has_text="History 020")).to_have_count(1)
    context.close()
    assert not problems.errors and not problems.dialogs


def test_live_search_shows_highlighted_snippets_without_reloading(browser, live, problems):
    context, page, username = new_person(browser, live, problems)
    live_orm(SEED_SEARCH.format(username=username))
    page.reload()
    page.evaluate("window.notReloaded = true")
    search = page.get_by_label("Search conversations")
    search.press_sequentially("taglia")  # part of a word: results come while typing
    hit = page.locator('section[data-group="results"] .conversation-item').first
    expect(hit.locator(".conversation-item__title")).to_have_text("Weeknight dinners")
    expect(hit.locator(".conversation-item__snippet mark").first).to_have_text(
        re.compile("tagliatelle", re.I)
    )
    expect(page.locator(".conversation-item", has_text="Tax questions")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(".conversation-item__snippet script").count() == 0
    screenshot(page, "history-search-desktop-light")
    # Nothing found says so; clearing the box brings the whole list back.
    search.fill("zebra")
    expect(page.locator(".conversation-list__empty")).to_have_text("Nothing matches “zebra”.")
    search.fill("")
    expect(page.locator(".conversation-item", has_text="Tax questions")).to_have_count(1)
    search.press_sequentially("boil")
    page.locator('section[data-group="results"] .conversation-item__link').first.click()
    expect(page.locator("#conversation-title")).to_have_text("Weeknight dinners")
    expect(page.locator(".message--assistant .message__body")).to_contain_text("salted boiling water")
    context.close()
    assert not problems.errors and not problems.dialogs


def test_a_search_hit_in_an_older_version_opens_that_version_and_stays_after_a_reload(
    page, context, problems, live
):
    word = f"quokka{uuid.uuid4().hex[:8]}"  # only the old branch has it
    url = new_chat(page, live.url)
    send(page, f"[[echo]]tell me about the {word}")
    wait_reply_done(page)
    question = page.locator(".message--user").first
    question.get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("[[echo]]tell me about the wombat")
    page.get_by_role("button", name="Save and send").click()
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("tell me about the wombat")
    expect(question.locator(".versions__count")).to_have_text("2 / 2")
    other = open_tab(context, problems, url)

    page.get_by_label("Search conversations").press_sequentially(word)
    hit = page.locator('section[data-group="results"] .conversation-item__link')
    expect(hit).to_have_count(1)
    expect(hit.locator(".conversation-item__snippet mark")).to_have_text(word)
    hit.click()

    old_texts = [f"[[echo]]tell me about the {word}"]
    expect(page.locator(".message--user .message__body")).to_have_text(old_texts)
    expect(last_reply(page).locator(".message__body")).to_have_text(f"tell me about the {word}")
    expect(page.locator(".message--user").first.locator(".versions__count")).to_have_text("1 / 2")
    expect(page.locator(".message--hit")).to_have_count(1)
    expect(page.locator(".message--hit")).to_be_in_viewport()
    # Remembered on the server: the address stops naming the hit, and a reload and the
    # other tab show the same version.
    expect(page).to_have_url(re.compile(r".*/c/[0-9a-f-]{36}/\?q=" + word + "$"))
    expect(other.locator(".message--user .message__body")).to_have_text(old_texts)
    screenshot(page, "history-search-hit-in-older-version-desktop-light")
    page.reload()
    wait_connected(page)
    expect(page.locator(".message--user .message__body")).to_have_text(old_texts)
    expect(page.locator(".message--user").first.locator(".versions__count")).to_have_text("1 / 2")


def test_the_sidebar_groups_by_the_browsers_day_in_auckland(browser, live, problems):
    zone = ZoneInfo("Pacific/Auckland")
    # A moment on a different day in Auckland than in UTC, whatever the time now: between
    # the two midnights of the current day (in Auckland "Today" while UTC says
    # "Yesterday", or the other way round after UTC's noon or so).
    now = datetime.now(UTC)
    zone_midnight = datetime.combine(now.astimezone(zone).date(), time(), tzinfo=zone)
    utc_midnight = datetime.combine(now.date(), time(), tzinfo=UTC)
    early, late = sorted([zone_midnight, utc_midnight])
    moment = early + (late - early) / 2
    in_zone, in_utc = ("today", "yesterday") if moment >= zone_midnight else ("yesterday", "today")

    context = browser.new_context(viewport=DESKTOP, timezone_id="Pacific/Auckland")
    page = problems.watch(context.new_page())
    username = f"zone-{uuid.uuid4().hex[:8]}"
    sign_up(page, live.url, username)
    live_orm(
        "from datetime import datetime\n"
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation\n"
        f"owner = get_user_model().objects.get(username={username!r})\n"
        f"at = datetime.fromisoformat({moment.isoformat()!r})\n"
        "Conversation.objects.create(owner=owner, title='Evening in Auckland', created_at=at, updated_at=at)\n"
    )

    def listed_under(group: str):
        return page.locator(
            f'section[data-group="{group}"] .conversation-item', has_text="Evening in Auckland"
        )

    # A first visit: the page comes grouped by UTC's day, the script names the zone
    # and the list is fetched again, grouped by Auckland's.
    context.clear_cookies(name="tz")
    page.goto(f"{live.url}/c/new/")
    expect(listed_under(in_zone)).to_have_count(1)
    expect(page.locator(f'section[data-group="{in_utc}"]')).to_have_count(0)
    # From then on the server groups by it from the start.
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-time-zone", "Pacific/Auckland")
    expect(listed_under(in_zone)).to_have_count(1)
    screenshot(page, "history-time-zone-auckland-desktop-light")
    context.close()
    assert not problems.errors and not problems.dialogs


def test_screenshots_of_the_history_sidebar(browser, live, problems):
    """Desktop 1366 and 390 px, light and dark: artifacts/screenshots/history-*.png."""
    context, page, username = new_person(browser, live, problems)
    live_orm(SEED_150.format(username=username) + SEED_SEARCH.format(username=username))
    page.reload()
    page.locator(".conversation-item", has_text="History 002").hover()
    page.get_by_role("button", name="Pin History 002").click()
    expect(page.locator('section[data-group="pinned"]')).to_have_count(1)
    state = context.storage_state()
    context.close()
    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", {"width": 1366, "height": 800}), ("phone", PHONE)):
            shot = browser.new_context(viewport=viewport, storage_state=state, color_scheme=scheme)
            view = problems.watch(shot.new_page())
            view.goto(f"{live.url}/")
            if name == "phone":
                view.get_by_role("button", name="Show conversations").click()
                expect(view.locator("#sidebar")).to_be_in_viewport()
                view.wait_for_function(
                    "() => getComputedStyle(document.getElementById('sidebar')).transform === 'none'"
                )
            expect(view.locator('section[data-group="pinned"]')).to_be_visible()
            screenshot(view, f"history-sidebar-{name}-{scheme}")
            view.get_by_label("Search conversations").press_sequentially("tagliatelle")
            expect(view.locator(".conversation-item__snippet mark").first).to_be_visible()
            screenshot(view, f"history-search-{name}-{scheme}")
            shot.close()
    assert not problems.errors and not problems.dialogs


def conversations_of(username: str) -> int:
    return int(
        live_orm(
            "from conversations.models import Conversation\n"
            f"print(Conversation.objects.filter(owner__username={username!r}).count())\n"
        )
    )


def test_three_new_chat_clicks_store_nothing_and_the_first_message_creates_the_chat(browser, live, problems):
    context, page, username = new_person(browser, live, problems)
    for _ in range(3):
        open_new_chat(page, live.url)
    assert conversations_of(username) == 0
    expect(page.locator("#conversation-list .conversation-item")).to_have_count(0)
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()

    # A reply of a few seconds, as a model's would be: the conversation page opens while it is written.
    send(page, "[[tokens:60]][[slow:40]]Plan a picnic for Saturday")
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    wait_connected(page)
    expect(page.locator(".message--user .message__body")).to_have_text(
        "[[tokens:60]][[slow:40]]Plan a picnic for Saturday"
    )
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=20_000)
    assert len(last_reply(page).locator(".message__body").inner_text().split()) >= 30
    assert conversations_of(username) == 1
    # It is titled (by the model, else from its first words) and listed under Today, open.
    expect(page.locator("#conversation-title")).not_to_have_text("New conversation")
    today = page.locator('section[data-group="today"]')
    expect(today.locator("[aria-current=page]")).to_have_count(1)
    context.close()
    assert not problems.errors and not problems.dialogs


def test_a_refused_first_message_stays_in_the_box_and_stores_nothing(browser, live, problems):
    problems.allow(r"status of 400")  # the refusal itself, as the browser logs every 4xx
    context, page, username = new_person(browser, live, problems)
    open_new_chat(page, live.url)
    # A lone surrogate cannot be stored: the server refuses it with a reason.
    composer(page).evaluate("(box) => { box.value = 'broken \\ud800 text'; }")
    composer(page).press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("cannot be stored")
    expect(page).to_have_url(re.compile(r"/c/new/\??$"))
    assert conversations_of(username) == 0
    context.close()
    assert not problems.errors and not problems.dialogs


def test_screenshots_of_the_new_chat_page(browser, account, live, problems):
    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", {"width": 1366, "height": 800}), ("phone", PHONE)):
            shot = browser.new_context(viewport=viewport, storage_state=str(account), color_scheme=scheme)
            view = problems.watch(shot.new_page())
            view.goto(f"{live.url}/c/new/")
            expect(composer(view)).to_be_focused()
            screenshot(view, f"new-chat-{name}-{scheme}")
            shot.close()
    assert not problems.errors and not problems.dialogs
