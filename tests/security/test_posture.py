"""Production posture: HTTPS only, HSTS, secure cookies, security headers and a CSP on every page;
secrets never in a log line, a frame or /health/deps; the provider endpoint only from configuration.

`manage.py check --deploy` with the production settings is
chatplatform/tests/test_settings.py::test_check_deploy_passes_in_production; the model
picker refusing a model the provider does not list is conversations/tests/test_views.py::
test_settings_refuse_a_model_the_provider_does_not_offer.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.urls import reverse

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.models import Conversation, Message, UsageEvent
from tests.faults import TcpProxy
from tests.security.conftest import (
    PASSWORD,
    chat_turn,
    logged_in_client,
    make_user,
    send_frame,
    server_env,
    session_cookie,
    ws_open,
)
from tests.security.routes import every_url
from tests.servers import Server, daphne

pytestmark = pytest.mark.multiprocess

db = database_sync_to_async

API_KEY = "sk-test-SECRETSECRET"
KEY_TAIL = "SECRETSECRET"  # redaction may keep a recognisable prefix (sk-test-S***), never this
URL_USER, URL_PASSWORD = "llmuser", "hunter2pass"
URL_BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()


# --- production headers and cookies over a real daphne --------------------------------------


@pytest.fixture(scope="module")
def production(django_db_setup, tmp_path_factory) -> Server:
    env = server_env(
        APP_ENV="production",
        DJANGO_SETTINGS_MODULE="tests.security.production_settings",
        SECRET_KEY="production-like-" + "q" * 60,
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    env.pop("DEBUG")  # production's own default
    with daphne(env, log_dir=tmp_path_factory.mktemp("production"), name="production") as server:
        yield server


def https(server: Server, **headers: str) -> dict[str, str]:
    """Headers of a request that came through the TLS-terminating proxy."""
    return {"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{server.port}", **headers}


def cookies_set(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Each cookie the response sets, parsed with its attributes."""
    parsed = {}
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie(header)
        parsed.update({name: cookie for name in cookie})
    return parsed


def flags(cookie: SimpleCookie, name: str) -> tuple[bool, bool, str]:
    """(secure, httponly, samesite) of a cookie as the server set it."""
    morsel = cookie[name]
    return bool(morsel["secure"]), bool(morsel["httponly"]), morsel["samesite"]


def test_plain_http_is_redirected_to_https_except_the_health_probes(production):
    with httpx.Client(base_url=production.url) as client:
        login = client.get("/accounts/login/")
        health = client.get("/health")
    assert login.status_code == 301
    assert login.headers["location"] == f"https://127.0.0.1:{production.port}/accounts/login/"
    assert health.status_code == 200


def test_production_pages_carry_hsts_the_security_headers_and_the_csp(production):
    with httpx.Client(base_url=production.url) as client:
        # A page with a form that renders the same on a fresh install (login would show setup).
        response = client.get("/accounts/password/reset/", headers=https(production))
    assert response.status_code == 200
    headers = response.headers
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    secure, _, samesite = flags(cookies_set(response)["csrftoken"], "csrftoken")
    assert (secure, samesite) == (True, "Lax")


