"""Discovery (OpenID Connect Discovery 1.0 §3, RFC 8414) says what the endpoints enforce.

Each advertised value is built from the constant the endpoint checks with; these tests hold
both ends: every advertised value is accepted, every other candidate refused. And the document
is built once per configuration, again when a setting changes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from tests.conftest import PASSWORD, basic, form_post, pkce_pair, query, token_request

pytestmark = pytest.mark.django_db

DISCOVERY = "/oidc/.well-known/openid-configuration"
REDIRECT_URI = "http://localhost:3636"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def metadata() -> dict[str, Any]:
    response = Client().get(DISCOVERY)
    assert response.status_code == 200
    return json.loads(response.content)


def authorization_error(http: Client, **params: str) -> str | None:
    """The ``error`` an authorization request is answered with (redirect or page), else ``None``."""
    _verifier, challenge = pkce_pair()
    request = {
        "client_id": "cells-client",
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    response = http.get("/oidc/oauth2/auth?" + urlencode(request))
    if response.status_code == 302 and response["Location"].startswith(REDIRECT_URI):
        return query(response["Location"]).get("error")
    if response.status_code >= 400:
        return response.context["error"] if response.context else "invalid_request"
    return None


@pytest.fixture
def signed_in(default_clients: None, alice: Any) -> Client:
    http = Client()
    assert http.login(username="alice", password=PASSWORD)
    return http


# OpenID Connect Core §3.1.2.1 (and Prompt Create 1.0's ``create``).
PROMPT_CANDIDATES = ("none", "login", "consent", "select_account", "create", "bogus")


@pytest.mark.parametrize("prompt", PROMPT_CANDIDATES)
def test_a_prompt_value_is_accepted_exactly_when_advertised(signed_in: Client, prompt: str) -> None:
    advertised = prompt in metadata()["prompt_values_supported"]
    error = authorization_error(signed_in, prompt=prompt)
    # prompt=none may end in consent_required or interaction_required: the value was understood.
    assert (error != "invalid_request") is advertised, error


@pytest.mark.parametrize("method", ["S256", "plain", "s256"])
def test_a_code_challenge_method_is_accepted_exactly_when_advertised(signed_in: Client, method: str) -> None:
    advertised = method in metadata()["code_challenge_methods_supported"]
    error = authorization_error(signed_in, code_challenge_method=method)
    assert (error != "invalid_request") is advertised, error


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_a_response_mode_is_accepted_exactly_when_advertised(signed_in: Client, mode: str) -> None:
    advertised = mode in metadata()["response_modes_supported"]
    assert (authorization_error(signed_in, response_mode=mode) != "invalid_request") is advertised


GRANT_CANDIDATES = (
    "authorization_code",
    "refresh_token",
    DEVICE_GRANT,
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
)


@pytest.mark.parametrize("grant_type", GRANT_CANDIDATES)
def test_a_grant_type_is_accepted_exactly_when_advertised(
    default_clients: None, alice: Any, grant_type: str
) -> None:
    """A Cells client's token request of each grant type: refused for its type only when the
    type is not advertised (an advertised one fails on its missing parameters instead)."""
    advertised = grant_type in metadata()["grant_types_supported"]
    # With the password grant's parameters (oauthlib checks the user first), so that only its
    # type can refuse it.
    body = {"grant_type": grant_type, "client_id": "cells-client", "username": "alice", "password": PASSWORD}
    response = token_request(body)
    error = json.loads(response.content)["error"]
    assert (error not in ("unsupported_grant_type", "unauthorized_client")) is advertised, error


def test_every_advertised_token_endpoint_auth_method_authenticates_a_client(default_clients: None) -> None:
    """``none`` (client_id in the body) and ``client_secret_basic`` (a public client's empty
    password, as Cells sends it) at the device endpoint; a malformed Basic header is refused."""
    advertised = metadata()["token_endpoint_auth_methods_supported"]
    assert {"none", "client_secret_basic"} <= set(advertised)
    device = "/oidc/oauth2/device/auth"
    by_body = form_post(device, {"client_id": "cells-client", "scope": "openid"})
    assert by_body.status_code == 200, by_body.content
    by_basic = form_post(
        device, {"client_id": "cells-client", "scope": "openid"}, HTTP_AUTHORIZATION=basic("cells-client")
    )
    assert by_basic.status_code == 200, by_basic.content


def test_the_document_is_built_once_per_configuration(
    default_clients: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cells_oidc.internal import endpoints

    calls = []
    original = endpoints.reverse
    monkeypatch.setattr(endpoints, "reverse", lambda *a, **k: calls.append(a) or original(*a, **k))
    settings.CELLS_OIDC_SITE_URL = "https://id.example.com"  # a configuration of this test
    first = metadata()
    built = len(calls)
    assert built > 0
    assert metadata() == first
    Client().get("/oidc/.well-known/jwks.json")
    assert len(calls) == built  # no reverse() for a document already built
    settings.CELLS_OIDC_SITE_URL = "https://id.example.org"  # setting_changed: built again
    moved = metadata()
    assert moved["issuer"] == "https://id.example.org/oidc/"
    assert moved["token_endpoint"] == "https://id.example.org/oidc/oauth2/token"
    assert len(calls) > built
