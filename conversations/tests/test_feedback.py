"""Feedback on replies: stored per reply, withdrawable, in the admin and on the usage page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.admin_usage import usage_context
from conversations.feedback import FeedbackRefused, message_feedback_set
from conversations.models import Message
from conversations.tests import rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply():
    conversation = rows.conversation(rows.user())
    _, answer = rows.exchange(conversation, "question", "answer")
    return answer


def post(client, reply, rating):
    client.force_login(reply.conversation.owner)
    return client.post(
        reverse("conversation-feedback", args=[reply.conversation_id]),
        {"message_id": str(reply.id), "rating": rating},
        HTTP_ACCEPT="application/json",
    )


def test_good_response_is_stored_on_the_reply(client, reply):
    response = post(client, reply, "good")
    assert response.json() == {"message_id": str(reply.id), "feedback": "good"}
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_at is not None) == ("good", True)


def test_changing_and_withdrawing_feedback(client, reply):
    post(client, reply, "good")
    post(client, reply, "bad")
    reply.refresh_from_db()
    assert reply.feedback == "bad"
    post(client, reply, "")
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_at) == ("", None)


def test_feedback_on_a_user_message_or_a_running_reply_is_refused(reply):
    with pytest.raises(FeedbackRefused):
        message_feedback_set(conversation=reply.conversation, message_id=reply.parent_id, rating="good")
    running = rows.message(reply.conversation, "", role="assistant", status="streaming", parent=reply.parent)
    with pytest.raises(FeedbackRefused) as refused:
        message_feedback_set(conversation=reply.conversation, message_id=running.id, rating="good")
    assert refused.value.code == "busy"


def test_an_unknown_rating_is_a_400(client, reply):
    assert post(client, reply, "meh").status_code == 400
    reply.refresh_from_db()
    assert reply.feedback == ""


def test_the_page_shows_the_given_feedback_pressed(client, reply):
    post(client, reply, "bad")
    html = client.get(reverse("conversation", args=[reply.conversation_id])).content.decode()
    assert 'data-rating="bad" aria-pressed="true"' in html
    assert 'data-rating="good" aria-pressed="false"' in html


def test_the_admin_lists_and_filters_replies_by_feedback(admin_client, reply):
    Message.objects.filter(pk=reply.pk).update(feedback="bad")
    url = reverse("admin:conversations_message_changelist")
    bad = admin_client.get(url, {"feedback__exact": "bad"}).content.decode()
    good = admin_client.get(url, {"feedback__exact": "good"}).content.decode()
    assert "answer" in bad and "Bad response" in bad
    assert "answer" not in good.split('id="result_list"')[-1]


def test_the_usage_page_counts_feedback(admin_client, reply):
    post_client = admin_client
    message_feedback_set(conversation=reply.conversation, message_id=reply.id, rating="good")
    assert usage_context()["feedback"] == {"good": 1, "bad": 0}
    html = post_client.get(reverse("admin:usage")).content.decode()
    assert 'id="feedback"' in html
