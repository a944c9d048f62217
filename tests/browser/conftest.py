"""A live daphne with the scripted model, Debian's Chromium through Playwright, and page helpers.

One server and one browser serve the whole browser suite: the server gets
its own PostgreSQL database (created, migrated and dropped here) and shares
Redis for the channel layer. Every test gets a fresh browser context signed
in as one account made once through the sign-up form, and fails on any
console error, uncaught exception or JavaScript dialog.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import selectors
import socket
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from conftest import require_service
from tests.servers import ROOT, Server, daphne

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "browser-tests-Pa55word"
ADMIN_USERNAME = "browser-admin"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Short pages so "Load earlier" is reachable with a few exchanges.
HISTORY_PAGE = 6

expect.set_options(timeout=10_000)
# Where a signed-in person lands: their latest conversation, or the new-chat page.
CHAT_OR_NEW = re.compile(r".*/c/(new|[0-9a-f-]{36})/$")
# The live server's environment (its database), for `live_orm`.
LIVE_ENV: dict[str, str] = {}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Live:
    server: Server
    env: dict[str, str]
    database_url: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Iterator[Live]:
    """daphne on loopback with LLM_PROVIDER=fake, on a database of its own."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    require_service("PostgreSQL (DATABASE_URL)", database_url.startswith("postgres"))
    require_service("Redis (REDIS_URL)", bool(redis_url))
    if not Path(CHROMIUM).exists():
        require_service(f"Chromium ({CHROMIUM})", False)

    name = f"test_browser_{uuid.uuid4().hex[:12]}"
    # The maintenance database: the one in DATABASE_URL may not exist yet.
    maintenance_url = _with_database(database_url, "postgres")
    with psycopg.connect(maintenance_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    live_database_url = _with_database(database_url, name)
    env = {
        "CHATPLATFORM_IGNORE_DOTENV": "1",
        "APP_ENV": "test",
        "DEBUG": "false",
        # The site's settings and URLs plus one URL that raises (the real 500 page).
        "DJANGO_SETTINGS_MODULE": "tests.browser.live_settings",
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "SIGNUP_MODE": "open",
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.05",
        "LLM_FAKE_TOKENS_PER_SECOND": "200",
        "LLM_FAKE_TOKENS": "30",
        # A second model, for the model-access tests.
        "LLM_FAKE_MODELS": "fake-large",
        "CHAT_HISTORY_PAGE": str(HISTORY_PAGE),
        # One account runs every test: the per-user limits must not be what a test meets.
        "CHAT_MESSAGES_PER_MINUTE": "10000",
        "CHAT_CONCURRENT_REPLIES": "100",
        "CHAT_DAILY_TOKEN_BUDGET": "100000000",
        "LOG_LEVEL": "WARNING",
        # Uploaded files go to a directory of the suite's own, never the checkout.
        "DOCUMENTS_STORAGE_OPTIONS": json.dumps({"location": str(tmp_path_factory.mktemp("attachments"))}),
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            timeout=120,
        )
        # Not a fresh install (that would show the first-admin page): an admin exists.
        subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", ADMIN_USERNAME],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                "DJANGO_SUPERUSER_EMAIL": "admin@example.test",
            },
            check=True,
            timeout=120,
        )
        log_dir = tmp_path_factory.mktemp("browser-servers")
        LIVE_ENV.clear()
        LIVE_ENV.update(env)
        with daphne(env, log_dir=log_dir, name="browser") as server:
            yield Live(server=server, env=env, database_url=live_database_url)
    finally:
        with psycopg.connect(maintenance_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Problems:
    """What a page must never do: log a console error, throw, or open a dialog."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("dialog", self._dialog)
        return page

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def _console(self, message) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.errors.append(message.text)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


class Cable:
    """A TCP proxy in front of the server that a test can cut: every open
    connection is reset and, until `reconnect()`, new ones are refused.
    (Offline emulation in the browser leaves open WebSockets alone; this does not.)

    One thread with a selector does all the work, so no socket is ever closed
    while another thread is blocked on it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.connected = True
        self.peers: dict[socket.socket, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.wake_r, self.wake_w = socket.socketpair()
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._ask("cut")

    def reconnect(self) -> None:
        self._ask("reconnect")

    def close(self) -> None:
        self._ask("stop")
        self.thread.join(timeout=5)

    def _ask(self, request: str) -> None:
        self.done.clear()
        self.requests.put(request)
        self.wake_w.send(b"x")
        self.done.wait(timeout=5)

    def _drop(self, sock: socket.socket) -> None:
        for one in (sock, self.peers.pop(sock, None)):
            if one is None:
                continue
            self.peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(one)
            with contextlib.suppress(OSError):
                # Zero linger: close() sends a reset, as a dropped network would.
                one.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            one.close()

    def _run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                sock = key.fileobj
                if sock is self.wake_r:
                    sock.recv(64)
                    while not self.requests.empty():
                        request = self.requests.get()
                        if request in ("cut", "stop"):
                            self.connected = False
                            for open_socket in list(self.peers):
                                if open_socket in self.peers:
                                    self._drop(open_socket)
                        if request == "reconnect":
                            self.connected = True
                        if request == "stop":
                            self.listener.close()
                            self.done.set()
                            return
                    self.done.set()
                elif sock is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        client, _ = self.listener.accept()
                        if not self.connected:
                            client.close()
                            continue
                        upstream = socket.create_connection(("127.0.0.1", self.target_port))
                        self.peers[client], self.peers[upstream] = upstream, client
                        self.selector.register(client, selectors.EVENT_READ)
                        self.selector.register(upstream, selectors.EVENT_READ)
                elif sock in self.peers:
                    try:
                        data = sock.recv(65536)
                        if data:
                            self.peers[sock].sendall(data)
                            continue
                    except OSError:
                        pass
                    self._drop(sock)


@pytest.fixture
def cable(live: Live) -> Iterator[Cable]:
    proxy = Cable(live.server.port)
    yield proxy
    proxy.close()


def sign_up(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(CHAT_OR_NEW)


@pytest.fixture(scope="session")
def account(live: Live, browser: Browser, tmp_path_factory) -> Path:
    """One account for the suite, made through the sign-up form; its signed-in browser state."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_up(page, live.url, f"tester-{uuid.uuid4().hex[:8]}")
    state = tmp_path_factory.mktemp("browser-state") / "state.json"
    context.storage_state(path=str(state))
    context.close()
    return state


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def context(browser: Browser, account: Path, problems: Problems) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP, storage_state=str(account), color_scheme="light")
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, problems: Problems) -> Iterator[Page]:
    page = problems.watch(context.new_page())
    yield page
    assert not problems.dialogs, f"a dialog opened: {problems.dialogs}"
    assert not problems.errors, f"console errors: {problems.errors}"


def open_tab(context: BrowserContext, problems: Problems, url: str) -> Page:
    """Another tab of the same signed-in browser, watched like the first."""
    tab = problems.watch(context.new_page())
    tab.goto(url)
    wait_connected(tab)
    return tab


def wait_connected(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")


def live_orm(code: str) -> str:
    """Run `code` in `manage.py shell` on the live server's database; what it printed last."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT,
        env={**os.environ, **LIVE_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def new_chat(page: Page, base_url: str) -> str:
    """An empty conversation of the signed-in user, opened, its socket open; returns its URL.

    The app stores a conversation only with its first message (New chat opens
    /c/new/, see `open_new_chat`); tests of the conversation page before any
    message seed the row through the ORM, as an old empty conversation would be.
    """
    page.goto(f"{base_url}/c/new/")
    username = (page.locator(".sidebar__user").text_content() or "").strip()
    conversation_id = live_orm(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation\n"
        f"owner = get_user_model().objects.get(username={username!r})\n"
        "print(Conversation.objects.create(owner=owner).id)\n"
    )
    page.goto(f"{base_url}/c/{conversation_id}/")
    wait_connected(page)
    return page.url


def open_new_chat(page: Page, base_url: str) -> None:
    """Click New chat: the empty composer page, nothing stored yet."""
    page.goto(f"{base_url}/")
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url(re.compile(r".*/c/new/(\?.*)?$"))
    expect(composer(page)).to_be_focused()


def composer(page: Page):
    return page.get_by_label("Message", exact=True)


def send(page: Page, text: str) -> None:
    """Put a message in the composer and press Enter."""
    box = composer(page)
    box.fill(text)
    box.press("Enter")


def replies(page: Page):
    return page.locator("#messages .message--assistant")


def last_reply(page: Page):
    return replies(page).last


def wait_reply_done(page: Page, status: str = "complete"):
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", status)
    return reply


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def expire_the_form(page: Page) -> None:
    """On /settings/: post the preferences without a CSRF token (as after signing out and
    in elsewhere), so the server answers with its "form expired" 403 page."""
    page.locator("#preferences-form input[name=csrfmiddlewaretoken]").evaluate("(input) => input.remove()")
    page.context.clear_cookies(name="csrftoken")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("heading", name="That form could not be sent")).to_be_visible()
