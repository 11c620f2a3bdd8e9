"""Pushed authorization requests (RFC 9126) through HTTP: push, use once, and every refusal."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from cells_oidc.models import Client as OAuthClient
from cells_oidc.models import ClientPolicy
from tests.conftest import SCOPE, Browser, basic, code_from, form_post, pkce_pair, query, token_request

PAR = "/oidc/oauth2/par"
REDIRECT_URI = "http://localhost:3640/servers/callback"


def request_params(challenge: str, client_id: str = "cells-sync", **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "0123456789abcdef",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def push(params: dict[str, str], **headers: str) -> Any:
    return form_post(PAR, params, **headers)


@pytest.fixture
def pushed(default_clients: None, alice: Any) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    response = push(request_params(challenge))
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["expires_in"] == 60
    assert data["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    return data["request_uri"], verifier


def test_a_pushed_request_signs_in_once(pushed: tuple[str, str], browser: Browser) -> None:
    request_uri, verifier = pushed
    # RFC 9126 §4: only client_id and request_uri travel through the browser; a parameter
    # beside them is ignored (state stays the pushed one).
    response = browser.authorize({"client_id": "cells-sync", "request_uri": request_uri, "state": "evil"})
    params = code_from(response, REDIRECT_URI)
    assert params["state"] == "0123456789abcdef"
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": "cells-sync",
            "code_verifier": verifier,
        }
    )
    assert exchange.status_code == 200
    # Used: a second use is invalid_request_uri (redirected to the client's one redirect URI? it
    # has several, so the error page, never a redirect to anything unvalidated).
    again = browser.http.get(f"/oidc/oauth2/auth?client_id=cells-sync&request_uri={request_uri}")
    assert again.status_code == 400
    assert b"invalid_request_uri" in again.content


def test_an_expired_request_uri_is_refused(pushed: tuple[str, str], browser: Browser) -> None:
    request_uri, _verifier = pushed
    browser.sign_in("/")
    later = time.time() + 61
    with mock.patch("cells_oidc.internal.par.time.time", return_value=later):
        response = browser.http.get(f"/oidc/oauth2/auth?client_id=cells-sync&request_uri={request_uri}")
    assert response.status_code == 400 and b"invalid_request_uri" in response.content


def test_another_clients_request_uri_is_refused(pushed: tuple[str, str], browser: Browser) -> None:
    request_uri, _verifier = pushed
    browser.sign_in("/")
    # A client with one registered redirect URI gets the error there, with no code.
    OAuthClient.objects.create(
        client_id="one",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://one.example/cb",
        name="one",
    )
    response = browser.http.get(f"/oidc/oauth2/auth?client_id=one&request_uri={request_uri}")
    assert response.status_code == 302
    assert response["Location"].startswith("https://one.example/cb?")
    assert query(response["Location"])["error"] == "invalid_request_uri"
    assert "code" not in query(response["Location"])
    # A client with several: the error page.
    response = browser.http.get(f"/oidc/oauth2/auth?client_id=cells-mobile&request_uri={request_uri}")
    assert response.status_code == 400
    # Unknown client: error page, never a redirect.
    response = browser.http.get(f"/oidc/oauth2/auth?client_id=nobody&request_uri={request_uri}")
    assert response.status_code == 400
    # The rightful client can still use it.
    response = browser.authorize({"client_id": "cells-sync", "request_uri": request_uri})
    assert "code" in code_from(response, REDIRECT_URI)


def test_unknown_request_uri(default_clients: None, alice: Any, browser: Browser) -> None:
    browser.sign_in("/")
    response = browser.http.get(
        "/oidc/oauth2/auth?client_id=cells-sync&request_uri=urn:ietf:params:oauth:request_uri:nope"
    )
    assert response.status_code == 400 and b"invalid_request_uri" in response.content


@pytest.mark.parametrize(
    "change,error",
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"scope": "openid nonsense"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, "invalid_request"),
        ({"request": "eyJ.e30."}, "request_not_supported"),
    ],
)
def test_the_par_endpoint_validates_like_the_authorization_endpoint(
    default_clients: None, change: dict[str, str], error: str
) -> None:
    _verifier, challenge = pkce_pair()
    response = push(request_params(challenge, **change))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == error
    assert response["Cache-Control"] == "no-store"


def test_client_authentication_at_the_par_endpoint(default_clients: None) -> None:
    OAuthClient.objects.create(
        client_id="web",
        client_secret="s3cret",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris="https://app.example/cb",
        name="web",
    )
    _verifier, challenge = pkce_pair()
    params = {**request_params(challenge, client_id="web"), "redirect_uri": "https://app.example/cb"}
    assert push(params, HTTP_AUTHORIZATION=basic("web", "wrong")).status_code == 401
    assert push(params).status_code == 401  # a confidential client must authenticate
    assert push(params, HTTP_AUTHORIZATION=basic("web", "s3cret")).status_code == 201
    # The body's client_id must be the authenticated client (RFC 9126 §2.1).
    other = {**params, "client_id": "cells-sync"}
    assert push(other, HTTP_AUTHORIZATION=basic("web", "s3cret")).status_code in (400, 401)
    assert push({**params, "client_id": "nobody"}).status_code == 401
    assert Client().get(PAR).status_code == 405


def test_required_par_refuses_a_plain_request(default_clients: None, alice: Any, browser: Browser) -> None:
    ClientPolicy.objects.filter(application__client_id="cells-sync").update(
        require_pushed_authorization_requests=True
    )
    _verifier, challenge = pkce_pair()
    browser.sign_in("/")
    response = browser.http.get("/oidc/oauth2/auth", request_params(challenge))
    assert response.status_code == 302
    assert query(response["Location"])["error"] == "invalid_request"
    # Pushed, the same request goes through, across the login page and the confirmation page.
    fresh = Browser()
    uri = push(request_params(challenge)).json()["request_uri"]
    response = fresh.authorize({"client_id": "cells-sync", "request_uri": uri})
    assert "code" in code_from(response, REDIRECT_URI)
    uri = push(request_params(challenge)).json()["request_uri"]
    response = fresh.authorize({"client_id": "cells-sync", "request_uri": uri})  # the confirm page
    assert "code" in code_from(response, REDIRECT_URI)


def test_discovery(default_clients: None, settings: Any) -> None:
    document = Client().get("/oidc/.well-known/openid-configuration").json()
    assert document["pushed_authorization_request_endpoint"] == "http://testserver/oidc/oauth2/par"
    assert document["require_pushed_authorization_requests"] is False
    settings.CELLS_OIDC_REQUIRE_PAR = True
    document = Client().get("/oidc/.well-known/openid-configuration").json()
    assert document["require_pushed_authorization_requests"] is True
    settings.CELLS_OIDC_PAR_ENABLED = False
    document = Client().get("/oidc/.well-known/openid-configuration").json()
    assert "pushed_authorization_request_endpoint" not in document
    assert "require_pushed_authorization_requests" not in document
    assert push({"client_id": "cells-sync"}).status_code == 404
