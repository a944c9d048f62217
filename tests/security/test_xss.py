"""Model output is untrusted: hostile replies are inert everywhere they appear, and stored verbatim.

Everywhere: the live stream (`message.blocks` and `message.completed` over a real
socket), the server-rendered history and its fragments, the admin, the exports,
and, once, in Chromium. Titles and model names come from the model or the
provider too, so they are hostile here as well. `tests/security/inert.py` holds
the payloads and the checker.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils.html import escape
from markdown_it import MarkdownIt

from conversations import llm, views
from conversations.models import Conversation, Message, UsageEvent
from conversations.rendering import render_markdown, sanitize
from tests.security.conftest import chat_turn, logged_in_client, make_user, session_cookie, ws_open
from tests.security.inert import PAYLOADS, hazards, link_hrefs

db = database_sync_to_async

HOSTILE_TITLE = (
    '"><img src=x onerror=alert(1)>\r\nX-Evil: 1; filename="evil.html</title><script>alert(1)</script>'
)
HOSTILE_MODELS = ['<script>alert("model")</script>', '"><img src=x onerror=alert(2)>']
# Markdown that escapes itself even when rendered naively (the checker has nothing to find there).
INERT_EVEN_NAIVELY = {"md-link-title-breakout", "md-code-fence", "md-code-info-breakout"}


def naive_render(text: str) -> str:
    """What a renderer without the allow-list would produce: raw HTML on, every link accepted."""
    md = MarkdownIt("commonmark", {"html": True})
    md.enable(["table"])
    md.validateLink = lambda url: True
    return md.render(text)


# --- the renderer ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(PAYLOADS) - INERT_EVEN_NAIVELY))
def test_the_checker_catches_every_payload_rendered_without_the_allow_list(name):
    assert hazards(naive_render(PAYLOADS[name]), fragment=True)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_the_one_renderer_makes_every_payload_inert_and_stable(name):
    html = render_markdown(PAYLOADS[name])
    assert hazards(html, fragment=True) == []
    # Sanitising its own output changes nothing: no markup that a second parse would mutate.
    assert sanitize(html) == html


def test_an_image_pointing_outside_becomes_a_link_a_person_must_choose_to_follow():
    html = render_markdown(PAYLOADS["md-image-exfiltration"])
    assert "<img" not in html
    assert link_hrefs(html) == ["https://evil.example/?q=secret"]
    assert 'rel="noopener noreferrer nofollow"' in html


# --- the live stream, over a real socket -------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_hostile_replies_stream_inert_over_a_real_socket_and_are_stored_verbatim(chat_server):
    user = await db(make_user)()
    conversation = await db(Conversation.objects.create)(owner=user)
    cookie = await db(session_cookie)(user)
    problems: dict[str, list[str]] = {}
    finals: dict[str, dict] = {}
    async with await ws_open(chat_server, conversation.id, cookie) as ws:
        for name, payload in PAYLOADS.items():
            reply_text = f"{payload}\n\nEnd of {name}."  # the blank line finishes the block mid-stream
            frames, final = await chat_turn(ws, "[[echo]]" + reply_text)
            finals[name] = final
            blocks = [f["html"] for f in frames if f["type"] == "message.blocks"]
            found = [h for html in [*blocks, final["html"]] for h in hazards(html, fragment=True)]
            if not blocks:
                found.append("no message.blocks frame: the live block path was not exercised")
            if final["type"] != "message.completed" or final["content"] != reply_text:
                found.append(f"reply not verbatim: {final['type']} {final['content']!r}")
            if found:
                problems[name] = found
    assert problems == {}

    stored = await db(lambda: {m.id: m.content for m in Message.objects.filter(conversation=conversation)})()
    for name, payload in PAYLOADS.items():
        assert stored[uuid.UUID(finals[name]["message_id"])] == f"{payload}\n\nEnd of {name}."
    user_texts = sorted(c for c in stored.values() if c.startswith("[[echo]]"))
    assert len(user_texts) == len(PAYLOADS)


# --- the server-rendered history -----------------------------------------------------------


@pytest.fixture
def hostile_chat(db):
    """A conversation whose title, model, user messages and replies are all hostile."""
    owner = make_user()
    conversation = Conversation.objects.create(owner=owner, title=HOSTILE_TITLE, model=HOSTILE_MODELS[0])
    parent = None
    for name, payload in PAYLOADS.items():
        asked = Message.objects.create(conversation=conversation, role="user", content=payload, parent=parent)
        parent = Message.objects.create(
            conversation=conversation,
            role="assistant",
            content=f"{payload}\n\nEnd of {name}.",
            status="complete",
            parent=asked,
            model=HOSTILE_MODELS[1],
        )
    # A reply still being written renders its finished blocks on the server too.
    asked = Message.objects.create(conversation=conversation, role="user", content="and?", parent=parent)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=PAYLOADS["img-onerror"] + "\n\n" + PAYLOADS["md-image-exfiltration"] + "\n\n<scr",
        status="streaming",
        parent=asked,
    )
    return conversation


@pytest.fixture
def hostile_provider(monkeypatch):
    """The provider's model list is the provider's to write: hostile too."""
    monkeypatch.setattr(views, "available_models", lambda: HOSTILE_MODELS)
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})


def test_history_page_shows_hostile_replies_titles_and_models_inert(hostile_chat, hostile_provider):
    client = logged_in_client(hostile_chat.owner)
    response = client.get(reverse("conversation", args=[hostile_chat.id]))
    html = response.content.decode()
    assert response.status_code == 200
    assert hazards(html) == []
    assert escape(PAYLOADS["mxss-template"]) in html  # shown, as text
    assert ">[image: a]</a>" in html


def test_history_fragments_show_hostile_replies_inert(hostile_chat, hostile_provider):
    client = logged_in_client(hostile_chat.owner)
    url = reverse("conversation-messages", args=[hostile_chat.id])
    latest = client.get(url)
    assert latest["X-Has-Earlier"] == "1"  # the earlier page is a second fragment
    first_shown = re.search(r'data-message-id="([0-9a-f-]{36})"', latest.content.decode()).group(1)
    earlier = client.get(url, {"before": first_shown})
    for response in (latest, earlier):
        assert response.status_code == 200
        assert hazards(response.content.decode()) == []


# --- the admin -------------------------------------------------------------------------------


def admin_pages(conversation: Conversation) -> dict[str, str]:
    message = conversation.messages.filter(role="assistant", content__startswith="<svg").first()
    return {
        "conversation list": reverse("admin:conversations_conversation_changelist"),
        "conversation search": reverse("admin:conversations_conversation_changelist")
        + "?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "conversation page": reverse("admin:conversations_conversation_change", args=[conversation.id]),
        "message list": reverse("admin:conversations_message_changelist"),
        "message page": reverse("admin:conversations_message_change", args=[message.id]),
        "usage events": reverse("admin:conversations_usageevent_changelist"),
        "usage page": "/admin/usage/",
    }


def test_admin_pages_show_hostile_content_inert(hostile_chat):
    for model in HOSTILE_MODELS:
        UsageEvent.objects.create(
            user=hostile_chat.owner, conversation=hostile_chat, provider="openai", model=model, status="ok"
        )
    admin = make_user(is_staff=True, is_superuser=True)
    client = logged_in_client(admin)
    problems = {}
    for name, url in admin_pages(hostile_chat).items():
        response = client.get(url)
        assert response.status_code == 200, name
        found = hazards(response.content.decode())
        if found:
            problems[name] = found
    assert problems == {}


# --- exports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_name", "content_type"),
    [
        ("conversation-export-md", "text/markdown; charset=utf-8"),
        ("conversation-export-json", "application/json; charset=utf-8"),
    ],
)
def test_exports_are_attachments_with_safe_types_and_verbatim_content(hostile_chat, url_name, content_type):
    client = logged_in_client(hostile_chat.owner)
    response = client.get(reverse(url_name, args=[hostile_chat.id]))
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="[a-z0-9-]+\.(md|json)"', disposition), disposition
    body = response.content.decode()
    replies = hostile_chat.messages.filter(role="assistant", status="complete").order_by("created_at")
    if url_name.endswith("json"):
        exported = [m["content"] for m in json.loads(body)["messages"] if m["role"] == "assistant"]
        assert exported[: len(PAYLOADS)] == [m.content for m in replies]
    else:
        assert all(m.content in body for m in replies)  # verbatim: it is the user's data, not HTML


@pytest.mark.parametrize(("action", "extension"), [("export_json", "json"), ("export_markdown", "md")])
def test_admin_exports_are_attachments_with_safe_types(hostile_chat, action, extension):
    admin = make_user(is_staff=True, is_superuser=True)
    client = logged_in_client(admin)
    response = client.post(
        reverse("admin:conversations_conversation_changelist"),
        {"action": action, "_selected_action": [str(hostile_chat.id)]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] in {"application/json; charset=utf-8", "text/markdown; charset=utf-8"}
    assert response["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(
        rf'attachment; filename="conversations-[0-9-]+\.{extension}"', response["Content-Disposition"]
    )
    assert PAYLOADS["mxss-noscript"] in response.content.decode() or extension == "json"


# --- in the browser ---------------------------------------------------------------------------


# Elements that could run or load something; the page adds only buttons (copy code) to a reply.
ACTIVE_ELEMENTS = (
    "script, style, img, image, svg, math, iframe, frame, object, embed, form, input, base, meta, link"
)


def state(page, reply) -> dict:
    body = reply.locator(".message__body")
    return {
        "hazards": hazards(body.inner_html()),
        "active elements": body.locator(ACTIVE_ELEMENTS).count(),
        "window.__xss": page.evaluate("window.__xss"),
        "csp violations": page.evaluate("window.__violations"),
    }


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_hostile_reply_is_inert_in_chromium_live_and_after_reload(chat_server):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    user = make_user()
    conversation = Conversation.objects.create(owner=user)
    cookie = session_cookie(user).split("=", 1)[1]
    hostile = "[[echo]]" + "\n\n".join(PAYLOADS.values())

    dialogs: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": cookie, "url": chat_server.url}])
        # Count what the CSP had to block: the sanitiser should leave it nothing to do.
        context.add_init_script(
            "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("request", lambda r: r.url.startswith(chat_server.url) or outside.append(r.url))

        response = page.goto(f"{chat_server.url}/c/{conversation.id}/")
        csp = response.headers.get("content-security-policy", "")
        expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=10_000)
        box = page.get_by_label("Message", exact=True)
        box.fill(hostile)
        box.press("Enter")
        reply = page.locator("#messages .message--assistant").last
        expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
        live = state(page, reply)

        page.reload()
        expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=10_000)
        reply = page.locator("#messages .message--assistant").last
        expect(reply.get_by_role("link", name="[image: a]")).to_be_visible()
        reloaded = state(page, reply)
        browser.close()

    assert "script-src 'self'" in csp and "img-src 'self'" in csp
    for seen in (live, reloaded):
        assert seen["hazards"] == []
        assert seen["active elements"] == 0
        assert seen["window.__xss"] is None
        assert seen["csp violations"] == []
    assert dialogs == []
    assert outside == []
