"""Forms of the account pages: sign-up, the first admin, password change."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from accounts import services
from accounts.models import Invite


class SignupForm(UserCreationForm):
    """Django's sign-up fields plus an email address (required when sign-up is limited to
    domains or the invite names one). The policy is checked in `services.check_signup`."""

    email = forms.EmailField(label="Email", required=False, help_text="For password reset.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, invite: Invite | None = None, email_required: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.invite = invite
        if email_required or (invite is not None and invite.email):
            self.fields["email"].required = True
        if invite is not None and invite.email:
            self.fields["email"].initial = invite.email

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email", "").strip()
        if email and get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                "An account with this email address exists: log in or reset its password."
            )
        return email

    def clean(self):
        cleaned = super().clean()
        try:
            services.check_signup(email=cleaned.get("email", ""), invite=self.invite)
        except services.SignupRefused as refused:
            raise forms.ValidationError(refused.reason) from None
        return cleaned

    def save(self, commit: bool = True):
        return services.user_create(
            username=self.cleaned_data["username"],
            email=self.cleaned_data.get("email", ""),
            password=self.cleaned_data["password1"],
            invite=self.invite,
        )


class SetupForm(UserCreationForm):
    """The first admin account of a fresh install (with the setup token when required)."""

    email = forms.EmailField(label="Email", required=False, help_text="For password reset.")
    setup_token = forms.CharField(
        label="Setup token",
        required=False,
        help_text="Printed in the server log (or run <code>python manage.py setup_token</code>).",
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, token_required: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if token_required:
            self.fields["setup_token"].required = True
        else:
            del self.fields["setup_token"]

    def clean_setup_token(self) -> str:
        token = self.cleaned_data.get("setup_token", "")
        if not services.setup_token_valid(token):
            raise forms.ValidationError("That is not the setup token of this server.")
        return token

    def save(self, commit: bool = True):
        return services.admin_create_first(
            username=self.cleaned_data["username"],
            email=self.cleaned_data.get("email", ""),
            password=self.cleaned_data["password1"],
        )
