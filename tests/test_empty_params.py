"""RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted."

Each test sends a parameter empty and omitted, through HTTP, and compares what a client sees.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.test import Client

from tests.conftest import FORM, SCOPE, Browser, basic, code_from, form_post, pkce_pair, token_request

pytestmark = pytest.mark.django_db

AUTHORIZE = "/oidc/oauth2/auth"
CALLBACK = "http://localhost:3000/servers/callback"


def cli_request(**changes: str | None) -> dict[str, str]:
    """cells-client's authorization request (no PKCE, no nonce), with ``changes`` (None omits)."""
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CALLBACK,
        "scope": SCOPE,
        "state": "a1b2c3d4e5f6g7h8",
    }
    params.update(changes)  # type: ignore[arg-type]
    return {k: v for k, v in params.items() if v is not None}


def outcome(response: Any) -> tuple[Any, ...]:
    """What the client sees: status, where it is sent and with which parameter names/errors."""
    location = response.get("Location") or ""
    parts = urlsplit(location)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return (
        response.status_code,
        f"{parts.scheme}://{parts.netloc}{parts.path}",
        sorted(params),
        params.get("error"),
        params.get("state"),
    )


def authorize(params: dict[str, str], *, post: bool = False) -> Any:
    """A signed-in browser's authorization request (GET, or the OIDC form POST)."""
    browser = Browser()
    assert browser.sign_in("/oidc/account/").status_code == 303
    if post:
        # OpenID Connect Core §3.1.2.1: the same request as a form POST (answered with a 303).
        answer = browser.http.post(AUTHORIZE, params)
        assert answer.status_code == 303
        return browser.http.get(answer["Location"])
    return browser.http.get(f"{AUTHORIZE}?{urlencode(params)}")


@pytest.mark.parametrize(
    "key",
    [
        "scope",
        "max_age",
        "response_mode",
        "claims",
        "prompt",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "id_token_hint",
        "login_hint",
        "ui_locales",
        "resource",
        "acr_values",
        "state",
    ],
)
@pytest.mark.parametrize("post", [False, True], ids=["GET", "POST"])
def test_an_empty_authorization_parameter_is_an_omitted_one(
    default_clients: None, alice: Any, key: str, post: bool
) -> None:
    empty = outcome(authorize(cli_request(**{key: ""}), post=post))
    omitted = outcome(authorize(cli_request(**{key: None}), post=post))
    assert empty == omitted
    if key != "state":
        # Either a code or cells-client's one-click confirmation; never an error.
        assert empty[3] is None, empty


def test_an_empty_scope_asks_for_the_default_scopes(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    response = browser.authorize(cli_request(scope=""))
    code = code_from(response, CALLBACK)["code"]
    tokens = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": "cells-client",
        }
    )
    assert tokens.status_code == 200, tokens.content
    assert json.loads(tokens.content)["scope"] == "openid"  # DEFAULT_SCOPES (RFC 6749 §3.3)


@pytest.mark.parametrize("key", ["max_age", "response_mode", "claims", "code_challenge_method"])
def test_cells_client_signs_in_with_empty_optional_parameters(
    default_clients: None, alice: Any, browser: Browser, key: str
) -> None:
    response = browser.authorize(cli_request(**{key: ""}))
    assert "code" in code_from(response, CALLBACK)


def cli_code(browser: Browser) -> str:
    return code_from(browser.authorize(cli_request()), CALLBACK)["code"]


def exchange(code: str, **extra: str) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": "cells-client",
    }
    return token_request({**data, **extra})


def test_an_empty_code_verifier_does_not_burn_a_code_issued_without_pkce(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    response = exchange(cli_code(browser), code_verifier="")
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["refresh_token"]


@pytest.mark.parametrize("key", ["scope", "client_secret", "resource", "nonce", "code_verifier"])
def test_empty_parameters_of_a_code_exchange(
    default_clients: None, alice: Any, browser: Browser, key: str
) -> None:
    empty = exchange(cli_code(browser), **{key: ""})
    omitted = exchange(cli_code(browser))
    assert empty.status_code == omitted.status_code == 200, empty.content
    assert json.loads(empty.content).keys() == json.loads(omitted.content).keys()
    assert json.loads(empty.content)["scope"] == json.loads(omitted.content)["scope"]


def test_empty_required_parameters_of_the_token_endpoint_are_missing(default_clients: None) -> None:
    for data in (
        {"grant_type": "", "client_id": "cells-client"},
        {"grant_type": "refresh_token", "refresh_token": "", "client_id": "cells-client"},
        {
            "grant_type": "authorization_code",
            "code": "",
            "client_id": "cells-client",
            "redirect_uri": CALLBACK,
        },
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": "",
            "client_id": "cells-client",
        },
    ):
        empty = token_request(data)
        omitted = token_request({k: v for k, v in data.items() if v})
        assert empty.status_code == omitted.status_code == 400
        assert json.loads(empty.content) == json.loads(omitted.content)


