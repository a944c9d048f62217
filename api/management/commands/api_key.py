"""`manage.py api_key create USERNAME --name NAME` (the key alone on the last line), `revoke`, `list`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api import services
from api.models import PREFIX_LENGTH, ApiKey
from api.selectors import api_key_list


class Command(BaseCommand):
    help = "Create, revoke or list personal API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key; prints it alone on the last line.")
        create.add_argument("username")
        create.add_argument(
            "--name", required=True, help="The key's name (unique among the user's live keys)."
        )
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix (or id).")
        revoke.add_argument(
            "key", help="The key's prefix as listed (sk-chat-XXXXXXXX), the whole key, or its id."
        )
        listing = sub.add_parser("list", help="List keys (never the keys themselves).")
        listing.add_argument("username", nargs="?")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def _create(self, *, username: str, name: str, **_) -> None:
        try:
            api_key, key = services.api_key_create(user=self._user(username), name=name)
        except services.KeyRefused as refused:
            raise CommandError(refused.message) from refused
        self.stdout.write(f"Created API key {api_key.name!r} for {username} (prefix {api_key.prefix}).")
        self.stdout.write("It is shown only this once; store it now.")
        self.stdout.write(key)

    def _revoke(self, *, key: str, **_) -> None:
        live = ApiKey.objects.active()
        if key.isdigit():
            matches = list(live.filter(pk=int(key)))
        else:
            matches = [
                k
                for k in live.filter(prefix=key[:PREFIX_LENGTH])
                if len(key) <= PREFIX_LENGTH or k.matches(key)
            ]
        if not matches:
            raise CommandError(f"No live key {key!r}.")
        if len(matches) > 1:
            raise CommandError(
                f"{len(matches)} live keys share the prefix {key!r}; revoke by id (see `list`)."
            )
        services.api_key_revoke(api_key=matches[0])
        self.stdout.write(
            f"Revoked {matches[0].name!r} ({matches[0].prefix}) of {matches[0].user.get_username()}."
        )

    def _list(self, *, username: str | None = None, **_) -> None:
        keys = api_key_list(user=self._user(username)) if username else ApiKey.objects.order_by("-created_at")
        for api_key in keys.select_related("user"):
            used = api_key.last_used_at.isoformat(timespec="seconds") if api_key.last_used_at else "never"
            state = f"revoked {api_key.revoked_at:%Y-%m-%d}" if api_key.revoked_at else "live"
            self.stdout.write(
                f"{api_key.pk}\t{api_key.user.get_username()}\t{api_key.name}\t{api_key.prefix}\t"
                f"last used {used}\t{state}"
            )
