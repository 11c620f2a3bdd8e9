"""cells_oidc.internal.jws: the one JWT verifier, without Django, for the provider and the APIs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_resource import ISSUER, api_get

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_resource")]


def test_the_verifier_imports_no_django() -> None:
    # A resource server or a tool may verify tokens without configuring Django.
    code = (
        "import sys, cells_oidc.internal.jws; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'django'); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exp": -600}, "expired"),
        ({"iat": 600}, "issued in the future"),
        ({"nbf": 600}, "not yet valid"),
        ({"iss": ISSUER.rstrip("/")}, "wrong issuer"),
    ],
)
def test_the_provider_and_the_api_refuse_a_token_for_the_same_reason(
    default_clients: None, alice: Any, change: dict[str, Any], reason: str
) -> None:
    from cells_oidc.internal import jws, tokens

    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(alice.pk),
        "aud": "http://testserver",
        "client_id": "cells-client",
        "scope": "openid",
        "jti": "j-1",
        "iat": now,
        "exp": now + 300,
    }
    for name, value in change.items():
        claims[name] = value if isinstance(value, str) else now + value
    token = tokens.sign(claims, typ=jws.ACCESS_TOKEN_TYP)
    # The provider's own check (introspection, ID token hints) ...
    with pytest.raises(tokens.InvalidToken) as refused:
        tokens.verify(token, typ=jws.ACCESS_TOKEN_TYP)
    assert refused.value.reason == reason
    # ... and the API's answer name the same rule: one verifier, one exception.
    response = api_get("/api/me", token)
    assert response.status_code == 401
    assert f"Invalid bearer token: {reason}." in response["WWW-Authenticate"]


def test_the_api_requires_the_rfc_9068_claims_the_provider_check_does_not(
    default_clients: None, alice: Any
) -> None:
    from cells_oidc.internal import jws, tokens

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": str(alice.pk), "aud": "http://testserver", "exp": now + 300}
    token = tokens.sign(claims, typ=jws.ACCESS_TOKEN_TYP)
    assert tokens.verify(token, typ=jws.ACCESS_TOKEN_TYP)["sub"] == str(alice.pk)
    response = api_get("/api/me", token)
    assert response.status_code == 401
    assert "Invalid bearer token: missing issue time." in response["WWW-Authenticate"]


# ---- what a process remembers of a verified token ---------------------------------------------
def _es256_token(claims: dict[str, Any], private_key: Any, typ: str = "at+jwt") -> str:
    from cells_oidc.internal import jws

    return jws.sign_compact({"alg": "ES256", "typ": typ, "kid": "k1"}, claims, private_key)


def test_each_caller_of_a_remembered_token_gets_claims_of_its_own() -> None:
    """The parsed payload of a verified token is remembered (docs/performance.md); a view that
    changes its ``request.auth.claims`` must not change what the next request of the process sees."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cells_oidc.internal import jws

    private = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "7",
        "aud": ["a", "b"],
        "cnf": {"jkt": "x"},
        "scope": "openid",
        "exp": now + 60,
    }
    token = _es256_token(claims, private)
    public = private.public_key()
    first = jws.verify_signature(token, key_for=lambda kid: public, typ="at+jwt")
    first["scope"] = "openid cells_oidc:admin"
    first["aud"].append("evil")
    first["cnf"]["jkt"] = "attacker"
    again = jws.verify_signature(token, key_for=lambda kid: public, typ="at+jwt")
    assert again == claims
    assert jws.unverified_subject(token) == "7"


def test_a_remembered_token_is_still_checked_for_its_type_and_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cells_oidc.internal import jws

    private = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    token = _es256_token({"iss": ISSUER, "sub": "7", "exp": now + 60}, private)
    public = private.public_key()
    assert jws.verify_signature(token, key_for=lambda kid: public, typ="at+jwt")["sub"] == "7"
    # Remembered for the access token type only as far as the header says: an ID token check refuses it.
    with pytest.raises(jws.InvalidToken, match="unexpected token type"):
        jws.verify_signature(token, key_for=lambda kid: public, typ="JWT")
    with pytest.raises(jws.InvalidToken, match="unknown key"):
        jws.verify_signature(token, key_for=lambda kid: None, typ="at+jwt")
    # A new key set makes new key objects: the same key, parsed again, verifies it again ...
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    same_again = serialization.load_pem_public_key(pem)
    assert jws.verify_signature(token, key_for=lambda kid: same_again, typ="at+jwt")["sub"] == "7"
    # ... and another key under the same kid refuses it, remembered or not.
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jws.InvalidToken, match="bad signature"):
        jws.verify_signature(token, key_for=lambda kid: other, typ="at+jwt")
    with pytest.raises(jws.InvalidToken, match="expired"):
        jws.verify(token, key_for=lambda kid: same_again, typ="at+jwt", issuer=ISSUER, now=now + 61)
