"""A person downloads all their data and deletes their account from the settings page."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import models
from django.test import Client
from django.urls import reverse

from accounts.models import Profile
from conversations.models import Conversation, Message, UsageEvent

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-data-tests-1"


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


@pytest.fixture
def alice():
    """Alice with two conversations (one archived, one with an edited branch), usage and preferences."""
    user = make_user("alice")
    Profile.objects.create(user=user, custom_instructions="Answer in French.")
    first = Conversation.objects.create(owner=user, title="Trip", system_prompt="be brief")
    asked = Message.objects.create(conversation=first, role="user", content="Where to go?")
    answer = Message.objects.create(conversation=first, role="assistant", content="Lyon.", parent=asked)
    # An edit forks a second branch: the old one is not on the visible path, but it is hers.
    edited = Message.objects.create(conversation=first, role="user", content="Where to ski?")
    Message.objects.create(conversation=first, role="assistant", content="Chamonix.", parent=edited)
    second = Conversation.objects.create(owner=user, title="Old", archived=True)
    Message.objects.create(conversation=second, role="user", content="archived words")
    UsageEvent.objects.create(
        user=user,
        conversation=first,
        message=answer,
        provider="fake",
        model="m",
        status="ok",
        prompt_tokens=7,
    )
    UsageEvent.objects.create(user=user, conversation=None, provider="fake", model="m", status="failed")
    return user


@pytest.fixture
def bob():
    user = make_user("bob")
    conversation = Conversation.objects.create(owner=user, title="Bob's")
    Message.objects.create(conversation=conversation, role="user", content="bob's words")
    UsageEvent.objects.create(user=user, conversation=conversation, provider="fake", model="m", status="ok")
    return user


def download(client: Client) -> tuple[dict, zipfile.ZipFile]:
    response = client.get(reverse("account-data-export"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment;")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    return json.loads(archive.read("data.json")), archive


def test_the_settings_page_offers_the_download_and_the_deletion(alice):
    page = signed_in(alice).get(reverse("account-settings")).content.decode()
    assert reverse("account-data-export") in page and "Download my data" in page
    assert reverse("account-delete") in page and "Delete my account" in page


def test_download_contains_every_conversation_every_message_and_the_usage(alice, bob):
    data, archive = download(signed_in(alice))
    mine = Conversation.objects.filter(owner=alice)
    assert {c["id"] for c in data["conversations"]} == {str(c.id) for c in mine}
    exported = {m["id"]: m["content"] for c in data["conversations"] for m in c["messages"]}
    assert exported == {str(m.id): m.content for m in Message.objects.filter(conversation__owner=alice)}
    assert "Lyon." in exported.values()  # the branch an edit left behind is hers too
    assert len(data["usage"]) == UsageEvent.objects.filter(user=alice).count() == 2
    assert data["account"]["username"] == "alice"
    assert data["preferences"]["custom_instructions"] == "Answer in French."
    assert archive.namelist()[0] == "data.json"
    everything = json.dumps(data)
    assert "bob's words" not in everything and "Bob's" not in everything


def test_download_needs_a_signed_in_user():
    response = Client().get(reverse("account-data-export"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def rows_referencing_user(user_id: int) -> dict[str, int]:
    """Every row of every model that points at the user through a foreign key or one-to-one."""
    found = {}
    user_model = get_user_model()
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, models.ForeignKey) and field.related_model is user_model:
                count = model._default_manager.filter(**{field.name: user_id}).count()
                if count:
                    found[f"{model._meta.label}.{field.name}"] = count
    return found


def sessions_of(user_id: int) -> int:
    return sum(1 for s in Session.objects.all() if str(s.get_decoded().get("_auth_user_id")) == str(user_id))


def test_deleting_the_account_leaves_no_row_of_the_user(alice, bob):
    user_id = alice.pk
    conversation_ids = list(Conversation.objects.filter(owner=alice).values_list("id", flat=True))
    client = signed_in(alice)
    other_browser = signed_in(alice)  # a second session, elsewhere
    assert rows_referencing_user(user_id) and sessions_of(user_id) == 2
    bobs_before = rows_referencing_user(bob.pk)

    response = client.post(reverse("account-delete"), {"secret": PASSWORD})

    assert response.status_code == 200
    assert b"Account deleted" in response.content
    assert not get_user_model().objects.filter(pk=user_id).exists()
    assert rows_referencing_user(user_id) == {}
    assert not Conversation.objects.filter(id__in=conversation_ids).exists()
    assert not Message.objects.filter(conversation_id__in=conversation_ids).exists()
    assert not UsageEvent.objects.filter(user_id=user_id).exists()
    assert sessions_of(user_id) == 0
    # Both browsers are signed out; Bob keeps everything.
    for c in (client, other_browser):
        assert c.get(reverse("account-settings")).status_code == 302
    assert rows_referencing_user(bob.pk) == bobs_before


def test_a_wrong_password_deletes_nothing(alice):
    before = rows_referencing_user(alice.pk)
    response = signed_in(alice).post(reverse("account-delete"), {"secret": "not-it"})
    assert response.status_code == 400
    assert b"That is not your password." in response.content
    assert rows_referencing_user(alice.pk) == before


def test_deletion_needs_a_post_with_a_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get(reverse("account-delete")).status_code == 200  # the confirmation page
    assert client.post(reverse("account-delete"), {"secret": PASSWORD}).status_code == 403
    assert get_user_model().objects.filter(pk=alice.pk).exists()


def test_a_single_sign_on_account_confirms_with_its_username(alice):
    alice.set_unusable_password()
    alice.save()
    client = Client()
    client.force_login(alice)
    assert client.post(reverse("account-delete"), {"secret": "alicia"}).status_code == 400
    assert client.post(reverse("account-delete"), {"secret": "alice"}).status_code == 200
    assert not get_user_model().objects.filter(pk=alice.pk).exists()


def test_the_last_administrator_cannot_delete_their_account():
    admin = make_user("root", is_superuser=True, is_staff=True)
    response = signed_in(admin).post(reverse("account-delete"), {"secret": PASSWORD})
    assert response.status_code == 400
    assert b"only administrator" in response.content
    assert get_user_model().objects.filter(pk=admin.pk).exists()
    make_user("deputy", is_superuser=True, is_staff=True)
    assert signed_in(admin).post(reverse("account-delete"), {"secret": PASSWORD}).status_code == 200


# --- attachments (the documents app) ------------------------------------------


@pytest.fixture
def alices_file(alice, settings, tmp_path):
    """An attachment of Alice's, stored in a directory of this test's own."""
    import copy

    from django.core.files.uploadedfile import SimpleUploadedFile

    from documents import services as documents

    location = tmp_path / "attachments"
    storages = copy.deepcopy(settings.STORAGES)
    storages["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    settings.STORAGES = storages
    conversation = Conversation.objects.get(owner=alice, title="Trip")
    attachment = documents.attachment_create(
        conversation=conversation, user=alice, upload=SimpleUploadedFile("notes.txt", b"pack the skis")
    )
    return attachment, location


def stored(location) -> list:
    return [p for p in location.rglob("*") if p.is_file()] if location.exists() else []


def test_download_carries_each_attachment_and_its_file(alices_file):
    attachment, _ = alices_file
    data, archive = download(signed_in(attachment.owner))
    (listed,) = [a for c in data["conversations"] for a in c["attachments"]]
    assert listed["id"] == str(attachment.id) and listed["name"] == "notes.txt"
    assert archive.read(listed["file"]) == b"pack the skis"


def test_deleting_the_account_deletes_the_files_too(alices_file, django_capture_on_commit_callbacks):
    attachment, location = alices_file
    assert len(stored(location)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(attachment.owner).post(reverse("account-delete"), {"secret": PASSWORD})
    assert response.status_code == 200
    assert stored(location) == []
    assert rows_referencing_user(attachment.owner_id) == {}
