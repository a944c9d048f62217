"""The version tree of a conversation: the versions of each shown message, and
switching which version (and so which branch) is shown, by the switcher or by
opening a search hit that lives in another branch (`hit_branch`).

Edit, regenerate and retry never delete: they add a sibling (a message with
the same parent). The siblings of a message are its versions, oldest first.
The owner's choice of branch is kept on the conversation (`current_leaf`,
`branch_chosen_at`; see `Conversation.visible_message_ids`), so every tab, a
reload, an export and the parent of the next send agree on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from django.db import transaction
from django.utils import timezone

from conversations.events import conversation_payload, publish_on_commit
from conversations.models import Conversation, Message

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Versions:
    """Where a message stands among its siblings: "2 / 3" and its neighbours."""

    index: int  # 1-based
    count: int
    previous_id: uuid.UUID | None
    next_id: uuid.UUID | None


class VersionRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _rows(conversation: Conversation) -> list[tuple[uuid.UUID, uuid.UUID | None, object]]:
    return list(
        Message.objects.filter(conversation=conversation)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("created_at", "id")
        .values_list("id", "parent_id", "created_at")
    )


def attach_versions(*, conversation: Conversation, messages: Iterable[Message]) -> None:
    """Set `message.versions` (None for a message without siblings) on each of `messages`."""
    messages = list(messages)
    if not messages:
        return
    siblings: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for message_id, parent_id, _ in _rows(conversation):
        siblings.setdefault(parent_id, []).append(message_id)
    for message in messages:
        group = siblings.get(message.parent_id, [])
        if len(group) < 2 or message.id not in group:
            message.versions = None
            continue
        position = group.index(message.id)
        message.versions = Versions(
            index=position + 1,
            count=len(group),
            previous_id=group[position - 1] if position > 0 else None,
            next_id=group[position + 1] if position + 1 < len(group) else None,
        )


def newest_leaf_under(
    rows: list[tuple[uuid.UUID, uuid.UUID | None, object]], message_id: uuid.UUID
) -> uuid.UUID:
    """The newest message among `message_id` and its descendants (`rows`: id, parent_id,
    created_at): the end of the branch as it last continued from that message."""
    children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for row_id, parent_id, _ in rows:
        children.setdefault(parent_id, []).append(row_id)
    created = {row[0]: row[2] for row in rows}
    subtree, stack = [], [message_id]
    while stack:
        current = stack.pop()
        subtree.append(current)
        stack.extend(children.get(current, []))
    return max(subtree, key=lambda i: (created[i], str(i)))


@dataclass(frozen=True, slots=True)
class HitBranch:
    """The branch to show for a search hit (`/c/<id>/?m=<message id>`)."""

    message_id: uuid.UUID
    leaf_id: uuid.UUID
    # The hit is not on the branch the conversation shows now: the page shows the
    # hit's branch and asks `version_show` to remember it (a POST, never the GET).
    switch: bool
    # A reply is being written: the branch cannot be switched now (`version_show`
    # would refuse), so the page stays on the shown branch and says why.
    busy: bool


def hit_branch(*, conversation: Conversation, message_id: uuid.UUID) -> HitBranch | None:
    """Where the hit `message_id` lives, or None when it is not a message of this
    conversation (a foreign or unknown id is ignored, never told apart). Two queries at most."""
    rows = _rows(conversation)
    if not any(row[0] == message_id for row in rows):
        return None
    shown_leaf = conversation.shown_leaf_id(rows)
    parents = {row[0]: row[1] for row in rows}
    current: uuid.UUID | None = shown_leaf
    for _ in rows:  # at most one step per message, whatever the rows hold
        if current is None:
            break
        if current == message_id:
            return HitBranch(message_id=message_id, leaf_id=shown_leaf, switch=False, busy=False)
        current = parents.get(current)
    busy = Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).exists()
    leaf = shown_leaf if busy else newest_leaf_under(rows, message_id)
    return HitBranch(message_id=message_id, leaf_id=leaf, switch=not busy, busy=busy)


@transaction.atomic
def version_show(*, conversation: Conversation, message_id: uuid.UUID) -> uuid.UUID:
    """Show the branch through `message_id`: the path to its newest descendant
    (the conversation as it last continued from that version). Returns the new leaf.

    Every tab of the conversation hears `conversation.updated` with
    `current_leaf_id`, and fetches the branch.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    rows = _rows(conversation)
    ids = {row[0] for row in rows}
    if message_id not in ids:
        raise VersionRefused("not_found", "No such message in this conversation.")
    if Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).exists():
        # The running reply would vanish from the page while it is being written.
        raise VersionRefused("busy", "A reply is still being written; stop it or wait before switching.")
    leaf = newest_leaf_under(rows, message_id)
    # Not before the newest message: the choice holds until a newer message exists.
    conversation.current_leaf_id = leaf
    conversation.branch_chosen_at = max(timezone.now(), max(row[2] for row in rows))
    conversation.save(update_fields=["current_leaf", "branch_chosen_at"])
    payload = conversation_payload(conversation)["conversation"]
    publish_on_commit(
        conversation.id, "conversation.updated", conversation={**payload, "current_leaf_id": str(leaf)}
    )
    log.info(
        "version_shown", conversation_id=str(conversation.id), message_id=str(message_id), leaf_id=str(leaf)
    )
    return leaf
