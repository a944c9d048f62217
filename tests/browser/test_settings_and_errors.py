"""Preferences (theme, default model, custom instructions) and the designed error pages,
in Chromium against the live server, with screenshots of each."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.browser.conftest import CHAT_OR_NEW, PHONE, expire_the_form, screenshot, sign_up
from tests.browser.live_urls import SERVER_ERROR_PATH

WIDE = {"width": 1366, "height": 800}
DARK_BG = "rgb(21, 23, 28)"  # --bg of the dark theme
LIGHT_BG = "rgb(255, 255, 255)"


def new_person(browser, live, problems, *, scheme="light", viewport=WIDE):
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = problems.watch(context.new_page())
    sign_up(page, live.url, f"prefs-{uuid.uuid4().hex[:8]}")
    return context, page


def styled(page) -> bool:
    """The error page's own stylesheet loaded (so an allowed 4xx/5xx line was the document's)."""
    return (
        page.locator(".error-page__card").evaluate("(card) => getComputedStyle(card).borderRadius") == "14px"
    )


def background(page) -> str:
    return page.evaluate("() => getComputedStyle(document.body).backgroundColor")


def save_theme(page, base_url: str, label: str) -> None:
    page.goto(f"{base_url}/settings/")
    page.get_by_label(label, exact=True).check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Preferences saved.")).to_be_visible()


def test_theme_choice_overrides_the_system_and_applies_to_every_page(browser, live, problems):
    context, page = new_person(browser, live, problems, scheme="light")
    assert background(page) == LIGHT_BG  # "System" follows the browser
    save_theme(page, live.url, "Dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG
    page.goto(f"{live.url}/")
    assert background(page) == DARK_BG
    context.close()

    # On a dark system, "Light" wins.
    context, page = new_person(browser, live, problems, scheme="dark")
    assert background(page) == DARK_BG
    save_theme(page, live.url, "Light")
    assert background(page) == LIGHT_BG
    save_theme(page, live.url, "System (follow this device)")
    assert background(page) == DARK_BG
    context.close()
    assert not problems.errors and not problems.dialogs


def test_default_model_applies_to_new_conversations_and_instructions_are_kept(browser, live, problems):
    context, page = new_person(browser, live, problems)
    page.goto(f"{live.url}/settings/")
    page.get_by_label("Default model").select_option("fake-model")
    page.get_by_label("Custom instructions").fill("Answer like a pirate.")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Preferences saved.")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Default model")).to_have_value("fake-model")
    expect(page.get_by_label("Custom instructions")).to_have_value("Answer like a pirate.")
    # The first message of a new chat creates the conversation, with the default model.
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url(re.compile(r".*/c/new/"))
    page.get_by_label("Message", exact=True).fill("[[echo]]hello")
    page.get_by_label("Message", exact=True).press("Enter")
    page.wait_for_url(re.compile(r".*/c/[0-9a-f-]{36}/$"))
    page.get_by_text("Options", exact=True).click()
    expect(page.get_by_label("Model", exact=True)).to_have_value("fake-model")
    context.close()
    assert not problems.errors and not problems.dialogs


def designed_error_page_leads_home(page, *, heading: str) -> None:
    """The designed error page: its heading, the site's stylesheet, and a link back to the chat."""
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert styled(page)
    page.get_by_role("link", name="Go to your conversations").click()
    expect(page).to_have_url(CHAT_OR_NEW)


def test_a_missing_page_is_a_designed_404_with_a_way_home(page, live, problems):
    problems.allow(r"status of 404 \(Not Found\)")  # the page itself; styled() checks its stylesheet
    page.goto(f"{live.url}/c/{uuid.uuid4()}/")
    designed_error_page_leads_home(page, heading="This page does not exist")


def test_an_expired_form_is_a_designed_403(page, live, problems):
    problems.allow(r"status of 403 \(Forbidden\)")
    page.goto(f"{live.url}/settings/")
    expire_the_form(page)
    expect(page.get_by_role("link", name="Go to your conversations")).to_be_visible()
    assert styled(page)


def test_a_page_one_may_not_open_is_a_designed_403(page, live, problems):
    problems.allow(r"status of 403 \(Forbidden\)")
    page.goto(f"{live.url}/admin/")  # signed in, but not staff
    designed_error_page_leads_home(page, heading="You cannot open this page")


def test_a_server_error_is_the_designed_500_with_a_way_home(page, live, problems):
    problems.allow(r"status of 500 \(Internal Server Error\)")
    response = page.goto(f"{live.url}/{SERVER_ERROR_PATH}")
    assert response is not None and response.status == 500
    designed_error_page_leads_home(page, heading="Something went wrong on our side")


def test_screenshots_of_settings_and_error_pages(browser, account, live, problems):
    """Desktop 1366 and 390 px, light and dark: artifacts/screenshots/{settings,error-*}.png
    (error-403, error-404, error-500), each page as the live server answers it."""
    problems.allow(r"status of (403 \(Forbidden\)|404 \(Not Found\)|500 \(Internal Server Error\))")
    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", WIDE), ("phone", PHONE)):
            context = browser.new_context(viewport=viewport, storage_state=str(account), color_scheme=scheme)
            view = problems.watch(context.new_page())
            view.goto(f"{live.url}/settings/")
            expect(view.get_by_role("heading", name="Preferences")).to_be_visible()
            screenshot(view, f"settings-{name}-{scheme}")
            view.goto(f"{live.url}/no-such-page/")
            expect(view.get_by_role("heading", name="This page does not exist")).to_be_visible()
            assert styled(view)
            screenshot(view, f"error-404-{name}-{scheme}")
            view.goto(f"{live.url}/admin/")
            expect(view.get_by_role("heading", name="You cannot open this page")).to_be_visible()
            assert styled(view)
            screenshot(view, f"error-403-{name}-{scheme}")
            view.goto(f"{live.url}/{SERVER_ERROR_PATH}")
            expect(view.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
            assert styled(view) and background(view) == (DARK_BG if scheme == "dark" else LIGHT_BG)
            screenshot(view, f"error-500-{name}-{scheme}")
            context.close()
    assert not problems.errors and not problems.dialogs
