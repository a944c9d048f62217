"""A person's preferences: the default model of new conversations, custom instructions
for the model, and the theme. The form, and the one write (`preferences_update`)."""

from __future__ import annotations

import structlog
from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator

from accounts.models import Profile
from accounts.selectors import profile_get

log = structlog.get_logger(__name__)


class PreferencesForm(forms.Form):
    default_model = forms.ChoiceField(
        label="Default model",
        required=False,
        help_text="New conversations start with this model; each conversation can change it in its Options.",
    )
    custom_instructions = forms.CharField(
        label="Custom instructions",
        required=False,
        strip=True,
        help_text="What the model should know about you or how it should answer, in every conversation.",
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": "I am a teacher; answer briefly, with examples."}
        ),
    )
    theme = forms.ChoiceField(
        label="Theme",
        choices=[
            (Profile.Theme.SYSTEM, "System (follow this device)"),
            (Profile.Theme.LIGHT, "Light"),
            (Profile.Theme.DARK, "Dark"),
        ],
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, models: list[str], current_model: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The saved default stays selectable even if the provider stopped offering it.
        choices = [("", "The server's default model")]
        choices += [(name, name) for name in dict.fromkeys([*models, current_model]) if name]
        self.fields["default_model"].choices = choices
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        # (Setting max_length after construction adds no validator: add it too.)
        self.fields["custom_instructions"].max_length = limit
        self.fields["custom_instructions"].validators.append(MaxLengthValidator(limit))
        self.fields["custom_instructions"].widget.attrs["maxlength"] = str(limit)

    @classmethod
    def for_user(cls, user, *, models: list[str], data=None) -> PreferencesForm:
        profile = profile_get(user=user)
        return cls(
            data,
            initial={
                "default_model": profile.default_model,
                "custom_instructions": profile.custom_instructions,
                "theme": profile.theme,
            },
            models=models,
            current_model=profile.default_model,
        )


def preferences_update(*, user, default_model: str, custom_instructions: str, theme: str) -> Profile:
    profile = profile_get(user=user)
    profile.default_model = default_model
    profile.custom_instructions = custom_instructions
    profile.theme = theme
    profile.save(update_fields=["default_model", "custom_instructions", "theme"])
    log.info("preferences_updated", user_id=user.pk, theme=theme, default_model=default_model)
    return profile


def default_model_for(*, user, offered: list[str]) -> str:
    """The model a new conversation of `user` starts with: their default while the
    provider still offers it, else blank (the provider's default)."""
    chosen = Profile.objects.filter(user=user).values_list("default_model", flat=True).first() or ""
    return chosen if chosen in offered else ""


def theme_for(user) -> str:
    """The theme of `user`'s pages; "system" for visitors and for anyone who chose none."""
    if user is None or not user.is_authenticated:
        return Profile.Theme.SYSTEM
    return Profile.objects.filter(user=user).values_list("theme", flat=True).first() or Profile.Theme.SYSTEM
