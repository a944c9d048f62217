"""Accounts in Chromium: single sign-on through a real OpenID Connect provider, sign-up
policy and invites, login lockout, password reset by email, and model access by group.

Servers beside the suite's live one share its database and Redis with other
settings (single sign-on and invite-only; closed sign-up with file email), as
differently configured processes of one deployment would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    ADMIN_USERNAME,
    DESKTOP,
    PASSWORD,
    Live,
    _with_database,
    new_chat,
    screenshot,
    sign_up,
    wait_connected,
)
from tests.idp import identity_provider
from tests.servers import ROOT, Server, daphne, free_port

IDP_PASSWORD = "idp-Pa55word-for-tests"
IDP_USERS = {
    "ada": {"password": IDP_PASSWORD, "email": "ada@idp.test", "name": "Ada Lovelace"},
    "eve": {"password": IDP_PASSWORD, "email": "eve@idp.test", "email_verified": False},
}
# A fresh account lands on the new-chat page (nothing stored until its first message).
CHAT_URL = re.compile(r".*/c/(new|[0-9a-f-]{36})/$")


def manage(live: Live, *args: str) -> str:
    """A management command against the live database (setup a test needs, through the ORM)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **live.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed(output: str) -> str:
    """The last line a `manage.py shell -c` printed (logs go to stdout before it)."""
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sso_server(live: Live, tmp_path_factory) -> Iterator[Server]:
    """A process with single sign-on against node-oidc-provider, sign-up by invite only."""
    log_dir = tmp_path_factory.mktemp("sso")
    port = free_port()
    with identity_provider(
        redirect_uri=f"http://127.0.0.1:{port}/accounts/oidc/callback/", users=IDP_USERS, log_dir=log_dir
    ) as idp:
        env = {**live.env, **idp.app_env(), "SIGNUP_MODE": "invite"}
        with daphne(env, port=port, log_dir=log_dir, name="sso") as server:
            yield server


@pytest.fixture(scope="module")
def mail_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="module")
def closed_server(live: Live, mail_dir: Path, tmp_path_factory) -> Iterator[Server]:
    """A process with sign-up closed that writes its email to files (another process can read them)."""
    env = {**live.env, "SIGNUP_MODE": "closed", "EMAIL_URL": f"filemail:///{mail_dir}"}
    with daphne(env, log_dir=tmp_path_factory.mktemp("closed"), name="closed") as server:
        yield server


@pytest.fixture
def fresh(browser, problems):
    """A browser with nobody signed in."""
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    page = problems.watch(context.new_page())
    yield page
    context.close()
    assert not problems.dialogs, problems.dialogs
    assert not problems.errors, problems.errors


@pytest.fixture
def no_lockouts(live: Live) -> Iterator[None]:
    """Login failures are shared by every process (the database): leave none for later tests."""
    yield
    with psycopg.connect(live.database_url, autocommit=True) as db:
        db.execute("DELETE FROM axes_accessattempt")


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()


# --- single sign-on ----------------------------------------------------------------------


