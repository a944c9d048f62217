"""Inside a conversation (issue 13, part B): versions, continue, the composer, per-message
actions, the header, the connection and accessibility, as a person meets them in Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.axe import violations
from tests.browser.conftest import (
    DESKTOP,
    PASSWORD,
    PHONE,
    composer,
    expire_the_form,
    last_reply,
    new_chat,
    open_tab,
    replies,
    screenshot,
    send,
    wait_reply_done,
)
from tests.browser.live_urls import SERVER_ERROR_PATH
from tests.servers import ROOT

MAX_CHARS = 32_000  # CHAT_MAX_MESSAGE_CHARS on the live server (the default)


def new_phone_chat(page: Page, base_url: str) -> str:
    """A new conversation opened at phone width (New chat lives in the drawer there)."""
    page.set_viewport_size(DESKTOP)
    url = new_chat(page, base_url)
    page.set_viewport_size(PHONE)
    return url


def wait_until(page: Page, expression: str, timeout_ms: int = 10_000) -> None:
    """Wait for a condition in the page. (wait_for_function evaluates a string,
    which the page's CSP forbids; evaluate() goes through DevTools.)"""
    deadline = page.evaluate("Date.now()") + timeout_ms
    while not page.evaluate(expression):
        assert page.evaluate("Date.now()") < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def user_texts(page: Page):
    return page.locator("#messages .message--user .message__body")


def reply_ids(page: Page) -> list[str]:
    return replies(page).evaluate_all("els => els.map(e => e.dataset.messageId)")


# --- versions ---------------------------------------------------------------------------


def test_regenerate_an_earlier_reply_then_previous_version_shows_the_old_continuation(
    page, context, problems, live
):
    url = new_chat(page, live.url)
    send(page, "[[tokens:6]]first question")
    wait_reply_done(page)
    send(page, "[[echo]]the old continuation")
    expect(replies(page)).to_have_count(2)
    wait_reply_done(page)
    first_reply = replies(page).first.get_attribute("data-message-id")
    other = open_tab(context, problems, url)

    replies(page).first.get_by_role("button", name="Regenerate").click()
    expect(replies(page)).to_have_count(1)
    expect(last_reply(page)).not_to_have_attribute("data-message-id", first_reply)
    reply = wait_reply_done(page)
    expect(reply.locator(".versions__count")).to_have_text("2 / 2")
    expect(user_texts(page)).to_have_text(["[[tokens:6]]first question"])

    reply.get_by_role("button", name="Previous version").click()
    expect(replies(page)).to_have_count(2)
    expect(replies(page).first).to_have_attribute("data-message-id", first_reply)
    expect(replies(page).first.locator(".versions__count")).to_have_text("1 / 2")
    expect(last_reply(page).locator(".message__body")).to_have_text("the old continuation")
    expect(replies(page).first.get_by_role("button", name="Previous version")).to_be_disabled()

    # Another tab and a reload agree: the choice is the server's.
    expect(last_reply(other).locator(".message__body")).to_have_text("the old continuation")
    page.reload()
    expect(last_reply(page).locator(".message__body")).to_have_text("the old continuation")

    # The next message continues the shown branch.
    send(page, "[[echo]]after switching back")
    expect(replies(page)).to_have_count(3)
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("after switching back")
    page.reload()
    expect(user_texts(page)).to_have_text(
        ["[[tokens:6]]first question", "[[echo]]the old continuation", "[[echo]]after switching back"]
    )

    replies(page).first.get_by_role("button", name="Next version").click()
    expect(replies(page)).to_have_count(1)
    expect(replies(page).first.locator(".versions__count")).to_have_text("2 / 2")


def test_an_edited_message_switches_back_to_its_original_version(page, live):
    new_chat(page, live.url)
    send(page, "[[echo]]original words")
    wait_reply_done(page)
    page.locator(".message--user").first.get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("[[echo]]edited words")
    page.get_by_role("button", name="Save and send").click()
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("edited words")
    question = page.locator(".message--user").first
    expect(question.locator(".versions__count")).to_have_text("2 / 2")
    question.get_by_role("button", name="Previous version").click()
    expect(user_texts(page)).to_have_text(["[[echo]]original words"])
    expect(last_reply(page).locator(".message__body")).to_have_text("original words")


# --- continue ---------------------------------------------------------------------------


def test_a_length_stopped_reply_shows_continue_and_continues_in_place(page, browser, account, live, problems):
    url = new_chat(page, live.url)
    send(page, "[[tokens:600]]tell me a very long story")  # over LLM_MAX_OUTPUT_TOKENS (512)
    reply = wait_reply_done(page)
    reply_id = reply.get_attribute("data-message-id")
    notice = reply.locator("[data-notice=length]")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("stopped at the length limit")
    before = reply.locator(".message__body").inner_text().split()

    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            shot = browser.new_context(viewport=viewport, storage_state=str(account), color_scheme=scheme)
            view = problems.watch(shot.new_page())
            view.goto(url)
            expect(last_reply(view).get_by_role("button", name="Continue")).to_be_visible()
            screenshot(view, f"inside-chat-continue-{name}-{scheme}")
            shot.close()

    reply.get_by_role("button", name="Continue").click()
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(notice).to_be_hidden()
    expect(reply).to_have_attribute("data-status", "complete")
    expect(replies(page)).to_have_count(1)
    expect(last_reply(page)).to_have_attribute("data-message-id", reply_id)  # the same reply, longer
    after = reply.locator(".message__body").inner_text().split()
    assert after[:100] == before[:100]
    assert len(after) > len(before) + 400
    expect(notice).to_be_visible()  # 600 tokens asked, 512 more given: it stopped on length again
    page.reload()
    assert len(last_reply(page).locator(".message__body").inner_text().split()) == len(after)


# --- the composer -------------------------------------------------------------------------


def test_a_long_paste_is_counted_and_refused_clearly_never_cut(page, live):
    new_chat(page, live.url)
    box = composer(page)
    counter = page.locator("#composer-count")
    expect(box).to_be_focused()  # focus on load
    expect(counter).to_be_hidden()
    box.fill("x" * 26_000)
    expect(counter).to_have_text("26,000 / 32,000 characters")
    box.fill("y" * (MAX_CHARS + 5))
    expect(counter).to_contain_text("5 over the limit")
    box.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("the limit is 32,000")
    expect(page.locator("#composer-error")).to_contain_text("nothing was sent")
    assert len(box.input_value()) == MAX_CHARS + 5  # not truncated
    expect(page.locator("#messages .message")).to_have_count(0)


def test_escape_stops_a_running_reply_and_ctrl_k_focuses_search(page, live):
    new_chat(page, live.url)
    send(page, "[[tokens:400]][[slow:25]]a long reply")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_reply(page).locator(".message__tail")).not_to_have_text("")
    page.keyboard.press("Escape")
    wait_reply_done(page, "cancelled")
    page.keyboard.press("Control+k")
    expect(page.get_by_label("Search conversations")).to_be_focused()


