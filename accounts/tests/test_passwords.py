"""Login throttling with lockout, password reset by email, password change on the settings page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
NEW_PASSWORD = "another-staple-pony-42"
User = get_user_model()


@pytest.fixture
def carol():
    return User.objects.create_user("carol", email="carol@example.com", password=PASSWORD)


def log_in(client, password, username="carol", **headers):
    return client.post(reverse("login"), {"username": username, "password": password}, **headers)


def test_login_with_the_right_password_opens_the_app(client, carol):
    response = log_in(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_ten_wrong_passwords_lock_the_account_with_a_message(client, carol, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200
    locked = log_in(client, "wrong")
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content
    # Even the right password is refused while locked, from anywhere.
    assert log_in(Client(), PASSWORD, REMOTE_ADDR="10.9.9.9").status_code == 429


def test_nine_wrong_passwords_do_not_lock_and_a_success_starts_the_count_again(client, carol, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302


def test_a_password_reset_clears_the_lockout(client, carol, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 429
    carol.set_password(NEW_PASSWORD)
    carol.save()
    assert log_in(Client(), NEW_PASSWORD).status_code == 302


def test_the_client_address_comes_from_the_trusted_proxy_only(rf, settings):
    from accounts.throttle import client_ip

    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.7"  # never the forgeable left-most entry


def test_password_reset_email_arrives_and_its_link_sets_a_new_password(client, carol):
    response = client.post(reverse("password_reset"), {"email": "carol@example.com"})
    assert response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["carol@example.com"]
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", email.body).group(1)
    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done["Location"] == reverse("password_reset_complete")
    assert log_in(Client(), NEW_PASSWORD).status_code == 302
    # The link works once.
    assert b"This link does not work" in Client().get(link, follow=True).content


def test_password_reset_for_an_unknown_address_says_the_same_and_sends_nothing(client, carol):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_password_change_on_the_settings_page_keeps_this_session_and_ends_others(carol):
    here, elsewhere = Client(), Client()
    log_in(here, PASSWORD)
    log_in(elsewhere, PASSWORD)
    page = here.get(reverse("account-settings")).content.decode()
    assert 'action="/settings/password/"' in page and 'name="old_password"' in page
    response = here.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response["Location"] == reverse("account-settings")
    assert here.get("/")["Location"].startswith("/c/")
    assert elsewhere.get("/")["Location"].startswith(reverse("login"))


def test_password_change_refuses_a_wrong_current_password(client, carol):
    log_in(client, PASSWORD)
    response = client.post(
        reverse("password-change"),
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 400
    carol.refresh_from_db()
    assert carol.check_password(PASSWORD)


def test_without_local_login_there_is_no_password_form_nor_reset(client, carol, settings):
    settings.LOCAL_LOGIN = False
    settings.OIDC_ENABLED = True
    page = client.get(reverse("login")).content
    assert b'name="password"' not in page
    assert b"Log in with single sign-on" in page
    assert log_in(client, PASSWORD).status_code == 403
    assert client.get(reverse("password_reset")).status_code == 404


def test_the_admin_login_is_the_one_login_page(client):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_a_signed_in_member_at_the_admin_is_refused_not_looped(client, carol):
    client.force_login(carol)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
