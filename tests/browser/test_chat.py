"""What a person sees in the browser: Chromium against a live daphne and the scripted model."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from playwright.sync_api import expect

from conversations.llm.fake import expected_reply
from tests.browser.conftest import (
    DESKTOP,
    HISTORY_PAGE,
    PHONE,
    composer,
    last_reply,
    new_chat,
    open_tab,
    replies,
    screenshot,
    send,
    sign_up,
    wait_connected,
    wait_reply_done,
)
from tests.servers import daphne

# The scripted model's default reply length on the live server (LLM_FAKE_TOKENS).
FAKE_TOKENS = 30


def open_options(page) -> None:
    menu = page.locator("#conversation-menu")
    if menu.get_attribute("open") is None:
        page.get_by_text("Options", exact=True).click()


def test_sign_up_opens_an_empty_chat(browser, live, problems):
    context = browser.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    sign_up(page, live.url, f"newcomer-{uuid.uuid4().hex[:8]}")
    expect(page).to_have_url(re.compile(r"/c/new/$"))  # nothing stored until the first message
    expect(composer(page)).to_be_focused()
    expect(page.locator("#messages-empty")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    context.close()
    assert not problems.errors and not problems.dialogs


def test_anonymous_visitor_is_sent_to_the_login_page(browser, live, problems):
    context = browser.new_context(viewport=DESKTOP)
    page = problems.watch(context.new_page())
    page.goto(f"{live.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    context.close()
    assert not problems.errors and not problems.dialogs


def test_enter_sends_and_the_reply_streams_then_renders_markdown(page, live):
    new_chat(page, live.url)
    markdown = (
        "## Plan\n\nSome words to read while the rest arrives, slowly and steadily.\n\n"
        "- first\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```python\nprint('hi')\n```\n\nDone."
    )
    send(page, "[[slow:25]][[echo]]" + markdown)
    reply = last_reply(page)
    # While the reply is written, finished blocks already show as formatted HTML.
    expect(reply.locator(".message__blocks h2")).to_have_text("Plan")
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    wait_reply_done(page)
    expect(reply.locator("li")).to_have_text(["first", "second"])
    expect(reply.locator("table td").first).to_have_text("1")
    expect(reply.locator("pre code .nb")).to_have_text("print")  # highlighted by Pygments
    expect(reply.locator("pre .code-copy")).to_be_visible()
    expect(reply.locator(".message__usage")).to_contain_text("first token")
    expect(composer(page)).to_have_value("")
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_shift_enter_adds_a_line_and_enter_sends(page, live):
    new_chat(page, live.url)
    box = composer(page)
    box.press_sequentially("[[echo]]line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("[[echo]]line one\nline two")
    expect(page.locator("#messages .message")).to_have_count(0)
    box.press("Enter")
    expect(page.locator(".message--user .message__body")).to_have_text("[[echo]]line one\nline two")
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("line one\nline two")


def test_code_block_copy_button_copies_the_code(page, context, live):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    new_chat(page, live.url)
    send(page, "[[echo]]```\nmake test\n```")
    reply = wait_reply_done(page)
    reply.get_by_role("button", name="Copy code").click()
    expect(reply.get_by_role("button", name="Copy code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "make test\n"


def test_stop_ends_the_reply_and_keeps_its_text(page, live):
    new_chat(page, live.url)
    send(page, "[[tokens:400]][[slow:25]]a long story please")
    reply = last_reply(page)
    expect(reply.locator(".message__tail")).not_to_have_text("")
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    page.get_by_role("button", name="Stop").click()
    expect(reply).to_have_attribute("data-status", "cancelled")
    expect(reply.locator(".message__note")).to_have_text("Stopped")
    words = reply.locator(".message__body").inner_text().split()
    assert 0 < len(words) < 400
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_regenerate_replaces_the_reply_with_a_new_one(page, live):
    new_chat(page, live.url)
    send(page, "[[tokens:5]]a question")
    old = wait_reply_done(page).get_attribute("data-message-id")
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page)).not_to_have_attribute("data-message-id", old)
    wait_reply_done(page)
    expect(replies(page)).to_have_count(1)
    expect(page.locator(".message--user")).to_have_count(1)


def test_edit_and_resend_shows_the_new_branch(page, live):
    new_chat(page, live.url)
    send(page, "[[echo]]first answer")
    wait_reply_done(page)
    send(page, "[[echo]]second answer")
    expect(replies(page)).to_have_count(2)
    wait_reply_done(page)

    page.locator(".message--user").first.get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("[[echo]]edited answer")
    page.get_by_role("button", name="Save and send").click()
    expect(page.locator(".message--user .message__body")).to_have_text(["[[echo]]edited answer"])
    expect(wait_reply_done(page).locator(".message__body")).to_have_text("edited answer")
    expect(replies(page)).to_have_count(1)

    page.reload()  # the server shows the same branch
    expect(page.locator(".message--user .message__body")).to_have_text(["[[echo]]edited answer"])
    expect(replies(page).locator(".message__body")).to_have_text(["edited answer"])


def test_reload_mid_reply_shows_it_continuing_to_the_end(page, live):
    new_chat(page, live.url)
    prompt = "[[tokens:150]][[slow:20]]keep talking"
    send(page, prompt)
    expect(last_reply(page).locator(".message__tail")).not_to_have_text("")
    page.wait_for_timeout(1200)  # past a checkpoint: the server has part of the text stored
    page.reload()
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    wait_reply_done(page)
    text = reply.locator(".message__body").inner_text()
    assert text.split() == expected_reply(prompt, tokens=FAKE_TOKENS).split()


def test_two_tabs_on_one_conversation_stay_in_sync(page, context, problems, live):
    url = new_chat(page, live.url)
    other = open_tab(context, problems, url)

    send(page, "[[echo]]hello from tab one")
    expect(other.locator(".message--user .message__body")).to_have_text(["[[echo]]hello from tab one"])
    expect(last_reply(other)).to_have_attribute("data-status", "complete")
    expect(last_reply(other).locator(".message__body")).to_have_text("hello from tab one")

    # A reply started in the second tab is stopped from the first.
    send(other, "[[tokens:400]][[slow:25]]a long one")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(other)).to_have_attribute("data-status", "cancelled")
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")

    # Every message once in each tab, in the same order.
    ids = [
        tab.locator("#messages .message").evaluate_all("els => els.map(e => e.dataset.messageId)")
        for tab in (page, other)
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 4

    open_options(page)
    page.get_by_label("Title").fill("Shared title")
    page.get_by_role("button", name="Rename").click()
    expect(other.locator("#conversation-title")).to_have_text("Shared title")


def test_rename_and_delete_a_conversation(page, live):
    url = new_chat(page, live.url)
    send(page, "[[echo]]hi")
    wait_reply_done(page)
    open_options(page)
    page.get_by_label("Title").fill("Holiday plans")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#conversation-title")).to_have_text("Holiday plans")
    expect(page.locator("#conversation-list [aria-current=page]")).to_have_text("Holiday plans")
    page.reload()
    expect(page.locator("#conversation-title")).to_have_text("Holiday plans")

    open_options(page)
    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete this conversation?")).to_be_visible()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(re.compile(r".*/c/[0-9a-f-]{36}/$"))
    assert page.url != url
    expect(page.locator("#conversation-list")).not_to_contain_text("Holiday plans")
    assert page.context.request.get(url).status == 404


def test_model_and_system_prompt_are_saved_without_leaving_the_page(page, live):
    new_chat(page, live.url)
    # The model picker is in the header and saves as soon as a model is chosen.
    page.get_by_label("Model").select_option("fake-model")
    expect(page.locator("#model-form .form__status")).to_have_text("Saved")
    expect(page.locator("#system-prompt-indicator")).to_be_hidden()
    open_options(page)
    page.get_by_label("System prompt").fill("Answer like a pirate.")
    page.get_by_role("button", name="Save system prompt").click()
    expect(page.locator("#settings-form .form__status")).to_have_text("Saved")
    expect(page.get_by_role("button", name="System prompt", exact=True)).to_be_visible()
    wait_connected(page)  # the same page and socket: nothing reloaded
    page.reload()
    expect(page.get_by_label("Model")).to_have_value("fake-model")
    expect(page.get_by_role("button", name="System prompt", exact=True)).to_have_attribute(
        "title", "Answer like a pirate."
    )
    open_options(page)
    expect(page.get_by_label("System prompt")).to_have_value("Answer like a pirate.")


def test_export_downloads_markdown_and_json(page, live):
    new_chat(page, live.url)
    send(page, "[[echo]]an exported answer")
    wait_reply_done(page)
    open_options(page)
    with page.expect_download() as markdown:
        page.get_by_role("link", name="Export Markdown").click()
    assert markdown.value.suggested_filename.endswith(".md")
    assert "an exported answer" in Path(markdown.value.path()).read_text()
    with page.expect_download() as as_json:
        page.get_by_role("link", name="Export JSON").click()
    data = json.loads(Path(as_json.value.path()).read_text())
    assert [m["content"] for m in data["messages"]] == ["[[echo]]an exported answer", "an exported answer"]


def test_reply_full_of_html_and_javascript_is_shown_inert(page, live):
    new_chat(page, live.url)
    payload = (
        "<img src=x onerror=alert(1)><script>alert(2)</script>"
        '<a href="javascript:alert(3)">x</a> [click](javascript:alert(4)) <svg onload=alert(5)>\n\n'
        '<iframe src="javascript:alert(6)"></iframe>\n\n![pixel](https://evil.example/p.png)\n\n'
        "[docs](https://example.com/docs)\n\n```html\n<script>alert(7)</script>\n```\n"
    )
    send(page, "[[slow:5]][[echo]]" + payload)
    for attempt in ("live", "reloaded"):
        reply = wait_reply_done(page)
        # In what the model wrote (the reply's own buttons carry trusted icons).
        body = reply.locator(".message__body")
        assert body.locator("script, img, svg, iframe, [onerror], [onload]").count() == 0, attempt
        hrefs = reply.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert not [h for h in hrefs if not h.startswith("https://")], hrefs
        expect(reply.locator('a[href="https://example.com/docs"]')).to_have_attribute(
            "rel", "noopener noreferrer nofollow"
        )
        expect(reply.locator(".message__body")).to_contain_text("<script>alert(2)</script>")
        page.reload()
    expect(page.locator(".message--user .message__body")).to_contain_text("<img src=x onerror=alert(1)>")
    page.wait_for_timeout(200)  # a dialog would have fired by now; the page fixture checks


def test_failed_reply_shows_an_error_line_with_retry(page, live):
    new_chat(page, live.url)
    send(page, "[[fail:timeout:3]]this will fail")
    reply = wait_reply_done(page, "failed")
    expect(reply.locator(".message__error")).to_be_visible()
    expect(reply.locator(".message__body")).not_to_have_text("")  # the partial text is kept
    failed_id = reply.get_attribute("data-message-id")
    reply.get_by_role("button", name="Retry").click()
    expect(last_reply(page)).not_to_have_attribute("data-message-id", failed_id)
    wait_reply_done(page, "failed")
    expect(replies(page)).to_have_count(1)


def test_long_conversation_loads_earlier_messages_on_demand(page, live):
    new_chat(page, live.url)
    for number in range(4):
        send(page, f"[[echo]]answer {number}")
        expect(replies(page)).to_have_count(number + 1)
        wait_reply_done(page)
    page.reload()
    messages = page.locator("#messages .message")
    expect(messages).to_have_count(HISTORY_PAGE)
    page.get_by_role("button", name="Load earlier messages").click()
    expect(messages).to_have_count(8)
    expect(messages.first.locator(".message__body")).to_have_text("[[echo]]answer 0")
    expect(page.get_by_role("button", name="Load earlier messages")).to_be_hidden()


def test_text_typed_while_a_reply_runs_waits_in_the_composer(page, live):
    new_chat(page, live.url)
    send(page, "[[tokens:400]][[slow:25]]busy now")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    composer(page).fill("my next question")
    composer(page).press("Enter")
    expect(composer(page)).to_have_value("my next question")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(composer(page)).to_have_value("my next question")


def test_connection_state_shows_and_the_page_reconnects_after_a_restart(
    browser, account, live, problems, tmp_path
):
    problems.allow(r"WebSocket connection to .* failed")
    context = browser.new_context(viewport=DESKTOP, storage_state=str(account))
    page = problems.watch(context.new_page())
    with daphne(live.env, log_dir=tmp_path, name="restarting") as first:
        port = first.port
        new_chat(page, first.url)
        send(page, "[[echo]]before the restart")
        wait_reply_done(page)
        first.process.terminate()
        first.process.wait(timeout=10)
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    with daphne(live.env, port=port, log_dir=tmp_path, name="restarted"):
        expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=20_000)
        send(page, "[[echo]]after the restart")
        expect(replies(page)).to_have_count(2)
        expect(wait_reply_done(page).locator(".message__body")).to_have_text("after the restart")
    context.close()
    assert not problems.errors and not problems.dialogs


def test_keyboard_focus_is_visible(page, live):
    new_chat(page, live.url)
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")


def test_phone_width_has_a_collapsible_sidebar_and_no_sideways_scroll(browser, account, live, problems):
    context = browser.new_context(viewport=PHONE, storage_state=str(account))
    page = problems.watch(context.new_page())
    new_chat_button = page.get_by_role("button", name="New chat")
    new_chat(page, live.url)
    expect(new_chat_button).to_be_hidden()
    toggle = page.get_by_role("button", name="Show conversations")
    toggle.click()
    expect(new_chat_button).to_be_visible()
    expect(page.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(new_chat_button).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    context.close()
    assert not problems.errors and not problems.dialogs


def test_screenshots_of_the_chat_page(browser, account, live, problems):
    """Desktop and 390 px, light and dark: saved to artifacts/screenshots/ for review."""
    context = browser.new_context(viewport=DESKTOP, storage_state=str(account))
    page = problems.watch(context.new_page())
    url = new_chat(page, live.url)
    send(page, "[[echo]]Hi! Can you show me a bit of everything?")
    wait_reply_done(page)
    send(
        page,
        "[[echo]]## A small plan\n\nHere is **what** we can do, with a [link](https://example.com):\n\n"
        "1. Read the *docs*\n2. Write the code\n3. Test it\n\n| Step | Time |\n|------|------|\n"
        "| Read | 1 h |\n| Write | 3 h |\n\n```python\ndef greet(name: str) -> str:\n"
        '    return f"Hello, {name}!"\n```\n\n> Keep it simple.\n',
    )
    expect(replies(page)).to_have_count(2)
    wait_reply_done(page)
    open_options(page)
    page.get_by_label("Title").fill("A bit of everything")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#conversation-title")).to_have_text("A bit of everything")
    context.close()

    for scheme in ("light", "dark"):
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            shot = browser.new_context(viewport=viewport, storage_state=str(account), color_scheme=scheme)
            view = problems.watch(shot.new_page())
            view.goto(url)
            wait_connected(view)
            expect(last_reply(view)).to_have_attribute("data-status", "complete")
            screenshot(view, f"chat-{name}-{scheme}")
            if name == "phone":
                view.get_by_role("button", name="Show conversations").click()
                expect(view.get_by_role("button", name="New chat")).to_be_visible()
                view.wait_for_timeout(250)  # the drawer's slide-in
                screenshot(view, f"chat-{name}-{scheme}-sidebar")
            shot.close()
    assert not problems.errors and not problems.dialogs


def test_a_cut_connection_mid_reply_reconnects_and_resumes_with_sync(page, cable, problems):
    problems.allow(r"WebSocket connection to .* failed")
    new_chat(page, cable.url)
    prompt = "[[tokens:150]][[slow:20]]keep going while I am away"
    send(page, prompt)
    # Text has arrived and the reply is still running (the tail element is
    # re-rendered as blocks finish, so wait on the body, not the tail).
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    expect(last_reply(page).locator(".message__body")).not_to_have_text("")
    cable.cut()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    page.wait_for_timeout(800)  # the reply goes on without us
    cable.reconnect()
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=20_000)
    reply = wait_reply_done(page)
    words = reply.locator(".message__body").inner_text().split()
    assert words == expected_reply(prompt, tokens=FAKE_TOKENS).split()


def test_reconnect_delays_grow_exponentially_with_jitter_up_to_a_cap(page, live):
    page.goto(f"{live.url}/accounts/login/")
    delays = page.evaluate(
        """async () => {
            const { backoffDelay, BACKOFF } = await import("/static/js/socket.js");
            const low = [0, 1, 2, 3, 10].map((n) => backoffDelay(n, () => 0));
            const high = [0, 1, 2, 3, 10].map((n) => backoffDelay(n, () => 1));
            return { low, high, max: BACKOFF.maxMs };
        }"""
    )
    assert delays["low"] == [250, 500, 1000, 2000, delays["max"] // 2]
    assert delays["high"] == [500, 1000, 2000, 4000, delays["max"]]
