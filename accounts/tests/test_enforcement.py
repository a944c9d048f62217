"""The policy where it bites: sends (services and sockets) refuse a model the user's groups
lack and apply the user's own limits; losing a group closes the user's sockets at once."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from accounts.models import MEMBER_GROUP, GroupModelAccess, Profile, role_group
from conversations import services
from conversations.generation import get_runtime
from conversations.models import Message
from conversations.services import SendRefused
from conversations.tests import rows
from conversations.tests.conftest import make_conversation, make_user
from conversations.tests.test_runtime import _closed_with, _joined, _logged_in_client, _socket_with_cookie

pytestmark = pytest.mark.usefixtures("fake_llm")
db = database_sync_to_async


def send(conversation, user):
    return services.message_send(
        conversation_id=conversation.id, user=user, content="hi", client_id=uuid.uuid4(), worker="tests"
    )


def only_default_model_for_members() -> None:
    member = role_group(MEMBER_GROUP)
    GroupModelAccess.objects.filter(group=member).delete()
    GroupModelAccess.objects.create(group=member, model="fake-model")


@pytest.mark.django_db
def test_a_send_with_a_model_the_group_lacks_is_refused_and_writes_nothing():
    only_default_model_for_members()
    alice = rows.user()
    conversation = rows.conversation(alice, model="large-model")
    with pytest.raises(SendRefused) as refused:
        send(conversation, alice)
    assert refused.value.code == "model_not_allowed"
    assert not Message.objects.filter(conversation=conversation).exists()
    # The model the group grants (here the provider's default) is fine.
    assert send(rows.conversation(alice), alice).created


@pytest.mark.django_db
def test_the_users_own_concurrent_replies_override_applies(settings):
    settings.CHAT_CONCURRENT_REPLIES = 5
    alice = rows.user()
    Profile.objects.create(user=alice, concurrent_replies=1)
    send(rows.conversation(alice), alice)
    with pytest.raises(SendRefused) as refused:
        send(rows.conversation(alice), alice)
    assert refused.value.code == "rate_limited"


@pytest.mark.django_db
def test_the_users_own_daily_budget_override_applies(settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 1_000_000
    alice = rows.user()
    Profile.objects.create(user=alice, daily_token_budget=100)
    rows.usage(alice, prompt_tokens=60, completion_tokens=40)
    with pytest.raises(SendRefused) as refused:
        send(rows.conversation(alice), alice)
    assert refused.value.code == "quota_exceeded"


@pytest.mark.django_db(transaction=True)
async def test_a_socket_send_with_a_model_the_group_lacks_gets_an_error_and_no_reply():
    await db(only_default_model_for_members)()
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user, model="large-model")
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))
    await socket.send({"type": "message.send", "content": "hi", "client_id": str(uuid.uuid4())})
    error = await socket.receive_until("error")
    assert error["code"] == "model_not_allowed"
    assert not await db(Message.objects.filter(conversation=conversation).exists)()
    await socket.communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_removing_a_user_from_a_group_closes_their_sockets():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))
    await _joined(socket)
    await get_runtime().ensure_started()

    await db(lambda: user.groups.remove(role_group(MEMBER_GROUP)))()

    assert await _closed_with(socket) == 4403


@pytest.mark.django_db(transaction=True)
async def test_a_deleted_account_loses_its_sockets():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))
    await get_runtime().ensure_started()
    await db(lambda: type(user).objects.filter(pk=user.pk).first().delete())()
    assert await _closed_with(socket) == 4403


# --- API keys ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_password_change_revokes_the_users_api_keys_and_deactivation_refuses_them():
    from api.services import api_key_authenticate, api_key_create

    alice = rows.user()
    _, first = api_key_create(user=alice, name="laptop")
    assert api_key_authenticate(key=first) is not None
    alice.set_password("a-new-password-for-alice-1")
    alice.save()
    assert api_key_authenticate(key=first) is None

    _, second = api_key_create(user=alice, name="after the change")
    assert api_key_authenticate(key=second) is not None
    alice.is_active = False
    alice.save()
    assert api_key_authenticate(key=second) is None


@pytest.mark.django_db
def test_saving_a_user_without_a_new_password_keeps_their_api_keys():
    from api.services import api_key_authenticate, api_key_create

    alice = rows.user()
    _, key = api_key_create(user=alice, name="laptop")
    alice.first_name = "Alice"
    alice.save()
    assert api_key_authenticate(key=key) is not None