@pytest.mark.django_db(transaction=True)
def test_signing_in_in_production_sets_a_secure_httponly_lax_session_cookie(production):
    user = make_user(password=PASSWORD)
    with httpx.Client(base_url=production.url) as client:
        form = client.get("/accounts/login/", headers=https(production))
        token = SimpleCookie(form.headers["set-cookie"])["csrftoken"].value
        response = client.post(
            "/accounts/login/",
            data={"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers=https(production, Cookie=f"csrftoken={token}"),
        )
        assert response.status_code == 302, response.text[:500]
        session = cookies_set(response)["sessionid"]
        missing = client.get(
            "/c/00000000-0000-0000-0000-000000000000/",
            headers=https(production, Cookie=f"sessionid={session['sessionid'].value}"),
        )
    assert flags(session, "sessionid") == (True, True, "Lax")
    # A 404 in production is the plain page, never Django's debug page with the URLconf.
    assert missing.status_code == 404
    assert "URLconf" not in missing.text and "Traceback" not in missing.text


@pytest.mark.django_db
def test_every_page_and_every_error_carries_the_csp(client):
    owner = make_user(is_staff=True, is_superuser=True)
    conversation = Conversation.objects.create(owner=owner, title="t")
    asked = Message.objects.create(conversation=conversation, role="user", content="q")
    Message.objects.create(conversation=conversation, role="assistant", content="a", parent=asked)
    UsageEvent.objects.create(user=owner, conversation=conversation, provider="fake", model="m", status="ok")
    signed_in = logged_in_client(owner)
    missing = []
    for label, url in [*every_url(conversation), ("404", "/no/such/page/")]:
        for who, http in (("owner", signed_in), ("anonymous", client)):
            response = http.get(url)
            policy = response.get("Content-Security-Policy", "")
            if "default-src 'self'" not in policy or "unsafe-inline" in policy:
                missing.append(f"{who} GET {label} ({response.status_code})")
    assert missing == []


# --- secrets -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted():
    """The configured provider (behind a proxy to cut) and an 'evil' one that must never be called."""
    server = ScriptedOpenAIServer(ttft_ms=10, tokens_per_second=500, tokens=10).start_in_thread()
    evil = ScriptedOpenAIServer().start_in_thread()
    with TcpProxy("127.0.0.1", server.port) as proxy:
        yield server, proxy, evil
    server.stop()
    evil.stop()


def provider_env(proxy: TcpProxy, **overrides: str) -> dict[str, str]:
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": f"http://127.0.0.1:{proxy.port}/v1",
        "LLM_MODEL": "scripted-model",
        "LLM_TIMEOUT": "1",
        "LOG_LEVEL": "DEBUG",  # the most a log could ever hold
    }
    return server_env(**{**env, **overrides})


@pytest.fixture(scope="module")
def keyed_server(django_db_setup, scripted, tmp_path_factory) -> Server:
    """A server with an API key, which the provider echoes back in its auth errors (as OpenAI does)."""
    _, proxy, _ = scripted
    env = provider_env(proxy, LLM_API_KEY=API_KEY)
    with daphne(env, log_dir=tmp_path_factory.mktemp("secrets"), name="keyed") as server:
        yield server


def get_deps(server: Server) -> str:
    return httpx.get(f"{server.url}/health/deps", timeout=6).text


async def provoke(server: Server, proxy: TcpProxy, directives: list[str]) -> tuple[list[str], list[str]]:
    """Every kind of provider failure, then the provider cut off: (error codes, every text a user
    or an operator saw: frames and /health/deps answers)."""
    user = await db(make_user)()
    conversation = await db(Conversation.objects.create)(owner=user)
    cookie = await db(session_cookie)(user)
    seen: list[str] = [await asyncio.to_thread(get_deps, server)]
    codes = []
    async with await ws_open(server, conversation.id, cookie) as ws:
        for directive in directives:
            frames, final = await chat_turn(ws, f"{directive} go")
            seen += [json.dumps(f) for f in frames]
            codes.append(final["error"]["code"] if "error" in final else final["status"])
        with proxy.outage():
            frames, final = await chat_turn(ws, "is anyone there?")
            seen += [json.dumps(f) for f in frames]
            codes.append(final["error"]["code"])
            seen.append(await asyncio.to_thread(get_deps, server))
    seen += await db(lambda: [f"{m.content} {m.error}" for m in Message.objects.all()])()
    seen += await db(lambda: [f"{u.error_code} {u.model}" for u in UsageEvent.objects.all()])()
    return codes, seen


@pytest.mark.django_db(transaction=True)
async def test_the_api_key_appears_in_no_log_frame_row_or_health_answer(keyed_server, scripted):
    provider, proxy, _ = scripted
    codes, seen = await provoke(
        keyed_server,
        proxy,
        ["[[error:401]]", "[[error:403]]", "[[error:500]]", "[[drop:2]]", "[[garbage]]", "hi"],
    )
    log = await asyncio.to_thread(keyed_server.log)

    assert codes == [
        "auth",
        "auth",
        "provider_error",
        "provider_error",
        "provider_error",
        "complete",
        "unreachable",
    ]
    # The provider held the key and echoed it in its 401 body: there was something to leak.
    assert any(r.authorization == f"Bearer {API_KEY}" for r in provider.requests)
    assert "llm_request_failed" in log  # the failures were logged, at DEBUG
    assert KEY_TAIL not in log
    assert [s for s in seen if KEY_TAIL in s] == []


