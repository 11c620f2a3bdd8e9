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
