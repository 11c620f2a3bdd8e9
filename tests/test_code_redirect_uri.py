"""RFC 6749 §4.1.3: the code exchange repeats the redirect_uri its authorization request named.

"redirect_uri: REQUIRED, if the "redirect_uri" parameter was included in the authorization
request as described in Section 4.1.1, and their values MUST be identical."
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SCOPE, Browser, code_from, pkce_pair, token_request

pytestmark = pytest.mark.django_db

CALLBACK = "http://testserver/auth/callback"  # cells-frontend's only redirect URI


def frontend_code(browser: Browser, scope: str, *, name_redirect_uri: bool) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cells-frontend",
        "scope": scope,
        "state": "frontend-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if name_redirect_uri:
        params["redirect_uri"] = CALLBACK
    return code_from(browser.authorize(params), CALLBACK)["code"], verifier


def exchange(code: str, verifier: str, **extra: str) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "client_id": "cells-frontend"}
    return token_request({**data, "code_verifier": verifier, **extra})


@pytest.mark.parametrize("omitted", [{}, {"redirect_uri": ""}], ids=["omitted", "empty"])
def test_an_omitted_redirect_uri_is_refused_when_the_request_named_one(
    default_clients: None, alice: Any, browser: Browser, omitted: dict[str, str]
) -> None:
    code, verifier = frontend_code(browser, SCOPE, name_redirect_uri=True)
    response = exchange(code, verifier, **omitted)
    assert response.status_code == 400, response.content
    assert json.loads(response.content)["error"] == "invalid_grant"
    # The code is spent (RFC 6749 §4.1.2): a retry with the redirect_uri gets nothing either.
    retry = exchange(code, verifier, redirect_uri=CALLBACK)
    assert json.loads(retry.content)["error"] == "invalid_grant"


def test_the_named_redirect_uri_repeated_is_accepted(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    code, verifier = frontend_code(browser, SCOPE, name_redirect_uri=True)
    response = exchange(code, verifier, redirect_uri=CALLBACK)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("repeat", [False, True])
def test_a_request_that_named_none_may_omit_it(
    default_clients: None, alice: Any, browser: Browser, repeat: bool
) -> None:
    # Without openid, redirect_uri may be omitted when the registration is unambiguous
    # (RFC 6749 §3.1.2.3); the code exchange then need not name it (nor may name another).
    code, verifier = frontend_code(browser, "pydio", name_redirect_uri=False)
    extra = {"redirect_uri": CALLBACK} if repeat else {}
    response = exchange(code, verifier, **extra)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["scope"] == "pydio"
