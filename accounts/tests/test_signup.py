"""Sign-up by policy (open, invite, closed, domains), invites that work once, and the first admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import ADMIN_GROUP, MEMBER_GROUP, Invite

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
User = get_user_model()


@pytest.fixture(autouse=True)
def not_a_fresh_install(request):
    # A fresh install shows the setup page instead; the tests that want one say so.
    if "fresh" not in request.fixturenames:
        User.objects.create_user("existing-admin", is_superuser=True, is_staff=True)


@pytest.fixture
def fresh():
    User.objects.all().delete()


def signup(client, username="bob", url=None, **extra):
    data = {"username": username, "password1": PASSWORD, "password2": PASSWORD, **extra}
    return client.post(url or reverse("signup"), data)


# --- open ----------------------------------------------------------------------------


def test_signup_form_has_username_email_password_and_confirmation(client, settings):
    settings.SIGNUP_MODE = "open"
    content = client.get(reverse("signup")).content.decode()
    for field in ('name="username"', 'name="email"', 'name="password1"', 'name="password2"'):
        assert field in content


def test_open_signup_makes_an_ordinary_member_signed_in(client, settings):
    settings.SIGNUP_MODE = "open"
    response = signup(client)
    assert response.status_code == 302
    bob = User.objects.get(username="bob")
    assert not bob.is_superuser and not bob.is_staff
    assert list(bob.groups.values_list("name", flat=True)) == [MEMBER_GROUP]
    assert client.get("/").status_code == 302  # into a conversation, not the login page
    assert client.get("/")["Location"].startswith("/c/")


def test_nobody_becomes_superuser_by_signing_up(client, settings):
    settings.SIGNUP_MODE = "open"
    User.objects.all().delete()
    User.objects.create_user("someone")
    signup(client, "first-to-arrive")
    assert not User.objects.get(username="first-to-arrive").is_superuser


def test_signup_refuses_mismatched_passwords(client, settings):
    settings.SIGNUP_MODE = "open"
    response = client.post(
        reverse("signup"), {"username": "bob", "password1": PASSWORD, "password2": PASSWORD + "x"}
    )
    assert response.status_code == 200
    assert not User.objects.filter(username="bob").exists()


def test_signup_refuses_an_email_another_account_has(client, settings):
    settings.SIGNUP_MODE = "open"
    User.objects.create_user("alice", email="alice@example.com")
    response = signup(client, email="ALICE@example.com")
    assert b"An account with this email address exists" in response.content
    assert not User.objects.filter(username="bob").exists()


def test_allowed_domains_require_an_email_at_one_of_them(client, settings):
    settings.SIGNUP_MODE = "open"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    assert (
        b"Accounts need an email address at example.com" in signup(client, email="bob@elsewhere.org").content
    )
    assert b"This field is required" in signup(client).content
    assert signup(client, email="bob@example.com").status_code == 302
    assert User.objects.filter(username="bob").exists()


def test_an_address_typed_at_sign_up_is_not_trusted_for_single_sign_on(client, settings):
    settings.SIGNUP_MODE = "open"
    signup(client, email="bob@example.com")
    assert User.objects.get(username="bob").profile.email_verified is False


# --- closed ------------------------------------------------------------------------


def test_closed_signup_is_a_clear_404_and_creates_nobody(client, settings):
    settings.SIGNUP_MODE = "closed"
    response = client.get(reverse("signup"))
    assert response.status_code == 404
    assert b"Sign-up is closed" in response.content
    assert signup(client).status_code == 404
    assert not User.objects.filter(username="bob").exists()


def test_login_page_links_to_signup_only_when_it_is_open(client, settings):
    settings.SIGNUP_MODE = "open"
    assert reverse("signup").encode() in client.get(reverse("login")).content
    for mode in ("invite", "closed"):
        settings.SIGNUP_MODE = mode
        assert reverse("signup").encode() not in client.get(reverse("login")).content


def test_signup_without_a_csrf_token_is_refused(settings):
    settings.SIGNUP_MODE = "open"
    response = signup(Client(enforce_csrf_checks=True))
    assert response.status_code == 403


# --- invites ---------------------------------------------------------------------------


def test_invite_mode_refuses_sign_up_without_a_link(client, settings):
    settings.SIGNUP_MODE = "invite"
    response = signup(client)
    assert response.status_code == 404
    assert b"needs an invite link" in response.content
    assert not User.objects.filter(username="bob").exists()


def test_an_invite_link_works_once(client, settings):
    settings.SIGNUP_MODE = "invite"
    invite, token = services.invite_create(created_by=User.objects.first())
    url = reverse("invite", args=[token])
    assert signup(client, url=url).status_code == 302
    assert User.objects.filter(username="bob").exists()
    invite.refresh_from_db()
    assert invite.used_by.username == "bob" and invite.used_at is not None

    second = signup(Client(), "mallory", url=url)
    assert second.status_code == 404
    assert b"has been used or has expired" in second.content
    assert not User.objects.filter(username="mallory").exists()


def test_an_invite_for_an_address_takes_only_that_address(client, settings):
    settings.SIGNUP_MODE = "invite"
    _, token = services.invite_create(created_by=None, email="carol@example.com")
    url = reverse("invite", args=[token])
    assert b"for another email address" in signup(client, "carol", url=url, email="eve@example.com").content
    assert signup(client, "carol", url=url, email="carol@example.com").status_code == 302
    assert User.objects.get(username="carol").profile.email_verified is True


def test_a_link_nobody_made_or_an_expired_one_is_refused(client, settings):
    settings.SIGNUP_MODE = "invite"
    assert client.get(reverse("invite", args=["made-up-token"])).status_code == 404
    invite, token = services.invite_create(created_by=None)
    Invite.objects.filter(pk=invite.pk).update(expires_at=invite.created_at)
    assert client.get(reverse("invite", args=[token])).status_code == 404


def test_closed_mode_refuses_even_invites(client, settings):
    settings.SIGNUP_MODE = "closed"
    _, token = services.invite_create(created_by=None)
    assert signup(client, url=reverse("invite", args=[token])).status_code == 404
    assert not User.objects.filter(username="bob").exists()


def test_the_database_holds_only_a_hash_of_the_invite_token():
    invite, token = services.invite_create(created_by=None)
    assert token not in invite.token_hash
    assert services.invite_find(token=token) == invite


def test_an_admin_makes_an_invite_in_the_admin_and_sees_its_link_once(client, settings):
    settings.SIGNUP_MODE = "invite"
    admin = User.objects.get(username="existing-admin")
    client.force_login(admin)
    response = client.post(
        reverse("admin:accounts_invite_add"),
        {"email": "", "note": "for dana", "expires_at_0": "2100-01-01", "expires_at_1": "00:00:00"},
        follow=True,
    )
    text = response.content.decode()
    assert "Invite link (shown only now, works once): http://testserver/accounts/invite/" in text
    link = text.split("http://testserver", 1)[1].split()[0].rstrip("<").split("<")[0]
    assert Client().get(link).status_code == 200


# --- the first admin -------------------------------------------------------------------


def test_a_fresh_install_sends_login_and_signup_to_the_setup_page(client, fresh, settings):
    settings.SIGNUP_MODE = "open"
    assert client.get(reverse("login"))["Location"] == reverse("setup")
    assert client.get(reverse("signup"))["Location"] == reverse("setup")


def test_setup_makes_the_admin_account_once(client, fresh, settings):
    settings.SETUP_REQUIRES_TOKEN = False
    response = signup(client, "root", url=reverse("setup"))
    assert response.status_code == 302
    root = User.objects.get(username="root")
    assert root.is_superuser and root.is_staff
    assert set(root.groups.values_list("name", flat=True)) == {ADMIN_GROUP, MEMBER_GROUP}
    # Gone once an account exists.
    assert Client().get(reverse("setup")).status_code == 404
    assert signup(Client(), "late", url=reverse("setup")).status_code == 404
    assert not User.objects.filter(username="late").exists()


def test_setup_in_production_needs_the_token_from_the_log(client, fresh, settings, caplog):
    settings.SETUP_REQUIRES_TOKEN = True
    page = client.get(reverse("setup"))
    assert b"Setup token" in page.content
    refused = signup(client, "root", url=reverse("setup"), setup_token="guess")
    assert b"not the setup token" in refused.content
    assert not User.objects.exists()
    accepted = signup(client, "root", url=reverse("setup"), setup_token=services.setup_token())
    assert accepted.status_code == 302
    assert User.objects.get(username="root").is_superuser


def test_setup_token_command_prints_the_token_only_on_a_fresh_install(fresh):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("setup_token", stdout=out)
    assert out.getvalue().strip() == services.setup_token()
    User.objects.create_user("someone")
    with pytest.raises(CommandError):
        call_command("setup_token")