def test_sso_login_through_the_real_provider_lands_a_new_user_in_the_chat(fresh, sso_server):
    page = fresh
    page.goto(f"{sso_server.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    screenshot(page, "login-01-login-page-with-sso")
    page.get_by_role("link", name="Log in with Test IdP").click()

    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    assert "/interaction/" in page.url and f":{sso_server.port}/" not in page.url
    page.get_by_label("Login").fill("ada")
    page.get_by_label("Password").fill(IDP_PASSWORD)
    screenshot(page, "login-02-identity-provider")
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(CHAT_URL)
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    expect(page.locator("#messages-empty")).to_be_visible()
    screenshot(page, "login-03-landed-in-the-chat")
    page.goto(f"{sso_server.url}/settings/")
    expect(page.locator("main")).to_contain_text("Signed in as ada (ada@idp.test)")
    # Single sign-on accounts have no password here.
    expect(page.locator("main")).to_contain_text("no password here")


def test_sso_refuses_an_unverified_email_with_a_reason(fresh, sso_server):
    page = fresh
    page.goto(f"{sso_server.url}/accounts/login/")
    page.get_by_role("link", name="Log in with Test IdP").click()
    page.get_by_label("Login").fill("eve")
    page.get_by_label("Password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("alert")).to_contain_text("has not verified this email address")


# --- sign-up policy ---------------------------------------------------------------------------


def test_closed_signup_hides_and_refuses_sign_up(fresh, closed_server, problems):
    problems.allow(r"status of 404")  # the closed page is a 404, on purpose
    page = fresh
    page.goto(f"{closed_server.url}/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name="Sign up")).to_have_count(0)
    response = page.goto(f"{closed_server.url}/accounts/signup/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Sign-up is closed")).to_be_visible()
    screenshot(page, "signup-closed")
    # A hand-made POST with a valid CSRF token makes no account either.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    name = f"sneaky-{uuid.uuid4().hex[:6]}"
    posted = page.request.post(
        f"{closed_server.url}/accounts/signup/",
        form={"csrfmiddlewaretoken": token, "username": name, "password1": PASSWORD, "password2": PASSWORD},
        headers={"Referer": f"{closed_server.url}/accounts/signup/"},
    )
    assert posted.status == 404
    log_in(page, closed_server.url, name, PASSWORD)
    expect(page.locator(".form-errors")).to_be_visible()


def test_an_invite_link_works_once(browser, fresh, sso_server, problems):
    problems.allow(r"status of 404")  # a refused sign-up page is a 404, on purpose
    page = fresh
    response = page.goto(f"{sso_server.url}/accounts/signup/")
    assert response.status == 404
    expect(page.locator("main")).to_contain_text("needs an invite link")

    # An admin makes the link in the admin.
    log_in(page, sso_server.url, ADMIN_USERNAME, PASSWORD)
    page.goto(f"{sso_server.url}/admin/accounts/invite/add/")
    page.get_by_label("Note").fill("for the new analyst")
    page.get_by_role("button", name="Save", exact=True).click()
    notice = page.locator(".messagelist").inner_text()
    link = re.search(r"(http://\S+/accounts/invite/\S+/)", notice).group(1)

    newcomer = problems.watch(browser.new_context(viewport=DESKTOP).new_page())
    newcomer.goto(link)
    expect(newcomer.get_by_text("You were invited. This link works once.")).to_be_visible()
    newcomer.get_by_label("Username").fill(f"analyst-{uuid.uuid4().hex[:6]}")
    newcomer.get_by_label("Password", exact=True).fill(PASSWORD)
    newcomer.get_by_label("Password confirmation").fill(PASSWORD)
    newcomer.get_by_role("button", name="Sign up").click()
    newcomer.wait_for_url(CHAT_URL)
    expect(newcomer.get_by_label("Message", exact=True)).to_be_visible()
    newcomer.context.close()

    second = problems.watch(browser.new_context(viewport=DESKTOP).new_page())
    response = second.goto(link)
    assert response.status == 404
    expect(second.locator("main")).to_contain_text("has been used or has expired")
    second.context.close()


# --- account safety --------------------------------------------------------------------------


def test_ten_wrong_passwords_lock_the_account_with_a_message(
    fresh, live, closed_server, no_lockouts, problems
):
    problems.allow(r"status of 429")  # the lockout page is a 429, on purpose
    page = fresh
    username = f"target-{uuid.uuid4().hex[:6]}"
    sign_up(page, live.url, username)
    page.context.clear_cookies()
    for _ in range(9):
        log_in(page, closed_server.url, username, "not-the-password")
        expect(page.locator(".form-errors")).to_contain_text("enter a correct username and password")
    log_in(page, closed_server.url, username, "not-the-password")
    expect(page.get_by_role("heading", name="Too many failed attempts")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("locked for 15 minutes after 10 wrong passwords")
    screenshot(page, "login-locked-out")
    # The right password is refused too, on the other process as well.
    log_in(page, live.url, username, PASSWORD)
    expect(page.get_by_role("heading", name="Too many failed attempts")).to_be_visible()


def test_password_reset_email_arrives_and_its_link_sets_a_new_password(fresh, live, closed_server, mail_dir):
    page = fresh
    username = f"forgetful-{uuid.uuid4().hex[:6]}"
    email = f"{username}@example.test"
    page.goto(f"{live.url}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(CHAT_URL)
    page.context.clear_cookies()

    page.goto(f"{closed_server.url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    screenshot(page, "password-reset-01-ask")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    messages = [p.read_text() for p in mail_dir.iterdir()]
    mine = [m for m in messages if f"To: {email}" in m]
    assert len(mine) == 1, messages
    link = re.search(r"(http://127\.0\.0\.1:\d+/accounts/password/reset/\S+/)", mine[0]).group(1)
    page.goto(link)
    new_password = "a-brand-new-Pa55phrase"
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password confirmation").fill(new_password)
    screenshot(page, "password-reset-02-new-password")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()

    log_in(page, closed_server.url, username, new_password)
    page.wait_for_url(CHAT_URL)


# --- roles and model access --------------------------------------------------------------------


def test_an_admin_grants_a_group_one_model_and_its_member_can_pick_only_that(browser, fresh, live, problems):
    group = f"analysts-{uuid.uuid4().hex[:6]}"
    # The admin makes the group and chooses its models on the group's admin page.
    admin = problems.watch(browser.new_context(viewport=DESKTOP).new_page())
    log_in(admin, live.url, ADMIN_USERNAME, PASSWORD)
    admin.wait_for_url(CHAT_URL)
    admin.goto(f"{live.url}/admin/auth/group/add/")
    admin.get_by_label("Name").fill(group)
    admin.locator('input[name="model_access-0-model"]').fill("fake-model")
    screenshot(admin, "admin-group-model-access")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")
    admin.context.close()

    username = f"analyst-{uuid.uuid4().hex[:6]}"
    manage(
        live,
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        f"user = User.objects.create_user({username!r}, password={PASSWORD!r})\n"
        f"user.groups.set([Group.objects.get(name={group!r})])\n",
    )
    page = fresh
    log_in(page, live.url, username, PASSWORD)
    page.wait_for_url(CHAT_URL)
    new_chat(page, live.url)
    page.get_by_text("Options", exact=True).click()
    # The provider offers fake-model and fake-large; the group has only the first.
    options = page.get_by_label("Model").locator("option")
    expect(options).to_have_text(["Default model", "fake-model"])
    screenshot(page, "model-picker-narrowed-by-group")


def test_a_member_cannot_send_to_a_model_their_group_lacks(fresh, live):
    page = fresh
    username = f"narrowed-{uuid.uuid4().hex[:6]}"
    # The conversation was set to the large model before an admin narrowed the group's access.
    conversation_id = manage(
        live,
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        "from accounts.models import GroupModelAccess\n"
        "from conversations.models import Conversation\n"
        "interns, _ = Group.objects.get_or_create(name='interns')\n"
        "GroupModelAccess.objects.get_or_create(group=interns, model='fake-model')\n"
        f"user = User.objects.create_user({username!r}, password={PASSWORD!r})\n"
        "user.groups.set([interns])\n"
        "print(Conversation.objects.create(owner=user, model='fake-large').id)\n",
    )
    conversation_id = printed(conversation_id)
    log_in(page, live.url, username, PASSWORD)
    page.goto(f"{live.url}/c/{conversation_id}/")
    wait_connected(page)
    composer = page.get_by_label("Message", exact=True)
    composer.fill("hello there")
    composer.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("You may not use the model fake-large")
    expect(page.locator("#messages .message--assistant")).to_have_count(0)
    screenshot(page, "model-access-refused")


# --- revocation ---------------------------------------------------------------------------------


def test_deactivating_a_user_in_the_admin_closes_their_socket_on_another_process_within_5_s(
    browser, fresh, live, closed_server, problems
):
    username = f"leaver-{uuid.uuid4().hex[:6]}"
    user_id = manage(
        live,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User\nprint(User.objects.create_user({username!r}, password={PASSWORD!r}).pk)\n",
    )
    user_id = printed(user_id)
    # The user chats on the suite's server ...
    victim = fresh
    log_in(victim, live.url, username, PASSWORD)
    victim.wait_for_url(CHAT_URL)
    new_chat(victim, live.url)

    # ... and an admin deactivates them in the admin of another process.
    admin = problems.watch(browser.new_context(viewport=DESKTOP).new_page())
    log_in(admin, closed_server.url, ADMIN_USERNAME, PASSWORD)
    admin.wait_for_url(CHAT_URL)
    admin.goto(f"{closed_server.url}/admin/auth/user/{user_id}/change/")
    admin.get_by_label("Active").uncheck()
    started = time.monotonic()
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was changed successfully")

    expect(victim.locator("#session-ended")).to_be_visible(timeout=5_000)
    elapsed = time.monotonic() - started
    expect(victim.locator("#connection")).to_have_attribute("data-state", "closed")
    screenshot(victim, "revocation-session-ended")
    print(f"deactivation to closed socket on the other process: {elapsed:.2f} s")
    assert elapsed < 5
    admin.context.close()


# --- the first admin ------------------------------------------------------------------------------


@pytest.fixture
def fresh_install(live: Live, tmp_path) -> Iterator[Server]:
    """A server on an empty database of its own (migrated, no account), requiring the setup token."""
    name = f"test_setup_{uuid.uuid4().hex[:12]}"
    maintenance_url = _with_database(live.database_url, "postgres")
    with psycopg.connect(maintenance_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        **live.env,
        "DATABASE_URL": _with_database(live.database_url, name),
        "SETUP_REQUIRES_TOKEN": "true",
        "LOG_FORMAT": "json",
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            timeout=300,
        )
        with daphne(env, log_dir=tmp_path, name="fresh") as server:
            yield server
    finally:
        with psycopg.connect(maintenance_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_fresh_install_asks_for_the_admin_account_once_with_the_token_from_the_log(
    fresh, fresh_install, browser, problems
):
    page = fresh
    page.goto(f"{fresh_install.url}/")
    expect(page.get_by_role("heading", name="Create the admin account")).to_be_visible()
    screenshot(page, "setup-01-create-the-admin-account")
    token = next(
        json.loads(line)["setup_token"]
        for line in fresh_install.log().splitlines()
        if '"setup_token"' in line
    )
    page.get_by_label("Username").fill("root")
    page.get_by_label("Email").fill("root@example.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_label("Setup token").fill("not-the-token")
    page.get_by_role("button", name="Create the admin account").click()
    expect(page.locator(".field__errors")).to_contain_text("not the setup token")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_label("Setup token").fill(token)
    page.get_by_role("button", name="Create the admin account").click()
    page.wait_for_url(CHAT_URL)
    expect(page.get_by_label("Message", exact=True)).to_be_visible()  # the new-chat page
    page.goto(f"{fresh_install.url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    # Once any account exists the page is gone, for everyone.
    problems.allow(r"status of 404")
    stranger = problems.watch(browser.new_context(viewport=DESKTOP).new_page())
    assert stranger.goto(f"{fresh_install.url}/accounts/setup/").status == 404
    stranger.goto(f"{fresh_install.url}/")
    expect(stranger.get_by_role("heading", name="Log in")).to_be_visible()
    stranger.context.close()
