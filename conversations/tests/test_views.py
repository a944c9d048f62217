"""The chat pages: accounts, conversations, history fragments, exports, forms and page hygiene."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from conversations import llm, views
from conversations.models import Conversation, Message
from conversations.tests import rows

pytestmark = pytest.mark.django_db

# Most tests replace it with a stub; the provider-failure test needs the real one.
REAL_AVAILABLE_MODELS = views.available_models

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def alice(client):
    user = rows.user("alice")
    client.force_login(user)
    return user


@pytest.fixture
def no_provider(monkeypatch):
    monkeypatch.setattr(llm, "get_provider", lambda: None)
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": False, "reason": "Set LLM_BASE_URL."})


@pytest.fixture
def models_on_offer(monkeypatch):
    """A provider offering two models (the page asks for them through available_models)."""
    monkeypatch.setattr(views, "available_models", lambda: ["small-model", "large-model"])
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})


@pytest.fixture(autouse=True)
def _configured_provider(monkeypatch, request):
    # Pages do not depend on which provider runs; tests that care override this.
    if "no_provider" not in request.fixturenames and "models_on_offer" not in request.fixturenames:
        monkeypatch.setattr(views, "available_models", lambda: ["fake-model"])
        monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})


def page(client, conversation, **params):
    return client.get(reverse("conversation", args=[conversation.id]), params)


def sidebar(response) -> str:
    """The sidebar's list as text (search marks and all other tags removed)."""
    content = response.content.decode()
    start = content.index('id="conversation-list"')
    return re.sub(r"<[^>]+>", "", content[start : content.index('id="sidebar-more"', start)])


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def named(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]


# --- accounts ----------------------------------------------------------------


def test_anonymous_visitor_of_home_lands_on_the_login_page(client):
    rows.user("someone")  # not a fresh install (that shows the setup page)
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert b'name="password"' in response.content


