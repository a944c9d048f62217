import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_settings_page_needs_a_signed_in_user(client):
    response = client.get(reverse("account-settings"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_settings_page_shows_who_is_signed_in(client, django_user_model):
    user = django_user_model.objects.create_user("ada", "ada@example.com", "pw-123456789")
    client.force_login(user)
    response = client.get(reverse("account-settings"))
    assert response.status_code == 200
    assert b"ada@example.com" in response.content
