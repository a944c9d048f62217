"""Personal API keys: shown once, stored as a hash, listed with last use, revoked by owner, admin or command."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.models import ApiKey, hash_key
from api.services import KeyRefused, api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


def make_user(username: str = "alice", **extra):
    return get_user_model().objects.create_user(username=username, password=None, **extra)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the model and services ----------------------------------------------------------------


def test_a_key_is_stored_as_its_sha256_and_a_short_prefix_only():
    api_key, key = api_key_create(user=make_user(), name="laptop")
    assert key.startswith("sk-chat-") and len(key) > 40
    row = ApiKey.objects.values().get(pk=api_key.pk)
    assert row["key_hash"] == hash_key(key)
    assert key not in str(row)
    assert row["prefix"] == key[: len(row["prefix"])] and len(row["prefix"]) == 16


def test_authenticate_finds_the_key_and_records_its_use():
    user = make_user()
    api_key, key = api_key_create(user=user, name="laptop")
    assert api_key_authenticate(key=key) == api_key
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None


@pytest.mark.parametrize(
    "mangle", [lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), lambda k: k[:16], lambda k: ""]
)
def test_a_wrong_key_with_a_right_prefix_is_refused(mangle):
    _, key = api_key_create(user=make_user(), name="laptop")
    assert api_key_authenticate(key=mangle(key)) is None


def test_revoked_keys_and_deactivated_users_are_refused():
    user = make_user()
    api_key, key = api_key_create(user=user, name="one")
    _, other_key = api_key_create(user=user, name="two")
    api_key.revoke()
    assert api_key_authenticate(key=key) is None
    user.is_active = False
    user.save()
    assert api_key_authenticate(key=other_key) is None


def test_last_use_is_written_at_most_once_a_minute():
    api_key, key = api_key_create(user=make_user(), name="laptop")
    api_key_authenticate(key=key)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    api_key_authenticate(key=key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    api_key_authenticate(key=key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first - timedelta(seconds=1)


def test_names_are_required_and_unique_among_live_keys():
    user = make_user()
    with pytest.raises(KeyRefused):
        api_key_create(user=user, name="  ")
    first, _ = api_key_create(user=user, name="laptop")
    with pytest.raises(KeyRefused):
        api_key_create(user=user, name="laptop")
    first.revoke()
    api_key_create(user=user, name="laptop")  # a revoked key's name is free again
    api_key_create(user=make_user("bob"), name="laptop")  # and names are per user


# --- the settings page ---------------------------------------------------------------------


def test_the_settings_page_creates_a_key_and_shows_it_exactly_once():
    user = make_user()
    client = signed_in(user)
    response = client.post(reverse("api-key-create"), {"name": "notebook"})
    assert response.status_code == 302
    api_key = ApiKey.objects.get(user=user)
    shown = client.get(reverse("account-settings")).content.decode()
    key = shown.split('id="api-key-value"')[1].split('value="')[1].split('"')[0]
    assert key.startswith(api_key.prefix) and api_key.matches(key)
    again = client.get(reverse("account-settings")).content.decode()
    assert key not in again
    assert "notebook" in again and api_key.prefix in again
    assert "never" in again  # not used yet


def test_the_settings_page_lists_last_use_and_revokes():
    user = make_user()
    api_key, key = api_key_create(user=user, name="ci")
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    client = signed_in(user)
    page = client.get(reverse("account-settings")).content.decode()
    assert f"{timezone.now():%Y-%m-%d}" in page
    response = client.post(reverse("api-key-revoke", args=[api_key.pk]))
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert api_key_authenticate(key=key) is None
    assert "is revoked" in client.get(reverse("account-settings")).content.decode()


def test_another_users_key_cannot_be_revoked_and_answers_as_missing():
    alices, _ = api_key_create(user=make_user("alice"), name="alices-laptop")
    mallory = signed_in(make_user("mallory"))
    foreign = mallory.post(reverse("api-key-revoke", args=[alices.pk]))
    missing = mallory.post(reverse("api-key-revoke", args=[alices.pk + 1000]))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert ApiKey.objects.get(pk=alices.pk).revoked_at is None
    assert "alices-laptop" not in mallory.get(reverse("account-settings")).content.decode()


def test_a_refused_name_is_explained_on_the_page():
    user = make_user()
    client = signed_in(user)
    client.post(reverse("api-key-create"), {"name": ""})
    assert "Give the key a name." in client.get(reverse("account-settings")).content.decode()
    assert not ApiKey.objects.exists()


def test_the_key_pages_need_a_signed_in_user_and_post():
    assert Client().post(reverse("api-key-create"), {"name": "x"}).status_code == 302
    assert signed_in(make_user()).get(reverse("api-key-create")).status_code == 405
    assert not ApiKey.objects.exists()


# --- the command ---------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("api_key", *args, stdout=out)
    return out.getvalue()


def test_the_command_creates_a_key_printed_alone_on_the_last_line():
    user = make_user()
    output = run("create", "alice", "--name", "deploy")
    key = output.rstrip("\n").splitlines()[-1]
    assert api_key_authenticate(key=key).user == user


def test_the_command_lists_and_revokes_without_ever_printing_a_key():
    make_user()
    key = run("create", "alice", "--name", "deploy").splitlines()[-1]
    listing = run("list")
    assert "deploy" in listing and key[:16] in listing and key not in listing
    run("revoke", key[:16])
    assert api_key_authenticate(key=key) is None
    assert "revoked" in run("list", "alice")
    with pytest.raises(CommandError):
        run("revoke", key[:16])
    with pytest.raises(CommandError):
        run("create", "nobody", "--name", "x")


# --- the admin -----------------------------------------------------------------------------


def test_admins_see_keys_without_the_secret_and_revoke_them():
    admin = make_user("root", is_staff=True, is_superuser=True)
    api_key, key = api_key_create(user=make_user(), name="laptop")
    client = signed_in(admin)
    listing = client.get(reverse("admin:api_apikey_changelist"))
    assert listing.status_code == 200
    assert api_key.prefix in listing.content.decode() and key not in listing.content.decode()
    response = client.post(
        reverse("admin:api_apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(api_key.pk)]},
    )
    assert response.status_code == 302
    assert api_key_authenticate(key=key) is None
    assert client.get(reverse("admin:api_apikey_add")).status_code == 403


def test_staff_who_may_only_view_keys_cannot_revoke_them():
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    api_key, key = api_key_create(user=make_user(), name="laptop")
    client = signed_in(viewer)
    assert client.get(reverse("admin:api_apikey_changelist")).status_code == 200
    client.post(
        reverse("admin:api_apikey_changelist"), {"action": "revoke", "_selected_action": [str(api_key.pk)]}
    )
    assert api_key_authenticate(key=key) is not None


# --- the usage ledger in the admin ------------------------------------------------------------


def test_the_usage_page_splits_tokens_and_calls_by_source_and_key():
    from conversations.models import UsageEvent

    user = make_user()
    UsageEvent.objects.create(user=user, provider="fake", status="ok", prompt_tokens=100)
    UsageEvent.objects.create(
        user=user, provider="fake", status="ok", prompt_tokens=7, source="api", api_key_name="notebook"
    )
    UsageEvent.objects.create(
        user=user, provider="fake", status="ok", prompt_tokens=5, source="api", api_key_name="notebook"
    )
    page = signed_in(make_user("root", is_staff=True, is_superuser=True)).get(reverse("admin:usage"))
    table = page.content.decode().split('id="usage-by-source"')[1].split("</table>")[0]
    rows = [
        re.findall(r"<td[^>]*>(.*?)</td>", re.sub(r"</?a[^>]*>", "", row)) for row in table.split("<tr>")[2:]
    ]
    assert [tuple(r[:4]) for r in rows] == [
        ("api", "notebook", "12", "2"),
        ("chat", "-", "100", "1"),
    ]
