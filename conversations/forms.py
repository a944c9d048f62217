"""Forms of the chat pages: rename, archive and per-conversation settings."""

from __future__ import annotations

from django import forms
from django.conf import settings

from conversations.models import Conversation, Message, is_storable_text
from conversations.services import TITLE_MAX_CHARS


class RenameForm(forms.Form):
    title = forms.CharField(label="Title", max_length=TITLE_MAX_CHARS, strip=True)


class VersionForm(forms.Form):
    """The version to show: a message id (the switcher's previous or next sibling)."""

    message_id = forms.UUIDField()


class FeedbackForm(forms.Form):
    message_id = forms.UUIDField()
    rating = forms.ChoiceField(choices=[("", "none"), *Message.Feedback.choices], required=False)


class FirstMessageForm(forms.Form):
    """The first message of a new conversation (POST /c/new/): the same rules as a socket send."""

    content = forms.CharField(strip=False)
    client_id = forms.UUIDField()

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not is_storable_text(content):
            raise forms.ValidationError(
                "The message holds a NUL or an unpaired surrogate, which cannot be stored."
            )
        if not content.strip():
            raise forms.ValidationError("The message is empty.")
        if len(content) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise forms.ValidationError(
                f"Messages are limited to {settings.CHAT_MAX_MESSAGE_CHARS} characters."
            )
        return content


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

    def __init__(
        self,
        *args,
        models: list[str],
        max_prompt_chars: int,
        default_allowed: bool = True,
        current_allowed: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Blank keeps the provider's default model; the conversation's current
        # model stays selectable even if the provider no longer lists it, as
        # long as the user may use it (`models` is already filtered by access).
        choices = [("", "Default model")] if default_allowed else []
        choices += [(name, name) for name in dict.fromkeys(models) if name]
        current = self.initial.get("model") or ""
        if current and current not in dict(choices) and current_allowed:
            choices.append((current, current))
        self.fields["model"].choices = choices
        self.fields["system_prompt"].max_length = max_prompt_chars
        self.fields["system_prompt"].widget.attrs["maxlength"] = str(max_prompt_chars)

    @classmethod
    def for_conversation(
        cls,
        conversation: Conversation,
        *,
        models: list[str],
        max_prompt_chars: int,
        default_allowed: bool = True,
        current_allowed: bool = True,
        data=None,
    ):
        return cls(
            data,
            initial={"model": conversation.model, "system_prompt": conversation.system_prompt},
            models=models,
            max_prompt_chars=max_prompt_chars,
            default_allowed=default_allowed,
            current_allowed=current_allowed,
        )
