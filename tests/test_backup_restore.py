"""docs/operations.md's backup and restore, for real: pg_dump the test database,
pg_restore it into a fresh database, serve that with daphne and open a conversation."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
import uuid

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conftest import require_service
from conversations.models import Conversation, Message
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def restore_target(live_database_url):
    """A fresh, empty database on the same server, dropped afterwards."""
    require_service("pg_dump and pg_restore", bool(shutil.which("pg_dump") and shutil.which("pg_restore")))
    name = f"chatplatform_deploy_restore_{uuid.uuid4().hex[:8]}"
    maintenance = re.sub(r"/[^/]+$", "/postgres", live_database_url)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield re.sub(r"/[^/]+$", f"/{name}", live_database_url)
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_then_restore_into_a_new_database_serves_the_same_conversation(
    live_database_url, restore_target, tmp_path
):
    user = get_user_model().objects.create_user("backup-user", password="pw-for-tests-1")
    conversation = Conversation.objects.create(owner=user, title="Before the backup")
    asked = Message.objects.create(conversation=conversation, role="user", content="What survives a restore?")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Every committed row.", parent=asked
    )
    client = Client()
    client.force_login(user)  # the session row is data too: it is restored with the rest
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    dump = tmp_path / "chat.dump"

    # The commands of docs/operations.md, "Backup and restore".
    backup = subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", live_database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert backup.returncode == 0, backup.stderr
    restore = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restore_target}", str(dump)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(restore_target) as conn:
        restored = conn.execute(
            "SELECT count(*) FROM conversations_message WHERE conversation_id = %s", [conversation.id]
        ).fetchone()[0]

    env = {"DATABASE_URL": restore_target, "APP_ENV": "test", "LLM_PROVIDER": "fake", "LOG_LEVEL": "WARNING"}
    with daphne(env, log_dir=tmp_path, name="restored") as server:
        request = urllib.request.Request(f"{server.url}/c/{conversation.id}/", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=10) as response:
            status, page = response.status, response.read().decode()

    print(  # the restore check's output (-s): what was dumped, restored and served
        f"backup: pg_dump -Fc {dump.stat().st_size} bytes; restore: pg_restore into "
        f"{restore_target.rsplit('/', 1)[1]} exit {restore.returncode}; {restored} messages restored; "
        f"GET /c/{conversation.id}/ on the restored database: {status}, "
        f"title and both messages {'present' if 'Every committed row.' in page else 'MISSING'}"
    )
    assert restored == 2
    assert status == 200
    assert "Before the backup" in page
    assert "What survives a restore?" in page and "Every committed row." in page
