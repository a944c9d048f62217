"""A person downloads their data and deletes their account from the settings page, in Chromium."""

from __future__ import annotations

import json
import re
import uuid
import zipfile

from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PASSWORD, new_chat, screenshot, sign_up


def test_download_my_data_then_delete_my_account(browser, live, problems, tmp_path):
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = problems.watch(context.new_page())
    username = f"leaving-{uuid.uuid4().hex[:8]}"
    sign_up(page, live.url, username)
    conversation_id = re.search(r"/c/([0-9a-f-]{36})/", new_chat(page, live.url)).group(1)

    page.goto(f"{live.url}/settings/")
    section = page.get_by_role("region", name="Your data")
    expect(section).to_be_visible()
    section.scroll_into_view_if_needed()
    screenshot(page, "settings-your-data")
    with page.expect_download() as download:
        section.get_by_role("link", name="Download my data").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith(f"chat-data-{username}-") and path.suffix == ".zip"
    data = json.loads(zipfile.ZipFile(path).read("data.json"))
    assert data["account"]["username"] == username
    assert conversation_id in {c["id"] for c in data["conversations"]}

    section.get_by_role("link", name="Delete my account…").click()
    expect(page.get_by_role("heading", name="Delete your account?")).to_be_visible()
    page.get_by_label("Your password").fill("not my password")
    problems.allow(r"400 \(Bad Request\)")  # the refused form is answered 400, by design
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That is not your password.")).to_be_visible()
    page.get_by_label("Your password").fill(PASSWORD)
    screenshot(page, "delete-account-confirm")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", name="Account deleted")).to_be_visible()
    screenshot(page, "account-deleted")

    # Signed out, and the account is gone: its password no longer signs in.
    page.goto(f"{live.url}/settings/")
    page.wait_for_url(re.compile(r".*/accounts/login/.*"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-errors")).to_be_visible()
    context.close()
