"""The settings page's data section: download one's data, delete one's account."""

from __future__ import annotations

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts.data import AccountDeleteRefused, account_delete, account_export
from conversations.views import sidebar_context


class AccountDeleteForm(forms.Form):
    """Who deletes the account proves it is them: their password, or, for an account
    that signs in only through single sign-on (no usable password), their username."""

    secret = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        if user.has_usable_password():
            self.fields["secret"].label = "Your password"
        else:
            self.fields["secret"].label = f"Type your username ({user.get_username()}) to confirm"
            self.fields["secret"].widget = forms.TextInput(attrs={"autocomplete": "off"})

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        if self.user.has_usable_password():
            if not self.user.check_password(secret):
                raise forms.ValidationError("That is not your password.")
        elif secret != self.user.get_username():
            raise forms.ValidationError("That is not your username.")
        return secret


@never_cache
@login_required
@require_GET
def data_export(request: HttpRequest) -> FileResponse:
    archive = account_export(user=request.user)
    stamp = timezone.now().strftime("%Y%m%d")
    return FileResponse(
        archive,
        as_attachment=True,
        filename=f"chat-data-{request.user.get_username()}-{stamp}.zip",
        content_type="application/zip",
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def account_delete_view(request: HttpRequest) -> HttpResponse:
    form = AccountDeleteForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                account_delete(user=request.user)
            except AccountDeleteRefused as refused:
                form.add_error(None, str(refused))
            else:
                logout(request)
                return render(request, "accounts/account_deleted.html")
        status = 400
    context = {**sidebar_context(request, archived=False), "form": form, "settings_view": True}
    return render(request, "accounts/delete_account.html", context, status=status)
