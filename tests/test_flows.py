"""Complete sign-ins of the three default clients, exactly as their real apps send them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SCOPE, Browser, basic, code_from, pkce_pair, token_request

pytestmark = pytest.mark.django_db


def refresh(client_id: str, refresh_token: str, scope: str | None = SCOPE) -> Any:
    data = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    return token_request(data)


def assert_token_response(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert isinstance(body["expires_in"], int)
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    return body


def userinfo(access_token: str) -> Any:
    from django.test import Client

    return Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def sign_in_refresh_twice(
    client_id: str, redirect_uri: str, tokens: dict[str, Any], scope: str | None
) -> None:
    first = assert_token_response(refresh(client_id, tokens["refresh_token"], scope))
    assert first["refresh_token"] != tokens["refresh_token"]
    second = assert_token_response(refresh(client_id, first["refresh_token"], scope))
    assert second["refresh_token"] != first["refresh_token"]
    info = userinfo(second["access_token"])
    assert info.status_code == 200, info.content
    assert json.loads(info.content)["name"] == "alice"


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://testserver/oauth2/oob", "http://localhost:3000/servers/callback"],
)
def test_cells_client_signs_in_without_pkce(
    default_clients: None, alice: Any, browser: Browser, redirect_uri: str
) -> None:
    state = "a1b2c3d4e5f6g7h8"
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": state,
        }
    )
    params = code_from(response, redirect_uri)
    assert params["state"] == state
    assert params["iss"] == "http://testserver/oidc/"
    if redirect_uri.endswith("/oauth2/oob"):
        page = browser.http.get(response["Location"])
        assert page.status_code == 200
        assert params["code"].encode() in page.content
        assert page["Cache-Control"] == "no-store"
        assert page["Referrer-Policy"] == "no-referrer"
    tokens = assert_token_response(
        token_request(
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": redirect_uri,
                "client_id": "cells-client",
            }
        )
    )
    sign_in_refresh_twice("cells-client", redirect_uri, tokens, SCOPE)


def test_cells_sync_signs_in_with_pkce_from_a_port_in_the_range(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    redirect_uri = "http://localhost:3651/servers/callback"
    verifier, challenge = pkce_pair()
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-sync",
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": "0123456789abcdef",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "response_mode": "query",
        }
    )
    params = code_from(response, redirect_uri)
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "client_id": "cells-sync",
            "code_verifier": verifier,
        },
        HTTP_ORIGIN="http://localhost:3651",
    )
    tokens = assert_token_response(exchange)
    assert exchange["Access-Control-Allow-Origin"] == "http://localhost:3651"
    sign_in_refresh_twice("cells-sync", redirect_uri, tokens, SCOPE)


def test_mobile_app_signs_in_with_custom_scheme(default_clients: None, alice: Any, browser: Browser) -> None:
    redirect_uri = "cellsauth://callback"
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-mobile",
            "redirect_uri": redirect_uri,
            "scope": "openid email offline profile pydio",
            "state": "1a2b3c4d5e6f7",
        }
    )
    params = code_from(response, redirect_uri)
    tokens = assert_token_response(
        token_request(
            {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri},
            HTTP_AUTHORIZATION=basic("cells-mobile"),
        )
    )
    # The Android app refreshes without a scope parameter.
    sign_in_refresh_twice("cells-mobile", redirect_uri, tokens, None)