def test_on_a_touch_screen_enter_adds_a_line_and_send_sends(browser, account, live, problems):
    context = browser.new_context(viewport=PHONE, storage_state=str(account), has_touch=True, is_mobile=True)
    page = problems.watch(context.new_page())
    new_phone_chat(page, live.url)
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")
    box = composer(page)
    box.click()
    box.type("[[echo]]line one")
    box.press("Enter")
    box.type("line two")
    assert box.input_value() == "[[echo]]line one\nline two"
    expect(page.locator("#messages .message")).to_have_count(0)
    page.get_by_role("button", name="Send").tap()
    expect(wait_reply_done(page).locator(".message__body")).to_contain_text("line two")
    context.close()
    assert not problems.errors and not problems.dialogs


# --- per message ------------------------------------------------------------------------


def test_copy_message_time_model_and_code_language_label(page, context, live):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    new_chat(page, live.url)
    send(page, "[[echo]]Run this:\n\n```python\nprint('hi')\n```\n")
    reply = wait_reply_done(page)
    expect(reply.locator(".code-block__lang")).to_have_text("python")
    expect(reply.locator(".message__model")).to_have_text("fake-model")
    time = reply.locator("time.message__time")
    expect(time).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    expect(time).to_have_attribute("title", re.compile(r"\d"))

    reply.get_by_role("button", name="Copy message").click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "Run this:" in copied and "print('hi')" in copied
    assert "Copy" not in copied and "python\n" not in copied.split("print")[0].split("Run this:")[1]

    question = page.locator(".message--user").first
    question.get_by_role("button", name="Copy message").click()
    expect(question.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()").startswith("[[echo]]Run this:")


def test_feedback_is_stored_and_shows_in_the_admin(page, browser, live, problems):
    new_chat(page, live.url)
    marker = f"rated-{uuid.uuid4().hex[:8]}"
    send(page, f"[[echo]]{marker}")
    reply = wait_reply_done(page)
    good = reply.get_by_role("button", name="Good response")
    bad = reply.get_by_role("button", name="Bad response")
    good.click()
    expect(good).to_have_attribute("aria-pressed", "true")
    bad.click()
    expect(bad).to_have_attribute("aria-pressed", "true")
    expect(good).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(last_reply(page).get_by_role("button", name="Bad response")).to_have_attribute(
        "aria-pressed", "true"
    )

    problems.allow(r"status of 404")  # the admin's pages ask for /favicon.ico
    username = f"staff-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            "s@x.test",
        ],
        cwd=ROOT,
        env={**os.environ, **live.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        check=True,
        timeout=60,
    )
    admin_context = browser.new_context(viewport=DESKTOP)
    admin = problems.watch(admin_context.new_page())
    admin.goto(f"{live.url}/admin/login/")
    admin.get_by_label("Username").fill(username)
    admin.get_by_label("Password").fill(PASSWORD)
    admin.get_by_role("button", name="Log in").click()
    admin.goto(f"{live.url}/admin/conversations/message/?feedback__exact=bad")
    row = admin.locator("#result_list tbody tr", has_text=marker)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Bad response")
    admin.goto(f"{live.url}/admin/usage/")
    expect(admin.locator("#feedback")).to_contain_text("Bad response")
    admin_context.close()