@pytest.mark.django_db(transaction=True)
async def test_a_password_in_the_provider_url_appears_in_no_log_frame_row_or_health_answer(
    scripted, tmp_path
):
    provider, proxy, _ = scripted
    earlier = len(provider.requests)  # the module's scripted server also served the tests before this one
    env = provider_env(proxy, LLM_BASE_URL=f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{proxy.port}/v1")
    with daphne(env, log_dir=tmp_path, name="url-password") as server:
        codes, seen = await provoke(server, proxy, ["[[error:401]]", "[[error:500]]", "hi"])
        log = await asyncio.to_thread(server.log)

    assert codes == ["auth", "provider_error", "complete", "unreachable"]
    # The URL's credentials went out as HTTP Basic with every reply's request, and came back in the 401 body.
    completions = [r for r in provider.requests[earlier:] if r.path.endswith("/chat/completions")]
    assert completions
    assert all(r.authorization == f"Basic {URL_BASIC}" for r in completions)
    for secret in (URL_PASSWORD, URL_BASIC):
        assert secret not in log
        assert [s for s in seen if secret in s] == []


def test_llm_check_prints_the_provider_url_without_its_password(scripted, settings):
    _, proxy, _ = scripted
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{proxy.port}/v1"
    settings.LLM_MODEL = "scripted-model"
    out = io.StringIO()
    call_command("llm_check", "hello", stdout=out, stderr=out)
    printed = out.getvalue()
    assert f"127.0.0.1:{proxy.port}/v1" in printed
    assert URL_PASSWORD not in printed


# --- the provider endpoint comes from configuration only -----------------------------------


@pytest.mark.django_db(transaction=True)
async def test_no_frame_field_can_point_the_reply_at_another_endpoint_or_key(keyed_server, scripted):
    provider, _, evil = scripted
    user = await db(make_user)()
    conversation = await db(Conversation.objects.create)(owner=user)
    cookie = await db(session_cookie)(user)
    before = len(provider.completions())
    async with await ws_open(keyed_server, conversation.id, cookie) as ws:
        frame = json.loads(send_frame("where do you go?"))
        frame.update(base_url=evil.base_url, api_key="sk-attacker", model="attacker-model", provider="fake")
        await ws.send(json.dumps(frame))
        final = None
        async with asyncio.timeout(10):
            while final is None:
                got = json.loads(await ws.recv())
                final = got if got["type"] in {"message.completed", "message.failed"} else None
    assert final["status"] == "complete"
    assert len(provider.completions()) == before + 1
    request = provider.last_completion()
    assert (request.model, request.authorization) == ("scripted-model", f"Bearer {API_KEY}")
    assert evil.requests == []


@pytest.mark.django_db(transaction=True)
async def test_a_conversation_model_that_looks_like_a_url_changes_the_model_name_not_the_endpoint(
    keyed_server, scripted
):
    provider, _, evil = scripted
    user = await db(make_user)()
    # Only the settings form writes this field, and it takes the provider's models only;
    # even a row written by other means cannot move the endpoint.
    conversation = await db(Conversation.objects.create)(owner=user, model=evil.base_url)
    cookie = await db(session_cookie)(user)
    async with await ws_open(keyed_server, conversation.id, cookie) as ws:
        _, final = await chat_turn(ws, "hello")
    assert final["status"] == "complete"
    assert provider.last_completion().model == evil.base_url
    assert evil.requests == []


@pytest.mark.django_db
def test_the_settings_form_refuses_a_model_that_is_a_url(monkeypatch):
    from conversations import llm, views

    monkeypatch.setattr(views, "available_models", lambda: ["small-model"])
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})
    owner = make_user()
    conversation = Conversation.objects.create(owner=owner)
    response = logged_in_client(owner).post(
        reverse("conversation-settings", args=[conversation.id]),
        {"model": "http://127.0.0.1:1/v1", "system_prompt": ""},
    )
    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.model == ""


def test_only_the_provider_package_and_settings_read_the_provider_url():
    root = Path(__file__).resolve().parents[2]
    readers = sorted(
        str(path.relative_to(root))
        for app in ("chatplatform", "conversations", "ops")
        for path in (root / app).rglob("*.py")
        if "tests" not in path.parts
        and re.search(r"LLM_BASE_URL|LLM_API_KEY|\bbase_url\s*=", path.read_text())
        and not str(path.relative_to(root)).startswith("conversations/llm/")
    )
    assert readers == ["chatplatform/settings.py", "conversations/management/commands/llm_check.py"]
