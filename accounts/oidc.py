"""Single sign-on with OpenID Connect, on mozilla-django-oidc, configured by OIDC_* variables only.

mozilla-django-oidc wants each endpoint in settings; here they come from the
provider's discovery document (OIDC_ISSUER/.well-known/openid-configuration),
fetched when first needed and cached. People are matched by their *verified*
email, or created (as members, within SIGNUP_ALLOWED_DOMAINS) when
OIDC_CREATE_USERS allows; an identity never logs into an account whose address
was only typed into the sign-up form. The id token's issuer and audience are
checked on top of its signature.
"""

from __future__ import annotations

import re

import requests
import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts import services
from accounts.models import Profile

log = structlog.get_logger(__name__)

DISCOVERY_CACHE_SECONDS = 3600
# Settings names of mozilla-django-oidc and the discovery document's keys they come from.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class SSOFailed(SuspiciousOperation):
    """A login through the provider that must not succeed; `reason` is shown on the login page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def discovery() -> dict:
    """The provider's discovery document (cached an hour in the shared cache)."""
    key = f"accounts:oidc-discovery:{settings.OIDC_DISCOVERY_URL}"
    document = cache.get(key)
    if document is None:
        response = requests.get(settings.OIDC_DISCOVERY_URL, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
        missing = [name for name in (*ENDPOINTS.values(), "issuer") if not document.get(name)]
        if missing:
            raise ImproperlyConfigured(f"the OIDC discovery document lacks {', '.join(missing)}")
        cache.set(key, document, DISCOVERY_CACHE_SECONDS)
    return document


def oidc_setting(attr: str, *default):
    """A mozilla-django-oidc setting: an endpoint from discovery unless set explicitly."""
    if attr in ENDPOINTS and not getattr(settings, attr, None):
        return discovery()[ENDPOINTS[attr]]
    if attr == "OIDC_TIMEOUT":
        return settings.OIDC_TIMEOUT
    if default:
        return getattr(settings, attr, default[0])
    return getattr(settings, attr)


def _username_from(claims: dict) -> str:
    """A readable, free username: preferred_username, else the email's local part; suffixed when taken."""
    base = claims.get("preferred_username") or claims.get("email", "").partition("@")[0] or "user"
    base = re.sub(r"[^\w.@+-]", "", base)[:140] or "user"
    users = get_user_model().objects
    candidate, n = base, 1
    while users.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


class OIDCBackend(OIDCAuthenticationBackend):
    """Authenticates the code flow's callback; sessions it made load users like ModelBackend
    does (an inactive user is nobody, so deactivation signs them out on the next request)."""

    def __init__(self, *args, **kwargs) -> None:
        # Nothing is read here: Django builds a backend for every session lookup,
        # and those must not need the provider's discovery document.
        self.UserModel = get_user_model()

    get_settings = staticmethod(oidc_setting)

    def __getattr__(self, name: str):
        # The base class reads OIDC_* as instance attributes set in its __init__.
        if name.startswith("OIDC_"):
            default = {"OIDC_OP_JWKS_ENDPOINT": None, "OIDC_RP_IDP_SIGN_KEY": None}
            return oidc_setting(name, default[name]) if name in default else oidc_setting(name)
        raise AttributeError(name)

    def get_user(self, user_id):
        return ModelBackend().get_user(user_id)

    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        issuer = discovery()["issuer"]
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if payload.get("iss") != issuer or settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SSOFailed("The identity provider's token was not issued for this server.")
        return payload

    def verify_claims(self, claims) -> bool:
        if not claims.get("email"):
            raise SSOFailed("The identity provider did not share an email address.")
        if claims.get("email_verified") is not True:
            raise SSOFailed("The identity provider has not verified this email address.")
        return True

    def filter_users_by_claims(self, claims):
        users = self.UserModel.objects.filter(email__iexact=claims["email"])
        unverified = Profile.objects.filter(user__in=users, email_verified=False)
        if unverified.exists():
            raise SSOFailed(
                "An account with this email address was made by sign-up and its address is not confirmed: "
                "log in with its password, or ask an administrator to confirm it."
            )
        return users

    def create_user(self, claims):
        email = claims["email"]
        if not services.email_domain_allowed(email):
            raise SSOFailed(
                "Accounts need an email address at " + ", ".join(settings.SIGNUP_ALLOWED_DOMAINS) + "."
            )
        return services.user_create(
            username=_username_from(claims),
            email=email,
            password=None,
            email_verified=True,
        )

    def get_or_create_user(self, access_token, id_token, payload):
        try:
            user = super().get_or_create_user(access_token, id_token, payload)
            if user is None:
                raise SSOFailed("There is no account for this email address here. Ask an administrator.")
            if not user.is_active:
                raise SSOFailed("This account is deactivated.")
        except SSOFailed as failed:
            # The base class turns this into a bare None; the callback view shows why.
            self.request.sso_failure = failed.reason
            log.warning("sso_login_refused", reason=failed.reason)
            raise
        log.info("sso_login", user_id=user.pk)
        return user

    def authenticate(self, request, **kwargs):
        try:
            return super().authenticate(request, **kwargs)
        except SSOFailed as failed:
            # The callback view shows it; the base class would only log it.
            request.sso_failure = failed.reason
            log.warning("sso_login_refused", reason=failed.reason)
            return None
        except requests.RequestException as error:
            request.sso_failure = "The identity provider could not be reached. Try again."
            log.warning("sso_provider_unreachable", error=str(error))
            return None


class _Enabled:
    def dispatch(self, request, *args, **kwargs):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        return super().dispatch(request, *args, **kwargs)


class AuthenticationRequestView(_Enabled, OIDCAuthenticationRequestView):
    """Sends the browser to the provider (state, nonce and PKCE kept in the session)."""

    def __init__(self, *args, **kwargs) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    get_settings = staticmethod(oidc_setting)

    @property
    def OIDC_OP_AUTH_ENDPOINT(self) -> str:
        return oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        try:
            return super().get(request)
        except (requests.RequestException, ImproperlyConfigured) as error:
            log.warning("sso_discovery_failed", error=str(error))
            messages.error(
                request, "Single sign-on is unavailable: the identity provider could not be reached."
            )
            return HttpResponseRedirect(reverse("login"))


class AuthenticationCallbackView(_Enabled, OIDCAuthenticationCallbackView):
    """The provider sends the browser back here; a failure goes to the login page with its reason."""

    get_settings = staticmethod(oidc_setting)

    def login_failure(self):
        reason = getattr(self.request, "sso_failure", None) or "Single sign-on did not complete. Try again."
        messages.error(self.request, reason)
        return HttpResponseRedirect(reverse("login"))