def test_jump_to_latest_appears_while_scrolled_up_during_a_reply(page, live):
    new_chat(page, live.url)
    send(page, "[[tokens:300]]something to scroll through first")
    wait_reply_done(page, "complete")
    send(page, "[[tokens:600]][[slow:40]]a very long reply")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    scroller = page.locator("#scroll")
    wait_until(
        page,
        "document.getElementById('scroll').scrollHeight > document.getElementById('scroll').clientHeight + 200",
    )
    scroller.hover()
    page.mouse.wheel(0, -20_000)  # the reader scrolls up
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    jump.click()
    expect(jump).to_be_hidden()
    wait_until(
        page,
        "(() => { const s = document.getElementById('scroll'); return s.scrollHeight - s.scrollTop - s.clientHeight < 80; })()",
    )
    page.keyboard.press("Escape")
    wait_reply_done(page, "cancelled")


# --- the connection ---------------------------------------------------------------------


def test_offline_shows_offline_and_queued_messages_go_out_once_in_order(page, context, live):
    url = new_chat(page, live.url)
    context.set_offline(True)
    status = page.locator("#connection")
    expect(status).to_have_attribute("data-state", "offline")
    expect(status).to_have_attribute("title", "Offline")
    send(page, "[[echo]]queued one")
    send(page, "[[echo]]queued two")
    outbox = page.get_by_role("list", name="Waiting to send")
    expect(outbox.locator("li")).to_have_count(2)
    expect(outbox.locator("li").first).to_contain_text("will send when back online")
    expect(composer(page)).to_have_value("")  # free for the next one
    expect(page.locator("#messages .message")).to_have_count(0)

    context.set_offline(False)
    expect(status).to_have_attribute("data-state", "open")
    expect(replies(page)).to_have_count(2)
    expect(outbox).to_be_hidden()
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("queued two")
    page.goto(url)  # what the server stored: each once, in order
    expect(user_texts(page)).to_have_text(["[[echo]]queued one", "[[echo]]queued two"])
    expect(replies(page).locator(".message__body")).to_have_text(["queued one", "queued two"])


