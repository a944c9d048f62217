"""The single sign-on backend's own rules (the whole flow runs against a real provider
in tests/browser/test_accounts.py): issuer and audience, verified email only, no
linking to an address typed at sign-up, inactive users are nobody."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model

from accounts import oidc
from accounts.models import Profile

pytestmark = pytest.mark.django_db
User = get_user_model()

ISSUER = "https://idp.example.test"


@pytest.fixture
def provider(settings, monkeypatch):
    settings.OIDC_RP_CLIENT_ID = "chat"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monkeypatch.setattr(
        oidc,
        "discovery",
        lambda: {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/auth",
            "token_endpoint": f"{ISSUER}/token",
            "userinfo_endpoint": f"{ISSUER}/me",
            "jwks_uri": f"{ISSUER}/jwks",
        },
    )
    backend = oidc.OIDCBackend()
    monkeypatch.setattr(backend, "retrieve_matching_jwk", lambda token: key.public_key())
    return backend, key


def id_token(key, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "chat", "sub": "1", "nonce": "n", "iat": now, "exp": now + 60, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k"})


def test_a_token_from_the_issuer_for_this_client_is_accepted(provider):
    backend, key = provider
    assert backend.verify_token(id_token(key), nonce="n")["sub"] == "1"


@pytest.mark.parametrize("claims", [{"iss": "https://evil.example"}, {"aud": "another-app"}])
def test_a_token_of_another_issuer_or_for_another_client_is_refused(provider, claims):
    backend, key = provider
    with pytest.raises(oidc.SSOFailed):
        backend.verify_token(id_token(key, **claims), nonce="n")


def test_a_token_signed_by_another_key_is_refused(provider):
    backend, _ = provider
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Exception):  # noqa: B017 (SuspiciousOperation or a jwt error: refused either way)
        backend.verify_token(id_token(other), nonce="n")


@pytest.mark.parametrize(
    "claims",
    [{"email": "a@x.test"}, {"email": "a@x.test", "email_verified": False}, {"email_verified": True}],
)
def test_only_a_verified_email_is_an_identity(provider, claims):
    backend, _ = provider
    with pytest.raises(oidc.SSOFailed):
        backend.verify_claims(claims)


def test_an_account_whose_address_was_typed_at_sign_up_is_never_linked(provider):
    backend, _ = provider
    squatter = User.objects.create_user("squatter", email="ada@corp.test")
    Profile.objects.update_or_create(user=squatter, defaults={"email_verified": False})
    with pytest.raises(oidc.SSOFailed):
        backend.filter_users_by_claims({"email": "ADA@corp.test", "email_verified": True})


def test_an_existing_account_is_matched_by_verified_email(provider):
    backend, _ = provider
    ada = User.objects.create_user("ada", email="ada@corp.test")
    assert list(backend.filter_users_by_claims({"email": "Ada@Corp.test", "email_verified": True})) == [ada]


def test_a_new_identity_becomes_a_member_with_a_readable_username(provider, settings):
    backend, _ = provider
    User.objects.create_user("ada")
    user = backend.create_user(
        {"email": "ada@corp.test", "email_verified": True, "preferred_username": "ada"}
    )
    assert user.username == "ada2" and user.email == "ada@corp.test"
    assert not user.has_usable_password()
    assert user.groups.filter(name="member").exists()
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    with pytest.raises(oidc.SSOFailed):
        backend.create_user({"email": "bob@corp.test", "email_verified": True})


def test_a_deactivated_user_is_nobody_to_a_session_made_by_sso(provider):
    backend, _ = provider
    ada = User.objects.create_user("ada", is_active=False)
    assert backend.get_user(ada.pk) is None
