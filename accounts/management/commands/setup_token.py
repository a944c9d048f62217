"""Print the one-time token that the "create the admin account" page of a fresh install asks for."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts import services


class Command(BaseCommand):
    help = "Print the setup token of the first-admin page (only while no account exists)."

    def handle(self, *args, **options) -> None:
        if not services.setup_needed():
            raise CommandError(
                "An account exists already: setup is done (use createsuperuser for more admins)."
            )
        self.stdout.write(services.setup_token())