# --- accessibility ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_finds_no_violations_on_the_chat_settings_and_error_pages(
    browser, account, live, problems, viewport, scheme
):
    context = browser.new_context(viewport=viewport, storage_state=str(account), color_scheme=scheme)
    page = problems.watch(context.new_page())
    new_phone_chat(page, live.url) if viewport == PHONE else new_chat(page, live.url)
    send(page, "[[echo]]A reply with `code`, a [link](https://example.com) and:\n\n```python\nx = 1\n```\n")
    wait_reply_done(page)
    first = last_reply(page).get_attribute("data-message-id")
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page)).not_to_have_attribute("data-message-id", first)
    wait_reply_done(page)
    expect(last_reply(page).locator(".versions")).to_be_visible()
    found = {"chat": violations(page)}
    if viewport == PHONE:
        page.get_by_role("button", name="Show conversations").click()
        expect(page.get_by_role("button", name="New chat")).to_be_visible()
        found["chat, drawer open"] = violations(page)
    page.goto(f"{live.url}/settings/")
    found["settings"] = violations(page)
    problems.allow(r"status of (403|404|500)")
    page.goto(f"{live.url}/c/{uuid.uuid4()}/")
    found["not found"] = violations(page)
    page.goto(f"{live.url}/admin/")  # signed in, not staff: templates/403.html
    expect(page.get_by_role("heading", name="You cannot open this page")).to_be_visible()
    found["not allowed (403)"] = violations(page)
    page.goto(f"{live.url}/{SERVER_ERROR_PATH}")  # DEBUG off: templates/500.html
    expect(page.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
    found["server error (500)"] = violations(page)
    page.goto(f"{live.url}/settings/")  # last: it drops the CSRF cookie
    expire_the_form(page)
    found["form expired (403)"] = violations(page)
    context.close()
    report = [f"{name}: {line}" for name, lines in found.items() for line in lines]
    assert report == [], "\n".join(report)


def test_the_mobile_drawer_takes_and_traps_the_focus(browser, account, live, problems):
    context = browser.new_context(viewport=PHONE, storage_state=str(account))
    page = problems.watch(context.new_page())
    new_phone_chat(page, live.url)
    page.get_by_role("button", name="Show conversations").click()
    sidebar = page.locator("#sidebar")
    wait_until(page, "document.getElementById('sidebar').contains(document.activeElement)")  # took the focus
    for _ in range(40):
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('sidebar').contains(document.activeElement)")
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.getElementById('sidebar').contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(page.get_by_role("button", name="Show conversations")).to_be_focused()
    context.close()
    assert not problems.errors and not problems.dialogs


# --- screenshots --------------------------------------------------------------------------


def test_screenshots_of_versions_feedback_code_labels_and_the_offline_outbox(
    browser, account, live, problems
):
    """Desktop and 390 px, light and dark, saved to artifacts/screenshots/inside-chat-*.png."""
    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            shot = browser.new_context(viewport=DESKTOP, storage_state=str(account), color_scheme=scheme)
            view = problems.watch(shot.new_page())
            new_chat(view, live.url)
            send(view, "[[echo]]Here is the function:\n\n```python\ndef add(a, b):\n    return a + b\n```\n")
            first = wait_reply_done(view).get_attribute("data-message-id")
            last_reply(view).get_by_role("button", name="Regenerate").click()
            expect(last_reply(view)).not_to_have_attribute("data-message-id", first)
            reply = wait_reply_done(view)
            expect(reply.locator(".versions__count")).to_have_text("2 / 2")
            reply.get_by_role("button", name="Good response").click()
            expect(reply.get_by_role("button", name="Good response")).to_have_attribute(
                "aria-pressed", "true"
            )
            view.set_viewport_size(viewport)
            shot.set_offline(True)
            expect(view.locator("#connection")).to_have_attribute("data-state", "offline")
            send(view, "A message written while offline")
            expect(view.locator("#outbox li")).to_have_count(1)
            composer(view).fill("A long paste. " * 1_950)
            expect(view.locator("#composer-count")).to_be_visible()
            reply.hover()
            screenshot(view, f"inside-chat-{name}-{scheme}")
            assert view.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            shot.close()
    assert not problems.errors and not problems.dialogs
