"""The retrieval check: a fixed set of documents and questions, and the hit rate of the right passage in the top 3.

Five documents in five formats (a PDF report, Markdown recipes, a CSV staff
list, a Word policy, a plain-text history), each fact in one place among
filler that shares the documents' vocabulary, and twenty-five questions worded
as people ask them (not copied from the text; five share few words with it). `run()` indexes them through the
real extraction, chunking and full-text index, asks `passages_for` each
question with a budget too small for whole documents, and counts a hit when
the passage holding the expected words is among the first three. Used by
`manage.py documents_eval` and by the tests, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from conversations.models import Conversation
from documents import samples
from documents.chunking import chunk_blocks
from documents.extraction import extract
from documents.files import sniff
from documents.models import Attachment
from documents.processing import store_chunks
from documents.retrieval import passages_for

# Small enough that no document is given whole: ranking decides.
BUDGET_TOKENS = 450
TOP = 3

_FILLER = [
    "The {topic} committee reviewed this section during the annual meeting and found it accurate.",
    "Further details about the {topic} are kept in the archive and may be requested by members.",
    "Readers should note that figures about the {topic} are rounded and may change next year.",
    "This part of the {topic} document was revised twice, most recently after public comments.",
]


def _filler(topic: str, n: int) -> str:
    return " ".join(_FILLER[i % len(_FILLER)].format(topic=topic) for i in range(n))


def _report_pdf() -> bytes:
    facts = [
        "Overview. Port Elsby harbour has been operated by the Elsby Maritime Authority since 1987.",
        "Cargo. In 2023 the harbour handled 4.2 million tonnes of cargo, mostly timber and grain.",
        "Fishing fleet. 37 trawlers are registered here; the largest, the Northern Gannet, is 48 metres long.",
        "Dredging. The main channel is dredged every 18 months to keep a depth of 11 metres.",
        "Safety. The lighthouse on Skerry Point flashes white every 6 seconds and is visible for 19 nautical miles.",
    ]
    pages = []
    for fact in facts:
        filler = _filler("harbour", 6)
        lines = [fact, ""] + [filler[i : i + 90] for i in range(0, len(filler), 90)]
        pages.append("\n".join(lines))
    return samples.pdf_bytes(pages)


def _recipes_md() -> bytes:
    sections = {
        "Sourdough": "Bake the sourdough loaf at 240 degrees Celsius for 20 minutes with the lid on.",
        "Lemon tart": "Blind bake the tart crust for 15 minutes before pouring in the lemon curd.",
        "Mushroom risotto": "Use arborio rice and stir the risotto for 18 minutes, adding stock slowly.",
        "Ginger tea": "Let the sliced ginger steep for 10 minutes, then sweeten the tea with honey.",
    }
    text = "# Kitchen notebook\n\n"
    for title, fact in sections.items():
        text += f"## {title}\n\n{_filler('kitchen', 3)}\n\n{fact}\n\n{_filler('kitchen', 3)}\n\n"
    return text.encode()


def _staff_csv() -> bytes:
    rows = ["name,role,office,phone"]
    people = [
        ("Marta Lindqvist", "accountant", "Tromsø", "+47 555 0142"),
        ("Jonas Berg", "engineer", "Bergen", "+47 555 0177"),
        ("Aisha Karim", "designer", "Oslo", "+47 555 0190"),
        ("Tomas Ek", "lawyer", "Stavanger", "+47 555 0123"),
    ]
    for i in range(40):
        rows.append(f"Person {i},assistant,Office {i % 7},+47 555 {1000 + i}")
        if i % 10 == 5:
            rows.append(",".join(people[i // 10]))
    return ("\n".join(rows) + "\n").encode()


def _policy_docx() -> bytes:
    items: list[tuple[str, str]] = []
    for heading, fact in [
        ("Remote work", "Employees may work remotely up to three days a week with their manager's consent."),
        ("Travel", "Flights are booked in economy class unless the flight lasts longer than six hours."),
        ("Equipment", "Company laptops are replaced every four years, or sooner when they fail."),
        ("Leave", "Parental leave is sixteen weeks on full pay for every new parent."),
    ]:
        items += [("h1", heading), ("p", _filler("policy", 3)), ("p", fact), ("p", _filler("policy", 3))]
    return samples.docx_bytes(items)


def _history_txt() -> bytes:
    facts = [
        "Vellmark was founded in 1642 by Danish merchants who traded salt and cod.",
        "The great fire of 1861 destroyed two hundred wooden houses in a single night.",
        "The railway reached Vellmark in 1903, linking the town to the capital.",
        "In 2020 the town counted 12,400 inhabitants, twice as many as a century before.",
    ]
    return "\n\n".join(f"{_filler('town', 4)}\n\n{fact}" for fact in facts).encode()


@dataclass(frozen=True)
class Question:
    text: str
    document: str
    expected: str  # words the right passage holds


DOCUMENTS = {
    "harbour-report.pdf": _report_pdf,
    "recipes.md": _recipes_md,
    "staff.csv": _staff_csv,
    "policy.docx": _policy_docx,
    "history.txt": _history_txt,
}

QUESTIONS = [
    Question(
        "How many tonnes of cargo went through the harbour in 2023?", "harbour-report.pdf", "4.2 million"
    ),
    Question("How long is the biggest trawler?", "harbour-report.pdf", "48 metres"),
    Question("How often does the channel get dredged?", "harbour-report.pdf", "every 18 months"),
    Question(
        "From how far away can you see the Skerry Point lighthouse?", "harbour-report.pdf", "19 nautical"
    ),
    Question("Who operates the harbour?", "harbour-report.pdf", "Elsby Maritime Authority"),
    Question("At what temperature do I bake sourdough?", "recipes.md", "240 degrees"),
    Question("Which rice goes into the mushroom risotto?", "recipes.md", "arborio"),
    Question("How long should ginger steep for tea?", "recipes.md", "10 minutes"),
    Question("For how long is the tart crust blind baked?", "recipes.md", "15 minutes"),
    Question("What is Marta Lindqvist's phone number?", "staff.csv", "0142"),
    Question("Which office does Jonas Berg work in?", "staff.csv", "Jonas Berg"),
    Question("Who is the lawyer in Stavanger?", "staff.csv", "Tomas Ek"),
    Question("How many days a week can I work remotely?", "policy.docx", "three days"),
    Question("When can flights be booked above economy class?", "policy.docx", "six hours"),
    Question("How often are laptops replaced?", "policy.docx", "four years"),
    Question("How long is parental leave?", "policy.docx", "sixteen weeks"),
    Question("When was Vellmark founded, and by whom?", "history.txt", "1642"),
    Question("How many houses burned in the great fire?", "history.txt", "two hundred"),
    Question("What year did the railway reach the town?", "history.txt", "1903"),
    Question("What was the population in 2020?", "history.txt", "12,400"),
    # Worded away from the text: only some of their words are in the passage.
    Question("How big is the town today?", "history.txt", "12,400"),
    Question("What year did the fire happen?", "history.txt", "1861"),
    Question("How deep is the channel kept?", "harbour-report.pdf", "11 metres"),
    Question("Can I fly business class on long trips?", "policy.docx", "six hours"),
    Question("What should the tea be sweetened with?", "recipes.md", "honey"),
]


@dataclass
class Result:
    vendor: str
    questions: int
    hits: int
    first: int  # the right passage ranked first
    misses: list[str]

    @property
    def hit_rate(self) -> float:
        return self.hits / self.questions if self.questions else 0.0

    def report(self) -> str:
        lines = [
            f"retrieval check ({self.vendor}): {self.hits}/{self.questions} questions have the right passage "
            f"in the top {TOP} (hit rate {self.hit_rate:.2f}); first place {self.first}/{self.questions}; "
            f"budget {BUDGET_TOKENS} tokens"
        ]
        lines += [f"  miss: {miss}" for miss in self.misses]
        return "\n".join(lines)


def run() -> Result:
    """Index the fixed documents, ask every question, roll everything back; return the figures."""
    result = Result(vendor=connection.vendor, questions=len(QUESTIONS), hits=0, first=0, misses=[])
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=f"eval-{uuid.uuid4().hex[:12]}")
        conversation = Conversation.objects.create(owner=user, title="retrieval check")
        for name, build in DOCUMENTS.items():
            data = build()
            file = io.BytesIO(data)
            sniffed = sniff(file, name=name)
            extracted = extract(file, kind=sniffed.kind, encoding=sniffed.encoding)
            attachment = Attachment.objects.create(
                conversation=conversation,
                owner=user,
                name=name,
                size=len(data),
                kind=sniffed.kind,
                content_type=sniffed.content_type,
                status=Attachment.Status.PROCESSING,
            )
            store_chunks(attachment.id, chunk_blocks(extracted.blocks), pages=extracted.pages)
        for question in QUESTIONS:
            passages = passages_for(
                conversation_id=conversation.id, query=question.text, budget_tokens=BUDGET_TOKENS
            )
            ranks = [
                i
                for i, p in enumerate(passages[:TOP])
                if p.name == question.document and question.expected in p.text
            ]
            if ranks:
                result.hits += 1
                result.first += ranks[0] == 0
            else:
                got = ", ".join(f"{p.name} p{p.page}" for p in passages[:TOP]) or "nothing"
                result.misses.append(f"{question.text!r} (expected {question.document}; got {got})")
        transaction.set_rollback(True)
    return result
