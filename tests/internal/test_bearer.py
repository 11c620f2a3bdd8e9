"""cells_oidc.internal.bearer: one RFC 6750 challenge for userinfo, the DRF API and the decorator.

For the same failure the three answer with the same status, the same ``WWW-Authenticate`` value
(byte for byte: one realm, one description) and the same JSON ``error``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client

from tests.conftest import Browser
from tests.test_resource import sign_in

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_resource")]

#: userinfo needs the openid scope; the DRF view and the decorated view below ask for it too.
USERINFO = "/oidc/userinfo"
ENDPOINTS = (USERINFO, "/api/token-only", "/plain/openid")


def answers(token: str | None = None, *, query: str = "", **meta: str) -> list[Any]:
    if token is not None:
        meta["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return [Client().get(url + query, **meta) for url in ENDPOINTS]


def assert_same_refusal(responses: list[Any], status: int, error: str | None) -> str:
    """All answered ``status`` with one challenge; returns it."""
    for url, response in zip(ENDPOINTS, responses, strict=True):
        assert response.status_code == status, (url, response.content[:300])
        assert response["Content-Type"] == "application/json", url
    challenges = {response["WWW-Authenticate"] for response in responses}
    assert len(challenges) == 1, challenges
    challenge = challenges.pop()
    if error is None:
        assert "error=" not in challenge  # RFC 6750 §3.1: no error code without credentials
    else:
        assert f'error="{error}"' in challenge
        # DRF's body says "detail"; userinfo and the decorator say "error" (RFC 6749 §5.2).
        for response in (responses[0], responses[2]):
            assert json.loads(response.content)["error"] == error
    return challenge


@pytest.fixture
def tokens(default_clients: None, alice: Any) -> dict[str, Any]:
    return sign_in(Browser())


def test_without_a_token_the_three_send_the_same_bare_challenge(default_clients: None, settings: Any) -> None:
    settings.CELLS_OIDC_SITE_NAME = "Files"
    # The realm rule: CELLS_OIDC_RESOURCE_REALM, else the site name (userinfo named the issuer URL).
    assert assert_same_refusal(answers(), 401, None) == 'Bearer realm="Files"'
    settings.CELLS_OIDC_RESOURCE_REALM = 'Files "API"'
    assert assert_same_refusal(answers(), 401, None) == 'Bearer realm="Files \\"API\\""'
    # Another scheme is not ours: the same bare challenge.
    assert_same_refusal(answers(HTTP_AUTHORIZATION="Basic YWxpY2U6cGFzcw=="), 401, None)


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer t\u00f6ken", 'Bearer "abc"'])
def test_a_malformed_header_is_the_same_invalid_request(default_clients: None, header: str) -> None:
    challenge = assert_same_refusal(answers(HTTP_AUTHORIZATION=header), 400, "invalid_request")
    assert challenge.startswith('Bearer realm="'), challenge


def test_a_token_in_the_url_is_the_same_invalid_request(tokens: dict[str, Any]) -> None:
    access = tokens["access_token"]
    challenge = assert_same_refusal(answers(query=f"?access_token={access}"), 400, "invalid_request")
    assert "not in the URL" in challenge
    both = answers(access, query=f"?access_token={access}")
    assert_same_refusal(both, 400, "invalid_request")


def test_bad_tokens_are_refused_with_the_same_reason(tokens: dict[str, Any]) -> None:
    access = tokens["access_token"]
    head, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "999"}).encode()).rstrip(b"=").decode()
    cases = {
        "garbage": "not a compact JWS",
        "a" * 20000: "token too long",
        f"{head}.{forged}.{signature}": "bad signature",
        f"{head}.{payload}.": "unsigned token",
        tokens["id_token"]: "not an access token",
    }
    for token, reason in cases.items():
        challenge = assert_same_refusal(answers(token), 401, "invalid_token")
        assert f'error_description="Invalid bearer token: {reason}."' in challenge, challenge


def test_a_missing_scope_is_the_same_insufficient_scope(default_clients: None, alice: Any) -> None:
    access = sign_in(Browser(), scope="pydio offline")["access_token"]
    challenge = assert_same_refusal(answers(access), 403, "insufficient_scope")
    assert challenge.endswith(', scope="openid"'), challenge


def test_a_good_token_passes_all_three(tokens: dict[str, Any]) -> None:
    for url, response in zip(ENDPOINTS, answers(tokens["access_token"]), strict=True):
        assert response.status_code == 200, (url, response.content[:300])
