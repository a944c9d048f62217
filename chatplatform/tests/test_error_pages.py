"""Designed error pages: each says what happened and links home, in both themes, and the
500 page renders without the database (it is what shows when the database is down)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import permission_denied, server_error


def test_500_page_renders_without_the_database():
    # No django_db mark: any query here raises, so this proves the page needs none.
    response = server_error(RequestFactory().get("/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in html
    assert f'href="{reverse("home")}"' in html
    assert "/static/css/app.css" in html


def test_403_page_has_a_way_home(rf):
    response = permission_denied(rf.get("/"), exception=PermissionError())
    html = response.content.decode()
    assert response.status_code == 403
    assert "You cannot open this page" in html and f'href="{reverse("home")}"' in html


@pytest.mark.django_db
def test_404_page_is_designed_and_the_same_for_anyone(client, django_user_model):
    missing = reverse("conversation", args=[uuid.uuid4()])
    anonymous = Client().get("/no-such-page/")
    assert anonymous.status_code == 404
    assert "This page does not exist" in anonymous.content.decode()
    client.force_login(django_user_model.objects.create_user("ada"))
    response = client.get(missing)
    html = response.content.decode()
    assert response.status_code == 404
    assert "This page does not exist" in html and "Go to your conversations" in html


@pytest.mark.django_db
def test_csrf_failure_explains_and_changes_nothing(django_user_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("ada"))
    response = client.post(reverse("conversation-new"))
    assert response.status_code == 403
    assert "That form could not be sent" in response.content.decode()


@pytest.mark.django_db
def test_error_pages_follow_the_chosen_theme(client, django_user_model):
    from accounts.models import Profile

    user = django_user_model.objects.create_user("ada")
    Profile.objects.create(user=user, theme="dark")
    client.force_login(user)
    assert 'data-theme="dark"' in client.get("/no-such-page/").content.decode()