@pytest.mark.parametrize(
    "name", ["conversation", "conversation-messages", "conversation-export-md", "conversation-delete"]
)
def test_chat_pages_require_login(client, name):
    conversation = rows.conversation(rows.user("owner"))
    response = client.get(reverse(name, args=[conversation.id]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_with_the_right_password_opens_the_app(client):
    get_user_model().objects.create_user("carol", password=PASSWORD)
    response = client.post(reverse("login"), {"username": "carol", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_logout_is_post_only(client, alice):
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302
    assert client.get("/")["Location"].startswith(reverse("login"))


# --- conversations -------------------------------------------------------------


def test_home_opens_the_latest_unarchived_conversation(client, alice):
    rows.conversation(alice, title="old")
    latest = rows.conversation(alice, title="latest")
    rows.conversation(alice, title="archived", archived=True)
    Conversation.objects.filter(pk=latest.pk).update(updated_at=latest.updated_at.replace(year=2100))
    assert client.get("/")["Location"] == reverse("conversation", args=[latest.id])


def test_home_of_someone_with_no_conversation_opens_the_new_chat_page(client, alice):
    assert client.get("/")["Location"] == reverse("conversation-new")
    assert not Conversation.objects.exists()


def test_new_chat_page_stores_nothing(client, alice):
    # (Sending the first message: conversations/tests/test_new_chat.py.)
    for _ in range(3):
        assert client.get(reverse("conversation-new")).status_code == 200
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "name",
    [
        "conversation",
        "conversation-messages",
        "conversation-export-md",
        "conversation-export-json",
        "conversation-delete",
    ],
)
def test_someone_elses_conversation_is_404_on_every_page(client, alice, name):
    theirs = rows.conversation(rows.user("mallory"))
    assert client.get(reverse(name, args=[theirs.id])).status_code == 404


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("conversation-rename", {"title": "mine now"}),
        ("conversation-archive", {"archived": "true"}),
        ("conversation-settings", {"model": "", "system_prompt": "x"}),
        ("conversation-delete", {}),
    ],
)
def test_someone_elses_conversation_is_404_on_every_change(client, alice, name, data):
    theirs = rows.conversation(rows.user("mallory"), title="theirs")
    assert client.post(reverse(name, args=[theirs.id]), data).status_code == 404
    theirs.refresh_from_db()
    assert (theirs.title, theirs.archived, theirs.system_prompt) == ("theirs", False, "")


def test_sidebar_lists_my_conversations_newest_first(client, alice):
    first = rows.conversation(alice, title="First chat")
    second = rows.conversation(alice, title="Second chat")
    rows.conversation(rows.user("mallory"), title="Mallory chat")
    Conversation.objects.filter(pk=second.pk).update(updated_at=first.updated_at.replace(year=2100))
    listed = sidebar(page(client, first))
    assert "Mallory chat" not in listed
    assert listed.index("Second chat") < listed.index("First chat")


def test_sidebar_search_matches_titles_and_message_content(client, alice):
    here = rows.conversation(alice, title="Here")
    rows.conversation(alice, title="Pasta recipes")
    by_content = rows.conversation(alice, title="Untitled thoughts")
    rows.message(by_content, "how long do I boil pasta?")
    rows.conversation(alice, title="Taxes")
    listed = sidebar(page(client, here, q="pasta"))
    assert "Pasta recipes" in listed
    assert "Untitled thoughts" in listed
    assert "Taxes" not in listed


def test_rename_changes_the_title(client, alice):
    conversation = rows.conversation(alice, title="before")
    response = client.post(reverse("conversation-rename", args=[conversation.id]), {"title": "  after  "})
    assert response["Location"] == reverse("conversation", args=[conversation.id])
    conversation.refresh_from_db()
    assert conversation.title == "after"


def test_rename_from_the_page_answers_json(client, alice):
    conversation = rows.conversation(alice, title="before")
    response = client.post(
        reverse("conversation-rename", args=[conversation.id]),
        {"title": "after"},
        headers={"Accept": "application/json"},
    )
    assert response.json()["conversation"]["title"] == "after"


def test_rename_refuses_an_empty_title(client, alice):
    conversation = rows.conversation(alice, title="before")
    response = client.post(
        reverse("conversation-rename", args=[conversation.id]),
        {"title": "   "},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 400
    assert "title" in response.json()["errors"]


def test_rename_redirect_never_leaves_the_site(client, alice):
    conversation = rows.conversation(alice)
    response = client.post(
        reverse("conversation-rename", args=[conversation.id]),
        {"title": "t", "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("conversation", args=[conversation.id])


def test_delete_asks_for_confirmation_before_deleting(client, alice):
    conversation = rows.conversation(alice, title="Keep me?")
    response = client.get(reverse("conversation-delete", args=[conversation.id]))
    assert b"cannot be undone" in response.content
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_confirmed_delete_removes_the_conversation_and_its_messages(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "hi", "hello")
    response = client.post(reverse("conversation-delete", args=[conversation.id]))
    assert response["Location"] == reverse("home")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


def test_archived_conversations_leave_the_sidebar_for_the_archive_page(client, alice):
    here = rows.conversation(alice, title="Current")
    old = rows.conversation(alice, title="Old project")
    client.post(reverse("conversation-archive", args=[old.id]), {"archived": "true"})
    assert "Old project" not in sidebar(page(client, here))
    assert "Old project" in sidebar(client.get(reverse("archived")))


def test_unarchive_brings_a_conversation_back(client, alice):
    old = rows.conversation(alice, title="Old project", archived=True)
    client.post(reverse("conversation-archive", args=[old.id]), {})
    old.refresh_from_db()
    assert old.archived is False


def test_settings_change_model_and_system_prompt(client, alice, models_on_offer):
    conversation = rows.conversation(alice)
    client.post(
        reverse("conversation-settings", args=[conversation.id]),
        {"model": "large-model", "system_prompt": "Answer in French."},
    )
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("large-model", "Answer in French.")


def test_settings_refuse_a_model_the_provider_does_not_offer(client, alice, models_on_offer):
    conversation = rows.conversation(alice)
    response = client.post(
        reverse("conversation-settings", args=[conversation.id]),
        {"model": "gpt-secret", "system_prompt": ""},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.model == ""


def test_model_picker_offers_the_providers_models(client, alice, models_on_offer):
    content = page(client, rows.conversation(alice)).content.decode()
    assert '<option value="small-model">' in content
    assert '<option value="large-model">' in content


def test_page_says_plainly_when_no_model_is_configured(client, alice, no_provider):
    content = page(client, rows.conversation(alice)).content.decode()
    assert "No model is configured." in content
    assert "Set LLM_BASE_URL." in content


def test_model_list_falls_back_to_the_configured_model_when_the_provider_fails(monkeypatch):
    class Unreachable:
        model = "configured-model"

        async def list_models(self):
            raise OSError("connection refused")

    monkeypatch.setattr(llm, "get_provider", lambda: Unreachable())
    cache.delete(views.MODELS_CACHE_KEY)
    assert REAL_AVAILABLE_MODELS() == ["configured-model"]
    cache.delete(views.MODELS_CACHE_KEY)


# --- the chat page ---------------------------------------------------------------


def test_history_is_rendered_as_sanitised_markdown(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(
        conversation,
        "show me",
        "## Plan\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "[docs](https://example.com)\n\n```python\nprint('hi')\n```\n",
    )
    content = page(client, conversation).content.decode()
    assert "<h2>Plan</h2>" in content
    assert "<li>one</li>" in content
    assert "<table>" in content
    assert 'rel="noopener noreferrer nofollow"' in content
    assert '<span class="nb">print</span>' in content  # highlighted by Pygments


def test_model_output_with_html_and_script_is_inert_on_the_page(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(
        conversation,
        "x",
        "<img src=x onerror=alert(1)><script>alert(2)</script> [x](javascript:alert(3))",
    )
    content = page(client, conversation).content.decode()
    body = content[content.index('id="messages"') : content.index('id="messages-empty"')]
    assert "<script>" not in body
    assert "<img" not in body
    assert 'href="javascript:' not in body
    assert "&lt;script&gt;" in body


def test_images_in_model_output_become_links_not_requests(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "q", "![pixel](https://evil.example/p.png?secret=1)")
    content = page(client, conversation).content.decode()
    assert "<img" not in content
    assert (
        '<a href="https://evil.example/p.png?secret=1" rel="noopener noreferrer nofollow">[image: pixel]</a>'
        in content
    )


def test_user_messages_are_shown_as_escaped_text(client, alice):
    conversation = rows.conversation(alice)
    rows.message(conversation, "<b>bold?</b>\nsecond line")
    content = page(client, conversation).content.decode()
    assert "&lt;b&gt;bold?&lt;/b&gt;\nsecond line" in content


def test_reply_shows_token_counts_and_time_to_first_token(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "q", "a", prompt_tokens=12, completion_tokens=34, ttft_ms=85)
    assert "12 in · 34 out · first token 85 ms" in page(client, conversation).content.decode()


def test_failed_reply_keeps_its_text_and_offers_retry(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(
        conversation,
        "q",
        "partial answer",
        status=Message.Status.FAILED,
        error="The model did not answer in time.",
    )
    tags = Tags(page(client, conversation).content.decode())
    error_lines = [a for a in tags.named("p") if a.get("class") == "message__error" and "hidden" not in a]
    assert len(error_lines) == 1
    assert any(a.get("data-action") == "retry" for a in tags.named("button"))
    assert "partial answer" in page(client, conversation).content.decode()


def test_streaming_reply_carries_its_offset_and_renders_finished_blocks(client, alice):
    conversation = rows.conversation(alice)
    text = "# Done block\n\nunfinished *tail"
    _, reply = rows.exchange(conversation, "q", text, status=Message.Status.STREAMING)
    tags = Tags(page(client, conversation).content.decode())
    article = next(a for a in tags.named("article") if a.get("data-message-id") == str(reply.id))
    assert article["data-status"] == "streaming"
    assert article["data-offset"] == str(len(text))
    body = next(a for a in tags.named("div") if a.get("data-rendered-end"))
    assert body["data-rendered-end"] == str(len("# Done block\n\n"))
    assert body["aria-busy"] == "true"
    content = page(client, conversation).content.decode()
    assert "<h1>Done block</h1>" in content
    assert '<span class="message__tail">unfinished *tail</span>' in content


def test_only_the_current_branch_is_shown(client, alice):
    conversation = rows.conversation(alice)
    asked, _ = rows.exchange(conversation, "question", "first answer")
    rows.message(conversation, "second answer", role=Message.Role.ASSISTANT, parent=asked)
    content = page(client, conversation).content.decode()
    assert "second answer" in content
    assert "first answer" not in content


def test_long_history_shows_the_latest_page_with_load_earlier(client, alice, settings):
    settings.CHAT_HISTORY_PAGE = 4
    conversation = rows.conversation(alice)
    for n in range(3):
        rows.exchange(conversation, f"question {n}", f"answer {n}")
    content = page(client, conversation).content.decode()
    assert "question 0" not in content and "answer 0" not in content
    assert "question 1" in content and "answer 2" in content
    load_earlier = next(a for a in Tags(content).named("button") if a.get("id") == "load-earlier")
    assert "hidden" not in load_earlier


def test_short_history_hides_load_earlier(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "q", "a")
    load_earlier = next(
        a
        for a in Tags(page(client, conversation).content.decode()).named("button")
        if a.get("id") == "load-earlier"
    )
    assert "hidden" in load_earlier


def test_earlier_messages_come_as_a_rendered_fragment(client, alice, settings):
    settings.CHAT_HISTORY_PAGE = 4
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "question 0", "**answer 0**")
    second_q, _ = rows.exchange(conversation, "question 1", "answer 1")
    rows.exchange(conversation, "question 2", "answer 2")
    response = client.get(reverse("conversation-messages", args=[conversation.id]), {"before": second_q.id})
    content = response.content.decode()
    assert "question 0" in content and "<strong>answer 0</strong>" in content
    assert "question 1" not in content
    assert response["X-Has-Earlier"] == "0"
    assert "<html" not in content


def test_catch_up_fragment_holds_only_newer_messages(client, alice):
    conversation = rows.conversation(alice)
    _, seen = rows.exchange(conversation, "old question", "old answer")
    rows.exchange(conversation, "new question", "new answer")
    response = client.get(reverse("conversation-messages", args=[conversation.id]), {"after": seen.id})
    content = response.content.decode()
    assert "new question" in content and "new answer" in content
    assert "old question" not in content
    assert response["X-History-Reset"] == "0"


def test_catch_up_from_a_message_off_the_branch_resets_to_the_latest_page(client, alice):
    conversation = rows.conversation(alice)
    asked, old_reply = rows.exchange(conversation, "question", "old reply")
    rows.message(conversation, "new reply", role=Message.Role.ASSISTANT, parent=asked)
    response = client.get(reverse("conversation-messages", args=[conversation.id]), {"after": old_reply.id})
    assert response["X-History-Reset"] == "1"
    assert "question" in response.content.decode() and "new reply" in response.content.decode()


# --- exports ----------------------------------------------------------------------


def test_markdown_export_downloads_the_conversation(client, alice):
    conversation = rows.conversation(alice, title="Trip plan")
    rows.exchange(conversation, "Where to?", "Lisbon.")
    response = client.get(reverse("conversation-export-md", args=[conversation.id]))
    assert response["Content-Type"].startswith("text/markdown")
    assert re.match(r'attachment; filename="trip-plan-[0-9a-f]{8}\.md"', response["Content-Disposition"])
    assert "Where to?" in response.content.decode() and "Lisbon." in response.content.decode()


def test_json_export_downloads_the_conversation(client, alice):
    conversation = rows.conversation(alice, title="Trip plan")
    rows.exchange(conversation, "Where to?", "Lisbon.")
    response = client.get(reverse("conversation-export-json", args=[conversation.id]))
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert [m["content"] for m in data["messages"]] == ["Where to?", "Lisbon."]


# --- forms and page hygiene --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("conversation-new", {}),
        ("conversation-rename", {"title": "x"}),
        ("conversation-archive", {"archived": "true"}),
        ("conversation-settings", {"model": "", "system_prompt": "x"}),
        ("conversation-delete", {}),
    ],
)
def test_changes_without_a_csrf_token_are_refused(alice, name, data):
    conversation = rows.conversation(alice, title="unchanged")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    args = [] if name == "conversation-new" else [conversation.id]
    assert client.post(reverse(name, args=args), data).status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "unchanged"


def test_every_post_form_on_the_chat_page_carries_a_csrf_token(client, alice):
    content = page(client, rows.conversation(alice)).content.decode()
    forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", content, re.S)
    assert len(forms) >= 5
    assert all("csrfmiddlewaretoken" in form for form in forms)


def test_chat_page_has_no_inline_script_or_style(client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "q", "`code` and **bold**")
    tags = Tags(page(client, conversation).content.decode())
    assert all(attrs.get("src") for attrs in tags.named("script"))
    assert not tags.named("style")
    assert not [attrs for _, attrs in tags.tags if "style" in attrs]
    assert not [attrs for _, attrs in tags.tags if any(name.startswith("on") for name in attrs)]


@pytest.mark.parametrize("url_name", ["conversation", "login", "signup"])
def test_every_control_has_a_label(client, alice, url_name):
    if url_name == "conversation":
        url = reverse("conversation", args=[rows.conversation(alice).id])
    else:
        client.logout()
        url = reverse(url_name)
    tags = Tags(client.get(url).content.decode())
    labelled = {attrs.get("for") for attrs in tags.named("label")}
    controls = [
        attrs
        for tag, attrs in tags.tags
        if tag in {"input", "textarea", "select"} and attrs.get("type") not in {"hidden", "submit"}
    ]
    assert controls
    assert all(attrs.get("id") in labelled for attrs in controls), controls


def test_streaming_region_is_a_polite_live_region(client, alice):
    tags = Tags(page(client, rows.conversation(alice)).content.decode())
    messages = next(a for a in tags.named("div") if a.get("id") == "messages")
    assert messages["aria-live"] == "polite"


def test_a_code_block_carries_its_language_label_escaped():
    from conversations.rendering import render_markdown

    html = render_markdown("```python\nprint(1)\n```\n")
    assert '<div class="code-block__lang">python</div>' in html
    hostile = render_markdown('```"><img src=x onerror=alert(1)>\nx\n```\n')
    assert "code-block__lang" not in hostile and "<img" not in hostile


def test_the_header_picker_saves_the_model_without_touching_the_system_prompt(client, alice, monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: ["m-1", "m-2"])
    conversation = rows.conversation(alice, system_prompt="Be brief.")
    client.post(reverse("conversation-settings", args=[conversation.id]), {"model": "m-2"})
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("m-2", "Be brief.")
    client.post(reverse("conversation-settings", args=[conversation.id]), {"system_prompt": ""})
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("m-2", "")


def test_the_chat_page_shows_the_model_picker_and_the_system_prompt_chip(client, alice, monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: ["m-1"])
    conversation = rows.conversation(alice, system_prompt="Be brief.")
    html = client.get(reverse("conversation", args=[conversation.id])).content.decode()
    header = html.split('<header class="chat__header">')[1].split("</header>")[0].split("<details")[0]
    assert 'id="id_model"' in header
    assert 'id="system-prompt-indicator"' in header and 'title="Be brief."' in header
    assert "maxlength" not in html.split('id="composer-input"')[1].split(">")[0]
