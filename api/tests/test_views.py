"""The views in-process (Django's async client): what needs no live server or model."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from api.services import api_key_create
from conversations.llm import reset_provider

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_model(settings):
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = ""
    settings.LLM_API_KEY = ""
    reset_provider()
    yield
    reset_provider()


async def test_without_a_configured_model_the_api_answers_503(no_model, django_user_model):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(django_user_model.objects.create_user)("ada")
    _, key = await database_sync_to_async(api_key_create)(user=user, name="k")
    client, auth = AsyncClient(), {"Authorization": f"Bearer {key}"}
    models = await client.get("/v1/models", headers=auth)
    completion = await client.post(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        headers=auth,
    )
    for response in (models, completion):
        assert response.status_code == 503, response.json()
        assert response.json()["error"]["code"] == "no_model_configured"
