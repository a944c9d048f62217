"""Roles and model access: groups decide the models; profiles override the limits."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts import policy
from accounts.models import ADMIN_GROUP, ANY_MODEL, MEMBER_GROUP, GroupModelAccess, Profile, role_group
from conversations import llm, views
from conversations.models import Conversation

pytestmark = pytest.mark.django_db
User = get_user_model()

MODELS = ["small-model", "large-model"]


@pytest.fixture
def restricted_member():
    """A member whose group grants only small-model."""
    member = role_group(MEMBER_GROUP)
    GroupModelAccess.objects.filter(group=member).delete()
    GroupModelAccess.objects.create(group=member, model="small-model")
    return User.objects.create_user("mia")


def test_a_new_account_is_a_member_who_may_use_every_model():
    user = User.objects.create_user("newbie")
    assert list(user.groups.values_list("name", flat=True)) == [MEMBER_GROUP]
    assert policy.allowed_models(user, MODELS) == MODELS
    assert policy.model_allowed(user, "anything")


def test_a_group_grants_only_its_models(restricted_member):
    assert policy.allowed_models(restricted_member, MODELS) == ["small-model"]
    assert policy.model_allowed(restricted_member, "small-model")
    assert not policy.model_allowed(restricted_member, "large-model")


def test_models_of_several_groups_add_up(restricted_member):
    research = Group.objects.create(name="research")
    GroupModelAccess.objects.create(group=research, model="large-model")
    restricted_member.groups.add(research)
    assert policy.allowed_models(restricted_member, MODELS) == MODELS


def test_superusers_may_use_every_model_and_inactive_users_none(restricted_member):
    root = User.objects.create_superuser("root")
    assert policy.allowed_models(root, MODELS) == MODELS
    restricted_member.is_active = False
    assert policy.allowed_models(restricted_member, MODELS) == []


def test_the_default_model_is_checked_by_its_name(restricted_member, monkeypatch):
    monkeypatch.setattr(policy, "default_model", lambda: "large-model")
    assert not policy.model_allowed(restricted_member, "")
    monkeypatch.setattr(policy, "default_model", lambda: "small-model")
    assert policy.model_allowed(restricted_member, "")


def test_limits_are_the_profile_overrides_else_the_settings(settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    settings.CHAT_CONCURRENT_REPLIES = 3
    user = User.objects.create_user("lim")
    assert policy.user_limits(user) == policy.Limits(daily_tokens=1000, concurrent_replies=3)
    Profile.objects.create(user=user, daily_token_budget=50, concurrent_replies=1)
    assert policy.user_limits(user) == policy.Limits(daily_tokens=50, concurrent_replies=1)


def test_joining_the_admin_group_makes_staff_and_leaving_it_unmakes():
    user = User.objects.create_user("ops")
    admins = Group.objects.get(name=ADMIN_GROUP)
    user.groups.add(admins)
    user.refresh_from_db()
    assert user.is_staff
    admins.user_set.remove(user)
    user.refresh_from_db()
    assert not user.is_staff


def test_the_member_group_grants_every_model_when_made_afresh():
    Group.objects.filter(name=MEMBER_GROUP).delete()
    user = User.objects.create_user("again")
    assert GroupModelAccess.objects.filter(group__name=MEMBER_GROUP, model=ANY_MODEL).exists()
    assert policy.model_allowed(user, "x")


# --- the picker ----------------------------------------------------------------------------


@pytest.fixture
def offered(monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: list(MODELS))
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})
    monkeypatch.setattr(policy, "default_model", lambda: "small-model")


def test_the_picker_offers_only_the_models_of_the_members_groups(client, restricted_member, offered):
    conversation = Conversation.objects.create(owner=restricted_member)
    client.force_login(restricted_member)
    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()
    assert '<option value="small-model"' in page
    assert "large-model" not in page


def test_choosing_a_model_the_group_lacks_is_refused(client, restricted_member, offered):
    conversation = Conversation.objects.create(owner=restricted_member)
    client.force_login(restricted_member)
    response = client.post(
        reverse("conversation-settings", args=[conversation.id]),
        {"model": "large-model", "system_prompt": ""},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.model == ""
