"""An independent OpenID Connect client (Authlib) signs in over real HTTP and validates the ID token."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken
from django.core.management import call_command

from tests.conftest import PASSWORD
from tests.live_server import sign_in_over_http

TIMEOUT = 10


@pytest.fixture
def provider(live_server: Any, settings: Any, make_user: Any) -> str:
    settings.CELLS_OIDC_SITE_URL = live_server.url
    call_command("loaddata", "default_clients", verbosity=0)
    make_user("alice", first_name="Alice")
    return live_server.url


def sign_in_like_a_browser(authorization_url: str) -> str:
    """Log in on the provider's pages; return the redirect to the client's callback."""
    return sign_in_over_http(authorization_url, password=PASSWORD, timeout=TIMEOUT)[0]


@pytest.mark.django_db(transaction=True)
def test_authlib_signs_in_with_pkce_and_validates_the_id_token(provider: str) -> None:
    metadata = requests.get(f"{provider}/oidc/.well-known/openid-configuration", timeout=TIMEOUT).json()
    assert metadata["issuer"] == f"{provider}/oidc/"
    client = OAuth2Session(
        client_id="cells-sync",
        redirect_uri="http://localhost:3640/servers/callback",
        scope="openid email profile pydio offline",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = "v" * 20 + "-._~" + "0123456789abcdefghijklmnop"
    nonce = "n-0S6_WzA2Mj"
    url, state = client.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    callback = sign_in_like_a_browser(url)
    assert callback.startswith("http://localhost:3640/servers/callback?")
    token = client.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
    )
    assert isinstance(token["expires_in"], int)
    jwks = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=TIMEOUT).json())
    claims = JsonWebToken(["RS256"]).decode(
        token["id_token"],
        key=jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
        claims_params={"nonce": nonce, "client_id": "cells-sync", "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)  # iss, aud, exp, iat, nonce, at_hash, auth_time
    assert claims["name"] == "alice"
    assert claims["sub"]

    # Authlib refreshes with the rotated refresh token, and userinfo answers with the new access token.
    refreshed = client.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    info = requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        timeout=TIMEOUT,
    )
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"]
    # The rotated-out refresh token is dead now.
    replay = requests.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": "cells-sync",
        },
        timeout=TIMEOUT,
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
