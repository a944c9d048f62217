"""`manage.py seed_demo`: fill the database with realistic chats for demos, the admin and benchmarks.

Rows are built in memory and written with bulk_create in batches inside one
transaction, so 30,000 messages take seconds, and a failed run leaves nothing.
Content is generated from a seeded random source: the same arguments give
the same texts (ids and timestamps differ).
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, Message, UsageEvent

# (provider, model, weight): what a mixed deployment looks like.
MODELS = [
    ("openai", "gpt-4o-mini", 40),
    ("openai", "gpt-4.1", 12),
    ("openai", "llama-3.1-8b-instruct", 14),
    ("llamacpp", "SmolLM2-135M-Instruct", 22),
    ("llamacpp", "qwen2.5-0.5b-instruct", 8),
    ("fake", "fake-scripted", 4),
]
# (error_code, weight) of failed calls, per provider family.
ERRORS = {
    "openai": [("timeout", 5), ("rate_limited", 4), ("upstream_error", 3), ("context_length", 1)],
    "llamacpp": [("model_error", 3), ("context_length", 2), ("timeout", 1)],
    "fake": [("scripted_failure", 1)],
}
TOPICS = [
    ("python", "Refactor a slow Python loop", "list comprehensions"),
    ("postgres", "Why is my PostgreSQL query slow", "EXPLAIN ANALYZE"),
    ("django", "Django signals vs overriding save", "transaction.on_commit"),
    ("travel", "Three days in Lisbon", "the tram 28"),
    ("cooking", "A weeknight risotto", "arborio rice"),
    ("rust", "Borrow checker errors explained", "lifetimes"),
    ("kubernetes", "Readiness vs liveness probes", "a crash loop"),
    ("writing", "Tighten a cover letter", "active voice"),
    ("math", "Intuition for eigenvectors", "a rotation matrix"),
    ("regex", "Match ISO dates with a regex", "named groups"),
    ("git", "Undo the last commit safely", "git revert"),
    ("fitness", "A beginner running plan", "easy pace"),
    ("css", "Center a div, really", "flexbox"),
    ("budget", "Plan a monthly budget", "the 50/30/20 rule"),
    ("history", "Causes of the Hundred Years' War", "the Salic law"),
    ("redis", "Redis as a rate limiter", "a sliding window"),
]
QUESTIONS = [
    "Can you explain {detail} with a short example?",
    "I'm stuck on {topic}. What would you try first?",
    "What is the difference between {detail} and the alternative?",
    "Give me a checklist for {topic}.",
    "Why does this happen with {detail}? It worked yesterday.",
    "Summarise the trade-offs of {detail} in three bullet points.",
    "Could you rewrite that more concisely?",
    "Thanks! One more question about {detail}: is it safe in production?",
]
OPENERS = [
    "Good question. Here is the short version:",
    "There are a few things going on here.",
    "Sure. Let's take it step by step.",
    "The usual culprit is **{detail}**.",
]
CODE = {
    "python": "```python\ntotals = [row.amount for row in rows if row.paid]\nprint(sum(totals))\n```",
    "postgres": "```sql\nEXPLAIN ANALYZE\nSELECT * FROM orders WHERE customer_id = 42;\n```",
    "django": "```python\ntransaction.on_commit(lambda: notify(order.pk))\n```",
    "rust": "```rust\nfn longest<'a>(a: &'a str, b: &'a str) -> &'a str {\n    if a.len() > b.len() { a } else { b }\n}\n```",
    "regex": '```python\nre.compile(r"(?P<year>\\d{4})-(?P<month>\\d{2})-(?P<day>\\d{2})")\n```',
    "git": "```bash\ngit revert HEAD\n```",
    "css": "```css\n.parent { display: flex; align-items: center; justify-content: center; }\n```",
    "redis": "```python\npipe.zadd(key, {now: now}).zremrangebyscore(key, 0, now - window)\n```",
    "kubernetes": "```yaml\nreadinessProbe:\n  httpGet: {path: /health, port: 8000}\n```",
}


REGENERATE_RATE = 0.05
USAGE_STATUS = {
    Message.Status.COMPLETE: UsageEvent.Status.OK,
    Message.Status.CANCELLED: UsageEvent.Status.CANCELLED,
}


def _weighted(rng: random.Random, choices: list[tuple]) -> tuple:
    return rng.choices(choices, weights=[c[-1] for c in choices])[0]


def _question(rng: random.Random, topic: tuple[str, str, str]) -> str:
    return rng.choice(QUESTIONS).format(topic=topic[1].lower(), detail=topic[2])


def _answer(rng: random.Random, topic: tuple[str, str, str]) -> str:
    key, title, detail = topic
    parts = [rng.choice(OPENERS).format(detail=detail), ""]
    shape = rng.random()
    if shape < 0.35:
        parts += [
            f"1. Start with {detail}.",
            "2. Measure before changing anything.",
            "3. Keep the change small.",
            "",
        ]
    elif shape < 0.6:
        parts += [
            "| Option | Pro | Con |",
            "| --- | --- | --- |",
            f"| {detail} | simple | easy to misuse |",
            "| the alternative | explicit | more code |",
            "",
        ]
    else:
        parts += [
            f"- *Why*: {title.lower()} usually comes down to {detail}.",
            "- *How*: try the smallest fix.",
            "",
        ]
    if key in CODE and rng.random() < 0.6:
        parts += [CODE[key], ""]
    parts.append(
        rng.choice(["Hope that helps!", "Want me to go deeper on any step?", "> Tip: write a test first."])
    )
    return "\n".join(parts)


def _token_count(text: str) -> int:
    return max(1, len(text) // 4)  # ~4 characters per token, good enough for demo figures


class Command(BaseCommand):
    help = "Create demo users, conversations, messages and usage events (bulk inserts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conversations", type=int, default=50, help="conversations to create")
        parser.add_argument("--messages", type=int, default=500, help="messages in all, spread over them")
        parser.add_argument("--users", type=int, default=10, help="demo users (demo-001...) to own them")
        parser.add_argument("--days", type=int, default=30, help="spread activity over this many past days")
        parser.add_argument(
            "--password", default="", help="shared password for the demo users (else unusable)"
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed for the generated text")
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args, **options) -> None:
        n_conversations, n_messages = options["conversations"], options["messages"]
        n_users, days, batch = options["users"], options["days"], options["batch_size"]
        if n_conversations < 1 or n_users < 1 or days < 1 or batch < 1:
            raise CommandError("--conversations, --users, --days and --batch-size must be at least 1")
        if n_messages < 0:
            raise CommandError("--messages cannot be negative")
        rng = random.Random(options["seed"])
        started = time.perf_counter()
        with transaction.atomic():
            users = self._users(n_users, options["password"])
            conversations, messages, events = self._build(rng, users, n_conversations, n_messages, days)
            Conversation.objects.bulk_create(conversations, batch_size=batch)
            Message.objects.bulk_create(messages, batch_size=batch)
            UsageEvent.objects.bulk_create(events, batch_size=batch)
        elapsed = time.perf_counter() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(conversations)} conversations, {len(messages)} messages and "
                f"{len(events)} usage events for {len(users)} users in {elapsed:.1f} s"
            )
        )

    def _users(self, count: int, password: str) -> list:
        User = get_user_model()
        # One hash for everyone: hashing is deliberately slow, seeding should not be.
        hashed = make_password(password or None)
        names = [f"demo-{i:03d}" for i in range(1, count + 1)]
        User.objects.bulk_create(
            [User(username=name, email=f"{name}@example.com", password=hashed) for name in names],
            ignore_conflicts=True,
        )
        return list(User.objects.filter(username__in=names).order_by("username"))

    def _build(
        self, rng: random.Random, users: list, n_conversations: int, n_messages: int, days: int
    ) -> tuple[list[Conversation], list[Message], list[UsageEvent]]:
        now = timezone.now()
        # Share the messages out unevenly, as real chats are: most short, a few
        # long (a Pareto tail; alpha 2.5 keeps the longest to a few hundred).
        weights = [rng.paretovariate(2.5) for _ in range(n_conversations)]
        scale = n_messages / sum(weights)
        sizes = [int(w * scale) for w in weights]
        for i in rng.sample(range(n_conversations), n_messages - sum(sizes)):
            sizes[i] += 1
        conversations: list[Conversation] = []
        messages: list[Message] = []
        events: list[UsageEvent] = []
        for size in sizes:
            topic = rng.choice(TOPICS)
            provider, model, _ = _weighted(rng, MODELS)
            # Early enough that its last message (at most 240 s per step) is still in the past.
            span = size * 240 + 60
            started = now - timedelta(seconds=rng.uniform(span, max(span, days * 86400)))
            conversation = Conversation(
                id=uuid.uuid4(),
                owner=rng.choice(users),
                title=topic[1] if rng.random() < 0.9 else "",
                model=model,
                system_prompt="You are a concise, friendly assistant." if rng.random() < 0.3 else "",
                archived=rng.random() < 0.1,
                created_at=started,
            )
            last = self._messages(rng, conversation, topic, provider, size, started, messages, events)
            conversation.updated_at = last
            conversations.append(conversation)
        return conversations, messages, events

    def _messages(
        self,
        rng: random.Random,
        conversation: Conversation,
        topic: tuple[str, str, str],
        provider: str,
        size: int,
        at: datetime,
        messages: list[Message],
        events: list[UsageEvent],
    ) -> datetime:
        parent: Message | None = None
        context_tokens = 0
        made = 0
        while made < size:
            at += timedelta(seconds=rng.uniform(5, 240))
            if parent is None or parent.role == Message.Role.ASSISTANT:
                content = _question(rng, topic)
                parent = Message(
                    id=uuid.uuid4(),
                    conversation=conversation,
                    role=Message.Role.USER,
                    content=content,
                    client_id=uuid.uuid4(),
                    parent=parent,
                    created_at=at,
                    updated_at=at,
                )
                messages.append(parent)
                made += 1
                context_tokens += _token_count(content)
                continue
            reply = self._reply(rng, conversation, topic, provider, parent, context_tokens, at)
            messages.append(reply)
            events.append(self._event(conversation, provider, reply))
            made += 1
            if made < size and rng.random() < REGENERATE_RATE:
                # The person asked for another answer: a sibling on the same
                # parent, created later, so it is the branch the chat goes on from.
                at += timedelta(seconds=rng.uniform(5, 60))
                reply = self._reply(rng, conversation, topic, provider, parent, context_tokens, at)
                messages.append(reply)
                events.append(self._event(conversation, provider, reply))
                made += 1
            context_tokens += reply.completion_tokens
            parent = reply
        return at

    def _event(self, conversation: Conversation, provider: str, reply: Message) -> UsageEvent:
        return UsageEvent(
            user=conversation.owner,
            conversation=conversation,
            message=reply,
            provider=provider,
            model=reply.model,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            ttft_ms=reply.ttft_ms,
            duration_ms=reply.duration_ms,
            status=USAGE_STATUS.get(reply.status, UsageEvent.Status.FAILED),
            error_code=reply.error_code,
            created_at=reply.created_at,
        )

    def _reply(
        self,
        rng: random.Random,
        conversation: Conversation,
        topic: tuple[str, str, str],
        provider: str,
        parent: Message | None,
        context_tokens: int,
        at: datetime,
    ) -> Message:
        roll = rng.random()
        content = _answer(rng, topic)
        status, error_code, error, finish = Message.Status.COMPLETE, "", "", "stop"
        ttft = int(rng.lognormvariate(5.5 if provider != "llamacpp" else 6.3, 0.5))
        if roll < 0.04:
            status, error_code, finish = Message.Status.FAILED, _weighted(rng, ERRORS[provider])[0], "error"
            error, content = "The model could not answer. Try again.", ""
        elif roll < 0.05:
            status, error_code, finish = Message.Status.INTERRUPTED, "interrupted", "interrupted"
            error = "The server stopped while this reply was being written."
            content = content[: rng.randint(10, max(11, len(content) // 2))]
        elif roll < 0.09:
            status, finish = Message.Status.CANCELLED, "cancelled"
            content = content[: rng.randint(10, max(11, len(content) // 2))]
        completion = _token_count(content) if content else 0
        return Message(
            id=uuid.uuid4(),
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=content,
            status=status,
            parent=parent,
            model=conversation.model,
            finish_reason=finish,
            error_code=error_code,
            error=error,
            prompt_tokens=context_tokens,
            completion_tokens=completion,
            ttft_ms=ttft if content else None,
            duration_ms=ttft + completion * rng.randint(8, 40),
            created_at=at,
            updated_at=at,
        )