def test_an_empty_client_id_next_to_basic_credentials_is_omitted(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    response = token_request(
        {
            "grant_type": "authorization_code",
            "code": cli_code(browser),
            "redirect_uri": CALLBACK,
            "client_id": "",
        },
        HTTP_AUTHORIZATION=basic("cells-client"),
    )
    assert response.status_code == 200, response.content


@pytest.fixture
def tokens(default_clients: None, alice: Any, browser: Browser) -> dict[str, Any]:
    response = exchange(cli_code(browser))
    assert response.status_code == 200
    return json.loads(response.content)


def test_an_empty_scope_on_refresh_is_the_granted_scope(tokens: dict[str, Any]) -> None:
    response = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-client",
            "scope": "",
        }
    )
    assert response.status_code == 200, response.content
    assert set(json.loads(response.content)["scope"].split()) == set(SCOPE.split())


def test_an_empty_token_type_hint_at_revocation(tokens: dict[str, Any]) -> None:
    response = form_post(
        "/oidc/oauth2/revoke",
        {"token": tokens["refresh_token"], "token_type_hint": "", "client_id": "cells-client"},
    )
    assert response.status_code == 200, response.content
    refresh = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-client"}
    )
    assert json.loads(refresh.content)["error"] == "invalid_grant"


def test_empty_parameters_at_introspection(tokens: dict[str, Any]) -> None:
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    model.objects.create(
        client_id="files-api",
        client_type=model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=model.GRANT_CLIENT_CREDENTIALS,
        client_secret="files-api-secret",
    )
    auth = {"HTTP_AUTHORIZATION": basic("files-api", "files-api-secret")}
    path = "/oidc/oauth2/introspect"
    empty = form_post(path, {"token": tokens["access_token"], "token_type_hint": "", "client_id": ""}, **auth)
    omitted = form_post(path, {"token": tokens["access_token"]}, **auth)
    assert empty.status_code == omitted.status_code == 200
    assert json.loads(empty.content)["active"] is True
    assert json.loads(empty.content).keys() == json.loads(omitted.content).keys()
    missing = form_post(path, {"token": ""}, **auth)
    assert json.loads(missing.content) == json.loads(form_post(path, {}, **auth).content)


def test_an_empty_access_token_in_the_userinfo_body_is_omitted(tokens: dict[str, Any]) -> None:
    header = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    response = Client().post("/oidc/userinfo", urlencode({"access_token": ""}), content_type=FORM, **header)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["name"] == "alice"


def test_an_empty_scope_at_the_device_authorization_endpoint(default_clients: None, settings: Any) -> None:
    from oauth2_provider.models import get_application_model

    from cells_oidc.models import policy_for

    policy = policy_for(get_application_model().objects.get(client_id="cells-client"))
    policy.allow_device_flow = True
    policy.save()
    path = "/oidc/oauth2/device/auth"
    empty = form_post(path, {"client_id": "cells-client", "scope": ""})
    omitted = form_post(path, {"client_id": "cells-client"})
    assert empty.status_code == omitted.status_code == 200, empty.content
    assert json.loads(empty.content).keys() == json.loads(omitted.content).keys()


def test_empty_logout_parameters_are_omitted(default_clients: None, alice: Any) -> None:
    def sign_in() -> tuple[Browser, str]:
        browser = Browser()
        verifier, challenge = pkce_pair()
        callback = "http://localhost:3640/servers/callback"
        params = {
            "response_type": "code",
            "client_id": "cells-sync",
            "redirect_uri": callback,
            "scope": SCOPE,
            "state": "t" * 16,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        code = code_from(browser.authorize(params), callback)["code"]
        response = token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": callback,
                "client_id": "cells-sync",
                "code_verifier": verifier,
            }
        )
        return browser, json.loads(response.content)["id_token"]

    logout = "/oidc/oauth2/sessions/logout?"
    for extra in ({"client_id": ""}, {"state": ""}, {"post_logout_redirect_uri": ""}, {"ui_locales": ""}):
        browser, id_token = sign_in()
        empty = browser.http.get(logout + urlencode({"id_token_hint": id_token, **extra}))
        browser, id_token = sign_in()
        omitted = browser.http.get(logout + urlencode({"id_token_hint": id_token}))
        assert (empty.status_code, empty.get("Location")) == (omitted.status_code, omitted.get("Location"))
    # An empty hint is no hint: the user is asked.
    browser, _id_token = sign_in()
    page = browser.http.get(logout + urlencode({"id_token_hint": ""}))
    assert page.status_code == 200
    assert "_auth_user_id" in browser.http.session
