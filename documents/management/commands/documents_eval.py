"""Print the retrieval check: hit rate of the right passage in the top 3 over a fixed set (nothing is kept)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from documents.evaluation import run


class Command(BaseCommand):
    help = "Index a fixed set of documents, ask fixed questions, print the top-3 hit rate; rolls back."

    def handle(self, *args, **options) -> None:
        self.stdout.write(run().report())
