"""Access control: every page, export, fragment, socket and admin view checks who is asking.

Routes are enumerated from the URL resolver, so a view added without an
ownership check (or without being classified here) fails this module:
another user's conversation answers exactly as a missing one (404, same
body), the admin is for staff only, CSRF holds on every state-changing
request, and sockets refuse strangers, foreign origins and other people's ids.
"""

from __future__ import annotations

import json
import uuid

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message, UsageEvent
from conversations.tests.conftest import open_socket
from tests.security.conftest import close_code, logged_in_client, make_user, session_cookie, ws_open
from tests.security.routes import (
    ADMIN_ROUTES,
    CONVERSATION_ROUTES,
    ROUTES,
    admin_object_ids,
    every_url,
    object_values,
)

db = database_sync_to_async

SECRET = "alice-secret-7f3a"


# Every other route, and why it needs no ownership check. A new route must be added here
# (with its reason) or carry a conversation id and pass the ownership tests below.
OWNER_FREE_ROUTES = {
    "health": "liveness, no data",
    "health/deps": "dependency status, no user data (test_posture holds: no secrets)",
    "metrics": "counters without user data",
    "accounts/login/": "the login form",
    "accounts/logout/": "POST only, ends one's own session",
    "accounts/signup/": "creates an account (SIGNUP_MODE decides)",
    "accounts/invite/<str:token>/": "an invite link: the token is the credential (hashed, works once)",
    "accounts/setup/": "the first admin of a fresh install; 404 once any account exists",
    "accounts/oidc/authenticate/": "sends the visitor to the identity provider",
    "accounts/oidc/callback/": "the identity provider's answer (state, nonce and PKCE checked)",
    "accounts/password/reset/": "asks for a reset email (same answer whether the address exists)",
    "accounts/password/reset/sent/": "a static notice",
    "accounts/password/reset/<uidb64>/<token>/": "the reset link: the signed token is the credential",
    "accounts/password/reset/done/": "a static notice",
    "settings/password/": "changes one's own password (needs the current one)",
    "": "redirects to one's own latest conversation",
    "archived/": "lists one's own archived conversations",
    "c/new/": "creates a conversation owned by the requester",
    "conversations/": "the sidebar fragment: lists and searches one's own conversations",
    "settings/": "the requester's own settings page",
    "settings/preferences/": "saves the requester's own preferences, POST with CSRF",
    "settings/data/export/": "downloads the requester's own data (accounts/tests/test_data_lifecycle.py)",
    "settings/delete-account/": "deletes the requester's own account, password-confirmed, POST with CSRF",
    "settings/api-keys/": "creates a key for the requester",
    "settings/api-keys/<int:key_id>/revoke/": "revokes one's own key; another's answers 404 (api/tests)",
    "v1/models": "Bearer key only: the key's own user (tests/api)",
    "v1/chat/completions": "Bearer key only: the key's own user (tests/api)",
}

# Authenticated by an API key alone: a session cookie carries no weight there, so CSRF
# does not apply and a request without a key is refused with 401 (tests/api holds the rest).
BEARER_ROUTES = {"v1/models", "v1/chat/completions"}


def test_every_route_either_takes_a_conversation_id_or_is_known_to_need_no_owner():
    unclassified = [r.path for r in ROUTES if r not in CONVERSATION_ROUTES and r not in ADMIN_ROUTES]
    assert sorted(unclassified) == sorted(OWNER_FREE_ROUTES), (
        "a new route: give it an ownership check and a test, or classify it in OWNER_FREE_ROUTES"
    )
    assert len(CONVERSATION_ROUTES) >= 8


# --- pages, fragments and exports --------------------------------------------------------


@pytest.fixture
def alices_chat(db):
    alice = make_user("alice")
    conversation = Conversation.objects.create(owner=alice, title=f"Plans {SECRET}", system_prompt=SECRET)
    asked = Message.objects.create(conversation=conversation, role="user", content=f"my {SECRET}")
    Message.objects.create(
        conversation=conversation, role="assistant", content=f"your {SECRET}", status="complete", parent=asked
    )
    UsageEvent.objects.create(user=alice, conversation=conversation, provider="fake", model="m", status="ok")
    return conversation


