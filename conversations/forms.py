"""Forms of the chat pages: sign-up, rename, archive and per-conversation settings."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.db import connection, transaction

from conversations.models import Conversation
from conversations.services import TITLE_MAX_CHARS

# An arbitrary constant naming the advisory lock that serialises sign-ups.
_SIGNUP_LOCK_KEY = 7_401_001


class SignupForm(UserCreationForm):
    """Django's own sign-up fields (username, password, confirmation).

    The first account of a fresh install becomes a superuser, so nobody needs
    `createsuperuser` to reach the admin.
    """

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)

    @transaction.atomic
    def save(self, commit: bool = True):
        if connection.vendor == "postgresql":
            # Two simultaneous first sign-ups must not both see an empty table
            # and both become superusers; the lock is released at commit.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SIGNUP_LOCK_KEY])
        user = super().save(commit=False)
        if not get_user_model().objects.exists():
            user.is_superuser = True
            user.is_staff = True
        if commit:
            user.save()
        return user


class RenameForm(forms.Form):
    title = forms.CharField(label="Title", max_length=TITLE_MAX_CHARS, strip=True)


class ArchiveForm(forms.Form):
    archived = forms.BooleanField(required=False)


class PinForm(forms.Form):
    pinned = forms.BooleanField(required=False)


class ConversationSettingsForm(forms.Form):
    """The model (one of the provider's) and the system prompt of one conversation."""

    model = forms.ChoiceField(label="Model", required=False)
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "You are a helpful assistant."}),
    )

    def __init__(self, *args, models: list[str], max_prompt_chars: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Blank keeps the provider's default model; the conversation's current
        # model stays selectable even if the provider no longer lists it.
        choices = [("", "Default model")]
        choices += [(name, name) for name in dict.fromkeys(models) if name]
        current = self.initial.get("model") or ""
        if current and current not in dict(choices):
            choices.append((current, current))
        self.fields["model"].choices = choices
        self.fields["system_prompt"].max_length = max_prompt_chars
        self.fields["system_prompt"].widget.attrs["maxlength"] = str(max_prompt_chars)

    @classmethod
    def for_conversation(
        cls, conversation: Conversation, *, models: list[str], max_prompt_chars: int, data=None
    ):
        return cls(
            data,
            initial={"model": conversation.model, "system_prompt": conversation.system_prompt},
            models=models,
            max_prompt_chars=max_prompt_chars,
        )
