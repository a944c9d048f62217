"""`manage.py purge_old_conversations`: dry run by default, deletes only what is older than the retention."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations.models import Conversation, Message, UsageEvent
from conversations.tests.conftest import make_user

pytestmark = pytest.mark.django_db


def aged(owner, *, days: float, title: str, message_days: float | None = None, **extra) -> Conversation:
    at = timezone.now() - timedelta(days=days)
    conversation = Conversation.objects.create(owner=owner, title=title, created_at=at, updated_at=at)
    message_at = timezone.now() - timedelta(days=message_days if message_days is not None else days)
    Message.objects.create(
        conversation=conversation, role="user", content=title, created_at=message_at, **extra
    )
    return conversation


@pytest.fixture
def chats(settings):
    settings.CHAT_RETENTION_DAYS = 30
    alice = make_user("alice")
    return {
        "old": aged(alice, days=31, title="old"),
        "ancient": aged(alice, days=400, title="ancient"),
        "recent": aged(alice, days=29, title="recent"),
        # Idle by its timestamp, but a message arrived within the retention: kept.
        "revived": aged(alice, days=40, title="revived", message_days=1),
    }


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_old_conversations", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(Conversation.objects.values_list("title", flat=True))


def test_a_dry_run_reports_and_deletes_nothing(chats):
    output = purge()
    assert "Dry run: 2 conversation(s) with 2 message(s)" in output
    assert remaining() == {"old", "ancient", "recent", "revived"}


def test_yes_deletes_only_what_is_older_than_the_retention(chats):
    UsageEvent.objects.create(
        user=chats["old"].owner, conversation=chats["old"], provider="fake", status="ok"
    )
    output = purge("--yes")
    assert "Deleted 2 conversation(s)" in output
    assert remaining() == {"recent", "revived"}
    assert not Message.objects.filter(conversation_id__in=[chats["old"].id, chats["ancient"].id]).exists()
    # The usage ledger stays (quotas are not reset by deleting a chat).
    assert UsageEvent.objects.get().conversation_id is None


def test_days_overrides_the_setting(chats):
    purge("--yes", "--days", "100")
    assert remaining() == {"old", "recent", "revived"}


def test_a_reply_being_written_keeps_its_conversation(chats):
    Message.objects.create(
        conversation=chats["ancient"],
        role="assistant",
        status="streaming",
        created_at=chats["ancient"].updated_at,
    )
    purge("--yes")
    assert "ancient" in remaining()


def test_retention_zero_keeps_everything(chats, settings):
    settings.CHAT_RETENTION_DAYS = 0
    assert "Retention is off" in purge("--yes")
    assert len(remaining()) == 4
    with pytest.raises(CommandError):
        purge("--days", "-1")