def snapshot(conversation: Conversation) -> tuple:
    conversation = Conversation.objects.filter(pk=conversation.pk).first()
    if conversation is None:
        return ("deleted",)
    return (
        conversation.title,
        conversation.model,
        conversation.system_prompt,
        conversation.archived,
        conversation.messages.count(),
    )


@pytest.mark.parametrize("route", CONVERSATION_ROUTES, ids=lambda r: r.label)
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_users_conversation_answers_exactly_as_a_missing_one(alices_chat, route, method):
    mallory = logged_in_client(make_user("mallory"))
    before = snapshot(alices_chat)
    data = {"title": "mine now", "archived": "true", "model": "", "system_prompt": "pwned"}
    send = getattr(mallory, method)
    theirs = send(route.url(conversation_id=str(alices_chat.id)), data if method == "post" else {})
    missing = send(route.url(conversation_id=str(uuid.uuid4())), data if method == "post" else {})

    assert theirs.status_code in {404, 405}
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
    assert SECRET.encode() not in theirs.content
    assert snapshot(alices_chat) == before


@pytest.mark.parametrize("route", CONVERSATION_ROUTES, ids=lambda r: r.label)
def test_every_conversation_route_checks_ownership_on_some_method(alices_chat, route):
    mallory = logged_in_client(make_user("mallory"))
    url = route.url(conversation_id=str(alices_chat.id))
    assert 404 in {mallory.get(url).status_code, mallory.post(url).status_code}


@pytest.mark.parametrize("route", CONVERSATION_ROUTES, ids=lambda r: r.label)
def test_anonymous_visitors_are_sent_to_log_in_and_see_nothing(alices_chat, route):
    client = Client()
    url = route.url(conversation_id=str(alices_chat.id))
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
        assert SECRET.encode() not in response.content


def test_history_fragment_with_another_users_message_ids_shows_only_ones_own(alices_chat):
    mallory = make_user("mallory")
    mine = Conversation.objects.create(owner=mallory)
    Message.objects.create(conversation=mine, role="user", content="mallory's own words")
    alices_message = alices_chat.messages.first()
    client = logged_in_client(mallory)
    url = reverse("conversation-messages", args=[mine.id])
    for params in ({"before": alices_message.id}, {"after": alices_message.id}, {"before": "not-a-uuid"}):
        response = client.get(url, params)
        assert response.status_code == 200
        assert SECRET.encode() not in response.content


def test_search_never_finds_another_users_conversations(alices_chat):
    mallory = make_user("mallory")
    mine = Conversation.objects.create(owner=mallory)
    client = logged_in_client(mallory)
    for url in (reverse("archived"), reverse("conversation", args=[mine.id])):
        response = client.get(url, {"q": SECRET})
        assert response.status_code == 200
        assert f"Plans {SECRET}".encode() not in response.content  # (the query itself is echoed back)
        assert str(alices_chat.id).encode() not in response.content


# --- CSRF ---------------------------------------------------------------------------------


def test_every_state_changing_request_without_a_csrf_token_is_refused(alices_chat):
    admin = make_user("root", is_staff=True, is_superuser=True)
    alices_chat.owner = admin  # the owner and a superuser: nothing else stands in the way
    alices_chat.save()
    client = logged_in_client(admin, enforce_csrf_checks=True)
    before = snapshot(alices_chat)
    refused = {}
    bearer = {route.label for route in ROUTES if route.path in BEARER_ROUTES}
    for label, url in every_url(alices_chat):
        for method in ("post", "put", "patch", "delete"):
            refused[f"{method.upper()} {label}"] = getattr(client, method)(url).status_code
    expected = {k: 401 if k.split(" ", 1)[1] in bearer else 403 for k in refused}
    assert {k: v for k, v in refused.items() if v != expected[k]} == {}
    assert snapshot(alices_chat) == before


