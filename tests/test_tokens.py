"""Tokens as a client and a resource server see them: RFC 9068 access tokens and OIDC ID tokens.

Every token here comes from a real sign-in through the test client (authorization request, login,
code exchange, refresh) and is checked with jwcrypto against the published JWKS, never with
cells_oidc's own verification code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from jwcrypto import jwk, jws

from tests.kit import FORM, ISSUER, SCOPE, Browser, refresh, sign_in

pytestmark = pytest.mark.django_db


# ---- helpers shared with test_endpoints ------------------------------------------------------
def api() -> Client:
    """A client as a real OAuth client is: no cookies, and CSRF enforced as in production."""
    return Client(enforce_csrf_checks=True)


def post_form(path: str, data: dict[str, str] | list[tuple[str, str]], **headers: Any) -> Any:
    return api().post(path, urlencode(data), content_type=FORM, **headers)


def token_call(data: dict[str, str], **headers: Any) -> Any:
    return post_form("/oidc/oauth2/token", data, **headers)


def b64url_json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_of(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[0])


def published_keys() -> dict[str, dict[str, Any]]:
    response = Client().get("/oidc/.well-known/jwks.json")
    assert response.status_code == 200
    return {key["kid"]: key for key in json.loads(response.content)["keys"]}


def verified_claims(token: str) -> dict[str, Any]:
    """Verify ``token`` with jwcrypto against the JWKS key named by its ``kid``; return its claims."""
    header = header_of(token)
    key = jwk.JWK(**published_keys()[header["kid"]])
    signed = jws.JWS()
    signed.deserialize(token)
    signed.verify(key, alg="RS256")
    return json.loads(signed.payload)


def userinfo(access_token: str) -> Any:
    return api().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def at_hash(access_token: str) -> str:
    # OpenID Connect Core §3.1.3.6: left half of SHA-256 (the hash of RS256), base64url.
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


# ---- access tokens (RFC 9068) ------------------------------------------------------------------
def test_access_token_is_an_rfc9068_jwt(default_clients: None, alice: Any, browser: Browser) -> None:
    before = int(time.time())
    tokens = sign_in(browser)
    after = int(time.time())
    access = tokens["access_token"]

    header = header_of(access)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] in published_keys()

    claims = verified_claims(access)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == str(alice.pk)
    assert claims["aud"] == "http://testserver"
    assert claims["client_id"] == "cells-client"
    assert claims["scope"].split() == SCOPE.split()
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 600
    assert tokens["expires_in"] == 600 and type(tokens["expires_in"]) is int
    assert isinstance(claims["auth_time"], int) and before - 5 <= claims["auth_time"] <= after
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_access_token_jti_is_unique_and_sub_stable(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    first = sign_in(browser)
    second = sign_in(browser)
    refreshed = json.loads(refresh("cells-client", first["refresh_token"]).content)
    claims = [verified_claims(t["access_token"]) for t in (first, second, refreshed)]
    assert len({c["jti"] for c in claims}) == 3
    assert {c["sub"] for c in claims} == {str(alice.pk)}


def test_refresh_tokens_are_40_random_letters_and_digits(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    seen = {tokens["refresh_token"]}
    for _ in range(3):
        tokens = json.loads(refresh("cells-client", tokens["refresh_token"]).content)
        seen.add(tokens["refresh_token"])
    assert len(seen) == 4
    assert all(len(token) == 40 and token.isascii() and token.isalnum() for token in seen)


def test_every_character_of_a_refresh_token_is_equally_likely() -> None:
    """100,000 characters of the generator: each of the 62 within 12 % of its share (about 4.8
    standard deviations). A plain ``byte % 62`` makes eight of them 25 % more likely: refused."""
    from collections import Counter

    from cells_oidc.internal.issuance import generate_refresh_token

    counts = Counter("".join(generate_refresh_token(None) for _ in range(2500)))
    assert len(counts) == 62
    share = 100_000 / 62
    assert all(0.88 * share <= count <= 1.12 * share for count in counts.values()), counts.most_common(10)


def test_access_token_keeps_auth_time_on_refresh(
    default_clients: None, alice: Any, browser: Browser, time_machine: Any
) -> None:
    time_machine.move_to(time.time())
    tokens = sign_in(browser)
    original = verified_claims(tokens["access_token"])
    time_machine.shift(60)
    refreshed = json.loads(refresh("cells-client", tokens["refresh_token"]).content)
    claims = verified_claims(refreshed["access_token"])
    assert claims["auth_time"] == original["auth_time"]
    assert claims["iat"] > original["iat"]


def test_access_token_audience_is_configurable(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_ACCESS_TOKEN_AUDIENCE = "https://files.example.com"
    assert verified_claims(sign_in(browser)["access_token"])["aud"] == "https://files.example.com"
    settings.CELLS_OIDC_ACCESS_TOKEN_AUDIENCE = ["https://a.example.com", "https://b.example.com"]
    claims = verified_claims(sign_in(browser)["access_token"])
    assert claims["aud"] == ["https://a.example.com", "https://b.example.com"]


def test_lifetimes_are_configurable(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    from django.conf import settings as django_settings

    from cells_oidc.conf import oauth2_provider_settings

    base = django_settings.OAUTH2_PROVIDER
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(
        signing_key=base["OIDC_RSA_PRIVATE_KEY"],
        inactive_keys=base["OIDC_RSA_PRIVATE_KEYS_INACTIVE"],
        ACCESS_TOKEN_EXPIRE_SECONDS=120,
        ID_TOKEN_EXPIRE_SECONDS=300,
    )
    tokens = sign_in(browser)
    assert tokens["expires_in"] == 120
    access = verified_claims(tokens["access_token"])
    assert access["exp"] == access["iat"] + 120
    id_token = verified_claims(tokens["id_token"])
    assert id_token["exp"] == id_token["iat"] + 300
    # The stored expiry agrees with the token: introspection reports the same exp.
    from oauth2_provider.models import get_access_token_model

    stored = get_access_token_model().objects.get(
        token_checksum=hashlib.sha256(tokens["access_token"].encode()).hexdigest()
    )
    # exp counts from iat, whole seconds cut down; the row's expiry from a moment later, with its
    # fraction: up to a second apart, plus the time between the two on a busy machine.
    assert -1 <= stored.expires.timestamp() - access["exp"] < 2
    refreshed = json.loads(refresh("cells-client", tokens["refresh_token"]).content)
    assert refreshed["expires_in"] == 120


def test_access_token_signed_with_the_active_key(default_clients: None, alice: Any, browser: Browser) -> None:
    from django.conf import settings

    active = jwk.JWK.from_pem(settings.SIGNING_KEY.encode()).thumbprint()
    tokens = sign_in(browser)
    assert header_of(tokens["access_token"])["kid"] == active
    assert header_of(tokens["id_token"])["kid"] == active


# ---- ID tokens -----------------------------------------------------------------------------------
def test_id_token_claims(default_clients: None, alice: Any, browser: Browser) -> None:
    before = int(time.time())
    tokens = sign_in(browser, nonce="n-0S6_WzA2Mj")
    id_token = tokens["id_token"]
    header = header_of(id_token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["kid"] in published_keys()

    claims = verified_claims(id_token)
    assert claims["iss"] == ISSUER
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "cells-client" in aud
    assert claims["sub"] == str(alice.pk)
    assert claims["name"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["exp"] == claims["iat"] + 3600
    assert isinstance(claims["sid"], str) and claims["sid"]
    # auth_time is the moment of the login in this sign-in, not of some earlier session.
    assert before - 1 <= claims["auth_time"] <= claims["iat"]
    access = verified_claims(tokens["access_token"])
    assert access["auth_time"] == claims["auth_time"]


def test_id_token_without_nonce_and_email_scope(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser, scope="openid profile offline")
    claims = verified_claims(tokens["id_token"])
    assert "nonce" not in claims
    assert "email" not in claims
    assert claims["name"] == "alice"


def test_id_token_without_profile_scope_has_no_name(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    claims = verified_claims(sign_in(browser, scope="openid email offline")["id_token"])
    assert "name" not in claims
    assert claims["email"] == "alice@example.com"


def test_refreshed_id_token(default_clients: None, alice: Any, browser: Browser, time_machine: Any) -> None:
    time_machine.move_to(time.time())
    tokens = sign_in(browser, nonce="first-nonce-value")
    original = verified_claims(tokens["id_token"])
    time_machine.shift(60)
    response = refresh("cells-client", tokens["refresh_token"], SCOPE)
    assert response.status_code == 200, response.content
    refreshed_tokens = json.loads(response.content)
    claims = verified_claims(refreshed_tokens["id_token"])
    # OpenID Connect Core §12.2: same iss, sub, aud; auth_time of the original login; no nonce.
    assert claims["iss"] == original["iss"]
    assert claims["sub"] == original["sub"]
    assert claims["aud"] == original["aud"]
    assert claims["auth_time"] == original["auth_time"]
    assert claims["sid"] == original["sid"]
    assert "nonce" not in claims
    assert claims["iat"] > original["iat"]
    assert claims["at_hash"] == at_hash(refreshed_tokens["access_token"])


def test_sid_differs_between_logins(default_clients: None, make_user: Any) -> None:
    make_user("alice")
    first = verified_claims(sign_in(Browser())["id_token"])
    second = verified_claims(sign_in(Browser())["id_token"])
    assert first["sid"] != second["sid"]
    assert first["sub"] == second["sub"]


def test_each_user_has_their_own_subject(default_clients: None, make_user: Any) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    a = verified_claims(sign_in(Browser())["id_token"])
    b = verified_claims(sign_in(Browser(), username="bob")["id_token"])
    assert (a["sub"], b["sub"]) == (str(alice.pk), str(bob.pk))
    assert b["name"] == "bob"


def test_tokens_of_every_default_client(default_clients: None, alice: Any) -> None:
    for client_id in ("cells-client", "cells-sync", "cells-mobile"):
        tokens = sign_in(Browser(), client_id=client_id)
        access = verified_claims(tokens["access_token"])
        id_token = verified_claims(tokens["id_token"])
        assert access["client_id"] == client_id
        assert client_id in (id_token["aud"] if isinstance(id_token["aud"], list) else [id_token["aud"]])


# ---- what a resource server must refuse ------------------------------------------------------------
def test_an_id_token_is_not_an_access_token(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    assert header_of(tokens["id_token"])["typ"] != header_of(tokens["access_token"])["typ"]
    response = userinfo(tokens["id_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_verify_accepts_our_access_token_and_rejects_tampering(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    from cells_oidc.internal import tokens as cells_tokens

    access = sign_in(browser)["access_token"]
    claims = cells_tokens.verify(access, typ="at+jwt", audience=["http://testserver"])
    assert claims["client_id"] == "cells-client"
    head, payload, signature = access.split(".")
    forged_claims = {**b64url_json(payload), "sub": "1"}
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    for bad in (
        f"{head}.{forged}.{signature}",
        f"{head}.{payload}.",
        access,  # with the wrong typ / audience below
    ):
        with pytest.raises(cells_tokens.InvalidToken):
            if bad is access:
                cells_tokens.verify(bad, typ="JWT")
            else:
                cells_tokens.verify(bad, typ="at+jwt")
    with pytest.raises(cells_tokens.InvalidToken):
        cells_tokens.verify(access, typ="at+jwt", audience=["https://other.example.com"])


def test_auth_time_is_the_login_not_a_later_authorization(
    default_clients: None, alice: Any, browser: Browser, time_machine: Any
) -> None:
    time_machine.move_to(time.time())
    first = verified_claims(sign_in(browser)["id_token"])
    time_machine.shift(60)
    # Same browser, existing session: a second sign-in (after the "Continue as" click) keeps
    # the original login time and session id (OpenID Connect Core §2 auth_time).
    second_tokens = sign_in(browser)
    second = verified_claims(second_tokens["id_token"])
    assert second["auth_time"] == first["auth_time"]
    assert second["sid"] == first["sid"]
    assert second["iat"] > first["iat"]
    assert verified_claims(second_tokens["access_token"])["auth_time"] == first["auth_time"]


def test_verify_accepts_both_spellings_of_the_access_token_type(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    from cells_oidc.internal import tokens as cells_tokens

    claims = {"iss": ISSUER, "sub": "1", "exp": int(time.time()) + 60}
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        assert cells_tokens.verify(cells_tokens.sign(claims, typ=typ), typ="at+jwt")["sub"] == "1"
    for typ in ("JWT", "jwt", "at+jwt+x", "application/jwt"):
        with pytest.raises(cells_tokens.InvalidToken):
            cells_tokens.verify(cells_tokens.sign(claims, typ=typ), typ="at+jwt")
    with pytest.raises(cells_tokens.InvalidToken):
        cells_tokens.verify(
            cells_tokens.sign({**claims, "exp": int(time.time()) - 1}, typ="at+jwt"), typ="at+jwt"
        )
    with pytest.raises(cells_tokens.InvalidToken):
        cells_tokens.verify(cells_tokens.sign({**claims, "iss": ISSUER[:-1]}, typ="at+jwt"), typ="at+jwt")
