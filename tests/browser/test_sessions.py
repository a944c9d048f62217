"""What a person sees when a page's history answers late, and when their session ends."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, new_chat, send, sign_up, wait_connected, wait_reply_done

MESSAGES = re.compile(r".*/c/[0-9a-f-]{36}/messages/\?.*")


def test_live_messages_survive_a_history_fetch_that_answers_late(page, live):
    url = new_chat(page, live.url)
    held = []

    def hold(route):
        if held:
            route.continue_()  # later fetches go through
        else:
            held.append((route, route.fetch()))  # what the server says now: nothing yet

    page.route(MESSAGES, hold)
    with page.expect_request(MESSAGES):
        page.goto(url)
    wait_connected(page)
    send(page, "[[echo]]hi there")
    wait_reply_done(page)
    assert len(held) == 1

    # The stale answer lands after the live messages: the page must not let it wipe them.
    route, stale = held[0]
    with page.expect_response(
        lambda response: MESSAGES.match(response.url) and "after=&" not in response.url + "&"
    ):
        route.fulfill(response=stale)
    expect(page.locator("#messages .message")).to_have_count(2)
    expect(page.locator("#messages .message--assistant")).to_contain_text("hi there")
    expect(page.locator("#messages-empty")).to_be_hidden()


def test_logout_in_another_tab_ends_the_session_on_the_page(browser, live, problems):
    problems.allow(r"status of 401")  # the form's refused save is logged by the browser
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = problems.watch(context.new_page())
        sign_up(page, live.url, f"leaver-{uuid.uuid4().hex[:8]}")
        new_chat(page, live.url)  # a conversation page, its socket open

        other = problems.watch(context.new_page())
        other.goto(f"{live.url}/")
        other.get_by_role("button", name="Log out").click()

        expect(page.locator("#session-ended")).to_be_visible()
        expect(page.locator("#session-ended")).to_contain_text("Your session has ended")
        expect(page.locator("#connection")).to_have_attribute("data-state", "closed")
        expect(page.get_by_role("link", name="Log in again")).to_be_visible()

        page.locator("#conversation-menu summary").click()
        page.get_by_label("Title").fill("After logout")
        page.get_by_role("button", name="Rename").click()
        status = page.locator("#conversation-menu form").first.locator(".form__status")
        expect(status).to_have_text("Not saved: your session has ended. Log in again.")
    finally:
        context.close()
    assert not problems.errors, f"console errors: {problems.errors}"