def test_a_form_post_with_a_valid_token_from_a_foreign_origin_is_refused(alices_chat):
    client = logged_in_client(alices_chat.owner, enforce_csrf_checks=True)
    client.get(reverse("conversation", args=[alices_chat.id]))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    url = reverse("conversation-rename", args=[alices_chat.id])
    foreign = client.post(
        url, {"title": "x", "csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://evil.example"
    )
    assert foreign.status_code == 403
    same = client.post(
        url, {"title": "renamed", "csrfmiddlewaretoken": token}, HTTP_ORIGIN="http://testserver"
    )
    assert same.status_code == 302
    assert Conversation.objects.get(pk=alices_chat.pk).title == "renamed"


# --- the admin ----------------------------------------------------------------------------


# Open to everyone: the login form, and logging out (of one's own session).
ADMIN_LOGIN_ROUTES = {"login", "logout"}


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_only_staff_reach_any_admin_page(alices_chat, who):
    client = Client() if who == "anonymous" else logged_in_client(make_user("mallory"))
    ids = admin_object_ids(alices_chat)
    reached = {}
    for route in ADMIN_ROUTES:
        if route.name in ADMIN_LOGIN_ROUTES:
            continue
        url = route.url(**object_values(route, ids))
        for response in (client.get(url), client.post(url)):
            location = response.get("Location", "")
            if response.status_code not in {302, 404} or (
                response.status_code == 302 and not location.startswith("/admin/login/")
            ):
                reached[url] = response.status_code
            assert SECRET.encode() not in response.content
    assert reached == {}


def test_non_staff_get_the_admin_login_for_the_admin_and_the_usage_page(alices_chat):
    client = logged_in_client(make_user("mallory"))
    for url in ("/admin/", "/admin/usage/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(f"/admin/login/?next={url}")


def test_staff_without_permissions_see_neither_conversations_nor_usage(alices_chat):
    staff = make_user("intern", is_staff=True)
    client = logged_in_client(staff)
    for url in (
        "/admin/usage/",
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:conversations_conversation_change", args=[alices_chat.id]),
        reverse("admin:conversations_message_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert SECRET.encode() not in response.content
    staff.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    assert client.get("/admin/usage/").status_code == 403  # usage needs its own right


# --- sockets over a real server -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_sockets_refuse_strangers_and_say_the_same_for_foreign_and_missing_ids(chat_server):
    alice = await db(make_user)("alice")
    mallory = await db(make_user)("mallory")
    theirs = await db(Conversation.objects.create)(owner=alice, title=SECRET)
    cookie = await db(session_cookie)(mallory)

    async def first_event(conversation_id, cookie):
        async with await ws_open(chat_server, conversation_id, cookie) as ws:
            return await close_code(ws)

    assert await first_event(theirs.id, None) == 4401
    assert await first_event(theirs.id, cookie) == 4404
    assert await first_event(uuid.uuid4(), cookie) == 4404


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", None, "http://127.0.0.1.evil.example"], ids=str
)
async def test_a_socket_from_a_foreign_or_missing_origin_is_refused_at_the_handshake(chat_server, origin):
    alice = await db(make_user)("alice")
    mine = await db(Conversation.objects.create)(owner=alice)
    cookie = await db(session_cookie)(alice)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await ws_open(chat_server, mine.id, cookie, origin=origin)
    assert refused.value.response.status_code == 403


# --- other people's ids inside frames (in process) -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fake_llm")
@pytest.mark.parametrize("frame_type", ["sync", "message.regenerate", "message.edit"])
async def test_another_users_message_id_in_a_frame_is_not_found_and_reveals_nothing(frame_type):
    alice = await db(make_user)("alice")
    theirs = await db(Conversation.objects.create)(owner=alice)
    asked = await db(Message.objects.create)(conversation=theirs, role="user", content=f"q {SECRET}")
    reply = await db(Message.objects.create)(
        conversation=theirs, role="assistant", content=f"a {SECRET}", status="complete", parent=asked
    )
    mallory = await db(make_user)("mallory")
    mine = await db(Conversation.objects.create)(owner=mallory)
    socket, (ok, _) = await open_socket(mallory, mine.id)
    assert ok
    target = asked if frame_type == "message.edit" else reply
    await socket.send(
        {
            "type": frame_type,
            "message_id": str(target.id),
            "offset": 0,
            "content": "mine",
            "client_id": str(uuid.uuid4()),
        }
    )
    error = await socket.receive()
    assert (error["type"], error["code"]) == ("error", "not_found")
    assert SECRET not in json.dumps(error)
    assert await socket.nothing_more()
    assert await db(theirs.messages.count)() == 2
    assert await db(mine.messages.count)() == 0
