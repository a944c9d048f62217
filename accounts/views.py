"""A person's account pages: log in, sign up (by policy or invite), the first admin,
password reset and change, and the settings page. Each concern of the settings page
(preferences, password, API keys, data) is one section, one partial template each."""

from __future__ import annotations

import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import policy, services
from accounts.forms import SetupForm, SignupForm
from accounts.preferences import PreferencesForm, preferences_update
from conversations import views as conversation_views
from conversations.views import sidebar_context

log = structlog.get_logger(__name__)

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def login_options() -> dict:
    """What the login page offers: local passwords, single sign-on, sign-up."""
    return {
        "local_login": settings.LOCAL_LOGIN,
        "oidc_enabled": settings.OIDC_ENABLED,
        "oidc_button_label": settings.OIDC_BUTTON_LABEL,
        "allow_signup": settings.LOCAL_LOGIN and settings.SIGNUP_MODE == "open",
    }


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def dispatch(self, request, *args, **kwargs):
        if services.setup_needed() and settings.LOCAL_LOGIN:
            return redirect("setup")
        if request.method == "POST" and not settings.LOCAL_LOGIN:
            # No password form is shown, and none is accepted.
            return HttpResponse("Local passwords are turned off on this server.", status=403)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**login_options(), **kwargs)


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a login while locked out (AXES_LOCKOUT_CALLABLE)."""
    log.warning("login_locked_out", username=(credentials or {}).get("username"))
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "lockout_minutes": round(settings.AXES_COOLOFF_TIME * 60),
        "local_login": settings.LOCAL_LOGIN,
    }
    return render(request, "registration/locked_out.html", context, status=429)


# --- sign-up -------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    return _signup(request, invite=None)


@require_http_methods(["GET", "POST"])
def invite_signup(request: HttpRequest, token: str) -> HttpResponse:
    """The page an invite link opens: the sign-up form, whatever SIGNUP_MODE says (but closed)."""
    invite = services.invite_find(token=token)
    if invite is None or not invite.usable:
        return render(
            request,
            "registration/signup_closed.html",
            {"reason": "This invite link has been used or has expired. Ask an administrator for a new one."},
            status=404,
        )
    return _signup(request, invite=invite)


def _signup(request: HttpRequest, *, invite) -> HttpResponse:
    if services.setup_needed():
        return redirect("setup")
    if request.user.is_authenticated:
        return redirect("home")
    # Refused whatever is typed: the page is not shown (the email is checked on submit).
    reason = services.signup_refusal(invite=invite)
    if reason is None and not settings.LOCAL_LOGIN:
        reason = "Accounts are made by single sign-on: log in with it."
    if reason is not None:
        return render(request, "registration/signup_closed.html", {"reason": reason}, status=404)
    form = SignupForm(
        request.POST or None, invite=invite, email_required=bool(settings.SIGNUP_ALLOWED_DOMAINS)
    )
    if request.method == "POST" and form.is_valid():
        try:
            user = form.save()
        except services.SignupRefused as refused:  # the invite was taken meanwhile
            return render(request, "registration/signup_closed.html", {"reason": refused.reason}, status=404)
        login(request, user, backend=MODEL_BACKEND)
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form, "invite": invite, **login_options()})


# --- the first admin ---------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """A fresh install's one-time page: create the admin account. Gone once any account exists."""
    if not services.setup_needed():
        raise Http404("Setup is done.")
    token_required = settings.SETUP_REQUIRES_TOKEN
    if token_required and request.method == "GET":
        # The operator reads it from the log of any process (all derive the same one).
        log.warning(
            "setup_token_issued", setup_token=services.setup_token(), url=request.build_absolute_uri()
        )
    form = SetupForm(request.POST or None, token_required=token_required)
    if request.method == "POST" and form.is_valid():
        try:
            user = form.save()
        except PermissionDenied:  # another request made the first account meanwhile
            raise Http404("Setup is done.") from None
        login(request, user, backend=MODEL_BACKEND)
        messages.success(request, "The admin account is ready. Manage people and model access at /admin/.")
        return redirect("home")
    return render(request, "registration/setup.html", {"form": form, "token_required": token_required})


# --- passwords ----------------------------------------------------------------------


def _local_login_only(view):
    def wrapped(request, *args, **kwargs):
        if not settings.LOCAL_LOGIN:
            raise Http404("Local passwords are turned off on this server.")
        return view(request, *args, **kwargs)

    wrapped.__name__ = getattr(view, "__name__", "view")
    return wrapped


password_reset = _local_login_only(
    auth_views.PasswordResetView.as_view(
        email_template_name="registration/password_reset_email.txt",
        subject_template_name="registration/password_reset_subject.txt",
        success_url=reverse_lazy("password_reset_done"),
    )
)
password_reset_done = _local_login_only(auth_views.PasswordResetDoneView.as_view())
password_reset_confirm = _local_login_only(
    auth_views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("password_reset_complete"))
)
password_reset_complete = _local_login_only(auth_views.PasswordResetCompleteView.as_view())


@login_required
@require_POST
def password_change(request: HttpRequest) -> HttpResponse:
    """The settings page's password section. Other sessions of the user end (their
    session hash no longer matches) and their open sockets close (accounts.signals)."""
    if not settings.LOCAL_LOGIN:
        raise Http404("Local passwords are turned off on this server.")
    form = PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)  # this session stays signed in
        messages.success(request, "Your password was changed. Other sessions were signed out.")
        return redirect("account-settings")
    return _settings(request, password_form=form, status=400)


# --- the settings page -------------------------------------------------------------


@never_cache
@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return _settings(request, password_form=PasswordChangeForm(request.user))


def _settings(
    request: HttpRequest, *, password_form, preferences_form: PreferencesForm | None = None, status: int = 200
) -> HttpResponse:
    context = {
        **sidebar_context(request, archived=False),
        "settings_view": True,
        "password_form": password_form,
        "local_login": settings.LOCAL_LOGIN,
        "preferences_form": preferences_form
        or PreferencesForm.for_user(request.user, models=_models(request)),
    }
    return render(request, "accounts/settings.html", context, status=status)


def _models(request: HttpRequest) -> list[str]:
    """The models this user may pick as a default (the provider's, as their groups allow)."""
    return policy.allowed_models(request.user, conversation_views.available_models())


@login_required
@require_POST
def preferences_save(request: HttpRequest) -> HttpResponse:
    """The settings page's preferences section: default model, custom instructions, theme."""
    form = PreferencesForm.for_user(request.user, models=_models(request), data=request.POST)
    if not form.is_valid():
        return _settings(
            request, password_form=PasswordChangeForm(request.user), preferences_form=form, status=400
        )
    preferences_update(user=request.user, **form.cleaned_data)
    messages.success(request, "Preferences saved.")
    return redirect("account-settings")
