"""The attachments API over HTTP: upload, list, show, delete, download; owner only; hostile files refused."""

from __future__ import annotations

import time
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from documents import samples
from documents.models import Attachment, Chunk
from documents.tests.conftest import make_conversation, make_user, stored_files


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def upload(client: Client, conversation, name: str, data: bytes):
    url = reverse("attachments", args=[conversation.id])
    return client.post(url, {"file": SimpleUploadedFile(name, data)})


def wait_settled(attachment_id, timeout: float = 15.0) -> Attachment:
    """Wait for the pool to finish with an attachment (a condition, polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attachment = Attachment.objects.get(pk=attachment_id)
        if attachment.is_settled:
            return attachment
        time.sleep(0.02)
    raise TimeoutError(f"attachment {attachment_id} still {attachment.status}")


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def chat(alice):
    return make_conversation(alice)


# --- the happy path (the pool's threads read committed rows: transactional tests) -----------


@pytest.mark.django_db(transaction=True)
def test_an_upload_answers_201_and_becomes_ready_with_its_chunks(attachment_dir):
    alice = make_user("alice")
    chat = make_conversation(alice)
    client = signed_in(alice)
    data = samples.pdf_bytes(["Intro page.", "Middle page.", "The owls number 42."])

    response = upload(client, chat, "owls.pdf", data)

    assert response.status_code == 201
    body = response.json()
    assert {"id", "name", "size", "status"} <= set(body)
    assert (body["name"], body["size"], body["status"]) == ("owls.pdf", len(data), "pending")
    attachment = wait_settled(body["id"])
    assert (attachment.status, attachment.pages, attachment.kind) == ("ready", 3, "pdf")
    assert attachment.progress == 100
    assert list(Chunk.objects.filter(attachment=attachment).values_list("page", flat=True)) == [1, 2, 3]
    assert len(stored_files(attachment_dir)) == 1

    listed = client.get(reverse("attachments", args=[chat.id])).json()["attachments"]
    assert [(a["id"], a["status"], a["pages"]) for a in listed] == [(body["id"], "ready", 3)]
    one = client.get(reverse("attachment", args=[chat.id, body["id"]])).json()
    assert one["status"] == "ready"


@pytest.mark.django_db(transaction=True)
def test_a_file_refused_while_processing_keeps_a_failed_row_with_the_reason_and_no_bytes(attachment_dir):
    alice = make_user("alice")
    chat = make_conversation(alice)
    response = upload(signed_in(alice), chat, "locked.pdf", samples.encrypted_pdf_bytes(["secret"]))
    assert response.status_code == 201
    attachment = wait_settled(response.json()["id"])
    assert attachment.status == "failed"
    assert "encrypted" in attachment.error
    assert not attachment.file
    assert stored_files(attachment_dir) == []
    assert not Chunk.objects.filter(attachment=attachment).exists()


# --- refused at the door: nothing stored at all ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("photo.txt", samples.PNG_BYTES, 415, "unsupported_type"),
        ("tool.pdf", samples.ELF_BYTES, 415, "unsupported_type"),
        ("blob.txt", samples.RANDOM_BINARY, 415, "binary"),
        ("image.svg", samples.SVG_BYTES, 415, "unsupported_type"),
        ("archive.docx", samples.plain_zip_bytes(), 415, "unsupported_type"),
        ("empty.txt", b"", 400, "empty"),
    ],
    ids=["png", "elf", "binary", "svg", "zip", "empty"],
)
def test_binary_and_unsupported_uploads_are_refused_with_a_reason_and_nothing_stored(
    chat, attachment_dir, name, data, status, code
):
    response = upload(signed_in(chat.owner), chat, name, data)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not Attachment.objects.exists()
    assert stored_files(attachment_dir) == []


def test_an_upload_over_the_size_limit_is_refused_with_413(chat, attachment_dir, settings):
    settings.DOCUMENTS_MAX_BYTES = 1000
    response = upload(signed_in(chat.owner), chat, "big.txt", b"a" * 1001)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]
    huge = upload(signed_in(chat.owner), chat, "huge.txt", b"a" * 200_000)  # refused by its length alone
    assert huge.status_code == 413
    assert not Attachment.objects.exists()
    assert stored_files(attachment_dir) == []


def test_a_conversation_holds_at_most_the_configured_number_of_files(chat, settings):
    settings.DOCUMENTS_MAX_PER_CONVERSATION = 1
    client = signed_in(chat.owner)
    assert upload(client, chat, "one.txt", b"one").status_code == 201
    second = upload(client, chat, "two.txt", b"two")
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "too_many"


def test_a_post_without_a_file_field_is_refused(chat):
    response = signed_in(chat.owner).post(reverse("attachments", args=[chat.id]), {"other": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_file"


def test_the_stored_name_is_sanitised_and_the_path_is_not_the_users(chat, attachment_dir):
    response = upload(signed_in(chat.owner), chat, "../../etc/pa<ss>wd.txt", b"hello")
    assert response.json()["name"] == "pa_ss_wd.txt"
    attachment = Attachment.objects.get()
    assert attachment.file.name == f"{chat.id}/{attachment.id}"
    assert [p.relative_to(attachment_dir).as_posix() for p in stored_files(attachment_dir)] == [
        f"{chat.id}/{attachment.id}"
    ]


# --- delete and download ---------------------------------------------------------------------


def test_delete_removes_the_row_its_chunks_and_its_file(
    chat, attachment_dir, django_capture_on_commit_callbacks
):
    client = signed_in(chat.owner)
    attachment_id = upload(client, chat, "notes.txt", b"some notes").json()["id"]
    assert len(stored_files(attachment_dir)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(reverse("attachment", args=[chat.id, attachment_id]))
    assert response.status_code == 204
    assert not Attachment.objects.filter(pk=attachment_id).exists()
    assert stored_files(attachment_dir) == []


@pytest.mark.parametrize(
    ("name", "data", "served_as"),
    [
        ("page.html", b"<html><body><script>alert(1)</script></body></html>", "text/plain; charset=utf-8"),
        ("notes.txt", b"plain words", "text/plain; charset=utf-8"),
        ("doc.pdf", samples.pdf_bytes(["x"]), "application/pdf"),
    ],
)
def test_a_download_is_always_an_attachment_never_rendered(chat, name, data, served_as):
    client = signed_in(chat.owner)
    attachment_id = upload(client, chat, name, data).json()["id"]
    response = client.get(reverse("attachment-download", args=[chat.id, attachment_id]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Disposition"].startswith("attachment;")
    assert name in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == served_as
    assert "sandbox" in response["Content-Security-Policy"]


# --- nobody else sees anything -----------------------------------------------------------------


def test_another_user_gets_404_for_every_attachment_url(chat):
    owner = signed_in(chat.owner)
    attachment_id = upload(owner, chat, "secret.txt", b"alice's secret plans").json()["id"]
    mallory = signed_in(make_user("mallory"))
    urls = [
        reverse("attachments", args=[chat.id]),
        reverse("attachment", args=[chat.id, attachment_id]),
        reverse("attachment-download", args=[chat.id, attachment_id]),
    ]
    missing = uuid.uuid4()
    for url in urls:
        for method in ("get", "post", "delete"):
            response = getattr(mallory, method)(url)
            assert response.status_code in {404, 405}, (method, url, response.status_code)
            assert b"secret" not in response.content
        assert mallory.get(url).status_code == 404
    # Mallory's own conversation does not reach Alice's attachment either.
    own = make_conversation(mallory_user := make_user("mallory2"))
    other = signed_in(mallory_user)
    assert other.get(reverse("attachment", args=[own.id, attachment_id])).status_code == 404
    assert other.get(reverse("attachment-download", args=[own.id, attachment_id])).status_code == 404
    assert other.delete(reverse("attachment", args=[own.id, attachment_id])).status_code == 404
    assert other.get(reverse("attachment", args=[chat.id, missing])).status_code == 404
    assert Attachment.objects.filter(pk=attachment_id).exists()
    listed = upload(mallory, chat, "mine.txt", b"x")
    assert listed.status_code == 404
    assert Attachment.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(chat):
    response = Client().get(reverse("attachments", args=[chat.id]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_uploads_and_deletes_need_the_csrf_token(chat):
    client = signed_in(chat.owner, enforce_csrf_checks=True)
    refused = upload(client, chat, "notes.txt", b"words")
    assert refused.status_code == 403
    attachment_id = upload(signed_in(chat.owner), chat, "notes.txt", b"words").json()["id"]
    assert client.delete(reverse("attachment", args=[chat.id, attachment_id])).status_code == 403
    assert Attachment.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "make", "code_words"),
    [
        ("locked.pdf", lambda: samples.encrypted_pdf_bytes(["secret"]), "encrypted"),
        ("broken.pdf", lambda: samples.pdf_bytes(["one", "two"])[:300] + b"\x00junk" * 40, "damaged"),
        ("scan.pdf", lambda: samples.pdf_bytes(["", ""]), "scanned"),
        ("long.pdf", lambda: samples.pdf_bytes(["p"] * 4), "4 pages"),
        ("bomb.docx", lambda: samples.zip_bomb_docx_bytes(20 * 1024 * 1024), "zip bomb"),
    ],
    ids=["encrypted-pdf", "corrupt-pdf", "scanned-pdf", "too-many-pages", "docx-zip-bomb"],
)
def test_each_hostile_file_ends_failed_with_its_reason_and_nothing_kept(
    chat, attachment_dir, settings, name, make, code_words
):
    """What the worker thread does, run here: the file is read, refused, deleted; the chip gets the reason."""
    from documents.processing import process_attachment

    settings.DOCUMENTS_MAX_PAGES = 3
    response = upload(signed_in(chat.owner), chat, name, make())
    assert response.status_code == 201
    assert len(stored_files(attachment_dir)) == 1

    attachment = process_attachment(uuid.UUID(response.json()["id"]))

    assert attachment.status == "failed"
    assert code_words in attachment.error
    assert not attachment.file
    assert stored_files(attachment_dir) == []
    assert not Chunk.objects.exists()
    listed = signed_in(chat.owner).get(reverse("attachments", args=[chat.id])).json()["attachments"]
    assert [(a["status"], a["error"]) for a in listed] == [("failed", attachment.error)]


def test_an_attachment_left_unsettled_by_a_dead_process_is_marked_failed_when_listed(chat, attachment_dir):
    from datetime import timedelta

    from django.utils import timezone

    client = signed_in(chat.owner)
    attachment_id = upload(client, chat, "notes.txt", b"some notes").json()["id"]
    Attachment.objects.filter(pk=attachment_id).update(
        status="processing", updated_at=timezone.now() - timedelta(minutes=10)
    )
    listed = client.get(reverse("attachments", args=[chat.id])).json()["attachments"]
    assert listed[0]["status"] == "failed"
    assert "interrupted" in listed[0]["error"]
    assert stored_files(attachment_dir) == []
