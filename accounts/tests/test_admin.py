"""The admin for people and access: each group's models, each user's limits, invites."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import MEMBER_GROUP, GroupModelAccess, Invite, Profile

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root"))
    return client


def test_an_admin_chooses_the_models_of_a_group_on_its_page(admin_client):
    group = Group.objects.create(name="interns")
    url = reverse("admin:auth_group_change", args=[group.pk])
    assert b"Models this group may use" in admin_client.get(url).content
    response = admin_client.post(
        url,
        {
            "name": "interns",
            "model_access-TOTAL_FORMS": "1",
            "model_access-INITIAL_FORMS": "0",
            "model_access-0-model": "small-model",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert list(GroupModelAccess.objects.filter(group=group).values_list("model", flat=True)) == [
        "small-model"
    ]


def test_an_admin_sets_a_users_own_limits_on_the_user_page(admin_client):
    user = User.objects.create_user("mia")
    url = reverse("admin:auth_user_change", args=[user.pk])
    page = admin_client.get(url).content.decode()
    assert "Limits and preferences" in page and "daily_token_budget" in page
    member = Group.objects.get(name=MEMBER_GROUP)
    response = admin_client.post(
        url,
        {
            "username": "mia",
            "is_active": "on",
            "groups": [str(member.pk)],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "profile-TOTAL_FORMS": "1",
            "profile-INITIAL_FORMS": "0",
            "profile-MAX_NUM_FORMS": "1",
            "profile-0-daily_token_budget": "5000",
            "profile-0-concurrent_replies": "1",
            "profile-0-email_verified": "on",
            "profile-0-theme": "system",
            "profile-0-user": str(user.pk),
        },
    )
    assert response.status_code == 302, response.content[:3000]
    profile = Profile.objects.get(user=user)
    assert (profile.daily_token_budget, profile.concurrent_replies) == (5000, 1)


def test_revoking_invites_ends_the_unused_ones(admin_client):
    open_invite, _ = services.invite_create(created_by=None)
    response = admin_client.post(
        reverse("admin:accounts_invite_changelist"),
        {"action": "revoke", "_selected_action": [str(open_invite.pk)]},
    )
    assert response.status_code == 302
    assert not Invite.objects.get(pk=open_invite.pk).usable
    assert Invite.objects.get(pk=open_invite.pk).expires_at <= timezone.now()
