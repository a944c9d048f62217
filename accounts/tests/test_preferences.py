"""Preferences on the settings page: default model, custom instructions, theme."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse

from accounts.models import Profile
from conversations import llm, views
from conversations.llm import reset_provider
from conversations.models import Conversation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _models(monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: ["small-model", "large-model"])
    monkeypatch.setattr(llm, "provider_status", lambda: {"configured": True, "reason": ""})


@pytest.fixture
def fake_provider(settings):
    settings.LLM_PROVIDER = "fake"
    reset_provider()
    yield
    reset_provider()


@pytest.fixture
def ada(client, django_user_model):
    user = django_user_model.objects.create_user("ada")
    client.force_login(user)
    return user


def save(client, **fields):
    data = {"default_model": "", "custom_instructions": "", "theme": "system", **fields}
    return client.post(reverse("account-preferences"), data)


def test_settings_page_offers_the_providers_models_and_three_themes(client, ada):
    html = client.get(reverse("account-settings")).content.decode()
    assert '<option value="large-model">large-model</option>' in html
    assert re.findall(r'name="theme" value="(\w+)"', html) == ["system", "light", "dark"]
    assert 'data-theme="system"' in html


def test_preferences_are_saved_and_shown_again(client, ada):
    response = save(
        client, default_model="large-model", custom_instructions="Answer in French.", theme="dark"
    )
    assert response.status_code == 302 and response["Location"] == reverse("account-settings")
    profile = Profile.objects.get(user=ada)
    assert (profile.default_model, profile.custom_instructions, profile.theme) == (
        "large-model",
        "Answer in French.",
        "dark",
    )
    html = client.get(reverse("account-settings")).content.decode()
    assert "Preferences saved." in html
    assert "Answer in French." in html
    assert '<option value="large-model" selected>' in html


def test_the_chosen_theme_is_on_every_page(client, ada):
    save(client, theme="dark")
    conversation = Conversation.objects.create(owner=ada)
    for url in (reverse("account-settings"), reverse("conversation", args=[conversation.id])):
        assert re.search(r'<html lang="en" data-theme="dark"[ >]', client.get(url).content.decode())


def test_a_model_the_provider_does_not_offer_is_refused(client, ada):
    response = save(client, default_model="imaginary-model")
    assert response.status_code == 400
    assert Profile.objects.get(user=ada).default_model == ""


def test_an_unknown_theme_is_refused(client, ada):
    assert save(client, theme="neon").status_code == 400


def test_too_long_custom_instructions_are_refused(client, ada, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    assert save(client, custom_instructions="x" * 21).status_code == 400


def first_send(user):
    """What POST /c/new/ writes (without starting the runtime): the conversation of a first message."""
    start = views._first_send(user, {"content": "hello", "client_id": uuid.uuid4()}, "test-worker")
    return Conversation.objects.get(pk=start.user_message.conversation_id)


def test_new_conversations_start_with_the_default_model(client, ada, fake_provider):
    save(client, default_model="small-model")
    assert first_send(ada).model == "small-model"


def test_a_default_the_provider_no_longer_offers_is_not_used(client, ada, monkeypatch, fake_provider):
    save(client, default_model="small-model")
    monkeypatch.setattr(views, "available_models", lambda: ["large-model"])
    assert first_send(ada).model == ""


def test_preferences_need_a_signed_in_user_and_a_post(client, ada):
    assert client.get(reverse("account-preferences")).status_code == 405
    client.logout()
    response = save(client, theme="dark")
    assert response.status_code == 302 and reverse("login") in response["Location"]
