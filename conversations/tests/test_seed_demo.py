"""`manage.py seed_demo`: the rows it makes are as many, as chained and as varied as asked."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, Max
from django.utils import timezone

from conversations.models import Conversation, Message, UsageEvent

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded():
    seed("--conversations", "40", "--messages", "400", "--users", "5", "--seed", "7")


def test_it_makes_the_numbers_asked_for(seeded):
    assert Conversation.objects.count() == 40
    assert Message.objects.count() == 400
    assert get_user_model().objects.filter(username__startswith="demo-").count() == 5


def test_it_reports_what_it_made():
    output = seed("--conversations", "3", "--messages", "12", "--users", "2")
    assert output.startswith("Seeded 3 conversations, 12 messages and ")


def test_replies_follow_questions_on_a_chain_of_parents(seeded):
    for message in Message.objects.select_related("parent"):
        if message.role == Message.Role.USER:
            assert message.parent is None or message.parent.role == Message.Role.ASSISTANT
        else:
            assert message.parent.role == Message.Role.USER
        if message.parent is not None:
            assert message.parent.conversation_id == message.conversation_id
            assert message.parent.created_at < message.created_at


def test_some_replies_were_regenerated_onto_a_new_branch(seeded):
    forks = Message.objects.filter(role=Message.Role.ASSISTANT).values("parent").annotate(n=Count("id"))
    assert forks.filter(n__gt=1).exists()


def test_every_reply_has_its_usage_event_with_the_same_tokens(seeded):
    replies = Message.objects.filter(role=Message.Role.ASSISTANT)
    assert UsageEvent.objects.count() == replies.count()
    for event in UsageEvent.objects.select_related("message"):
        assert event.message.role == Message.Role.ASSISTANT
        assert (event.prompt_tokens, event.completion_tokens) == (
            event.message.prompt_tokens,
            event.message.completion_tokens,
        )
        assert event.user_id == event.conversation.owner_id


def test_usage_is_spread_over_the_last_days_and_varied(seeded):
    now = timezone.now()
    events = UsageEvent.objects.all()
    assert not events.filter(created_at__gt=now).exists()
    assert not events.filter(created_at__lt=now - timedelta(days=30)).exists()
    assert events.values("created_at__date").distinct().count() >= 10
    assert events.values("provider").distinct().count() >= 2
    assert events.values("model").distinct().count() >= 3
    assert set(events.values_list("status", flat=True)) >= {"ok", "failed"}
    assert events.filter(status="failed").exclude(error_code="").exists()


def test_conversations_were_updated_when_their_last_message_was(seeded):
    latest = dict(
        Message.objects.values("conversation")
        .annotate(last=Max("created_at"))
        .values_list("conversation", "last")
    )
    for conversation in Conversation.objects.filter(pk__in=latest):
        assert conversation.updated_at == latest[conversation.pk]


def test_nothing_is_left_streaming(seeded):
    assert not Message.objects.filter(status=Message.Status.STREAMING).exists()


def test_content_is_markdown_ish(seeded):
    assert Message.objects.filter(content__contains="```").exists()
    assert Message.objects.filter(content__contains="| --- |").exists()


def test_running_twice_reuses_the_demo_users():
    seed("--conversations", "2", "--messages", "4", "--users", "3")
    seed("--conversations", "2", "--messages", "4", "--users", "3")
    assert get_user_model().objects.count() == 3
    assert Conversation.objects.count() == 4


def test_nonsense_arguments_are_refused():
    with pytest.raises(CommandError):
        seed("--conversations", "0")
