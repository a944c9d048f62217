"""The settings page's API keys section in Chromium: a key is shown once, works, lists its use, and
revoking it refuses it at once; screenshots at desktop and phone width."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, screenshot, sign_up


def models(base_url: str, key: str) -> int:
    return httpx.get(
        f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).status_code


def test_a_key_is_shown_once_works_and_is_refused_once_revoked(browser, live, problems):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = problems.watch(context.new_page())
    sign_up(page, live.url, f"keys-{uuid.uuid4().hex[:8]}")
    page.goto(f"{live.url}/settings/")
    expect(page.get_by_text("No keys yet.")).to_be_visible()

    page.get_by_label("Name of a new key").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("Key", exact=True)
    expect(shown).to_be_visible()
    key = shown.input_value()
    assert key.startswith("sk-chat-")
    section = page.locator("#api-keys")
    section.scroll_into_view_if_needed()
    screenshot(page, "api-keys-new-key-desktop")

    assert models(live.url, key) == 200
    page.reload()
    expect(page.get_by_label("Key", exact=True)).to_have_count(0)  # shown once, never again
    assert key not in page.content()
    row = page.locator(".api-keys tbody tr", has_text="laptop")
    expect(row).to_contain_text(key[:16])
    expect(row).not_to_contain_text("never")  # the call above is its last use

    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.get_by_text("The key 'laptop' is revoked")).to_be_visible()
    expect(page.locator(".api-keys tbody tr", has_text="laptop")).to_contain_text("revoked")
    assert models(live.url, key) == 401
    context.close()


def test_the_keys_section_fits_a_phone(browser, live, problems):
    context = browser.new_context(viewport=PHONE, color_scheme="dark")
    page = problems.watch(context.new_page())
    sign_up(page, live.url, f"keys-phone-{uuid.uuid4().hex[:8]}")
    page.goto(f"{live.url}/settings/")
    page.get_by_label("Name of a new key").fill("phone")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_label("Key", exact=True)).to_be_visible()
    page.locator("#api-keys").scroll_into_view_if_needed()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways"
    screenshot(page, "api-keys-phone-dark")
    context.close()
