"""The login page and RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from oauth2_provider.models import Application

from tests.kit import PASSWORD, SCOPE, Browser, query, sign_in, token_request

pytestmark = pytest.mark.django_db

AUTH = "/oidc/oauth2/auth?" + urlencode(
    {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": "http://localhost:3000/servers/callback",
        "scope": SCOPE,
        "state": "s" * 16,
    }
)


def test_login_page_names_the_application_and_answers_303(default_clients: None, alice: Any) -> None:
    http = Client()
    page = http.get("/oidc/login/?" + urlencode({"next": AUTH}))
    assert page.status_code == 200
    assert b"Cells Client CLI Tool" in page.content
    assert b"csrfmiddlewaretoken" in page.content
    response = http.post("/oidc/login/", {"username": "alice", "password": PASSWORD, "next": AUTH})
    assert response.status_code == 303
    assert response["Location"] == AUTH


def test_login_with_the_email_address(default_clients: None, alice: Any) -> None:
    http = Client()
    response = http.post(
        "/oidc/login/", {"username": "ALICE@example.com", "password": PASSWORD, "next": AUTH}
    )
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("nobody@example.com", PASSWORD),
        ("alice@example.com", "x"),
    ],
)
def test_failed_logins_do_not_tell_whether_the_account_exists(
    default_clients: None, alice: Any, username: str, password: str
) -> None:
    response = Client().post("/oidc/login/", {"username": username, "password": password, "next": AUTH})
    assert response.status_code == 200
    assert b"That login and password do not match" in response.content
    assert AUTH.replace("&", "&amp;").encode() in response.content  # the request survives the failure


def test_login_refuses_an_offsite_next(default_clients: None, alice: Any) -> None:
    response = Client().post(
        "/oidc/login/", {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response.status_code == 303
    assert "evil" not in response["Location"]


@pytest.fixture
def rp(default_clients: None) -> Application:
    app = Application.objects.get(client_id="cells-sync")
    app.post_logout_redirect_uris = "http://localhost:[3636-3666]/servers/logout"
    app.save()
    return app


def test_logout_with_a_valid_hint_signs_out_and_redirects_to_the_registered_uri(
    rp: Application, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    target = "http://localhost:3641/servers/logout"
    response = browser.http.get(
        "/oidc/oauth2/sessions/logout?"
        + urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": target, "state": "bye"})
    )
    assert response.status_code == 302
    assert response["Location"] == f"{target}?state=bye"
    assert "_auth_user_id" not in browser.http.session
    # The tokens issued from this browser session ended with it.
    refresh = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-sync"}
    )
    assert json.loads(refresh.content)["error"] == "invalid_grant"
    info = Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert info.status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:3667/servers/logout",
        "https://evil.example/",
        "http://localhost:3641/servers/logout/",
        "javascript:alert(1)",
    ],
)
def test_logout_never_redirects_to_an_unregistered_uri(
    rp: Application, alice: Any, browser: Browser, target: str
) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    response = browser.http.get(
        "/oidc/oauth2/sessions/logout?"
        + urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": target})
    )
    assert response.status_code == 400
    assert not response.has_header("Location")
    assert "_auth_user_id" in browser.http.session  # still signed in


def test_logout_without_a_hint_asks_first(rp: Application, alice: Any, browser: Browser) -> None:
    sign_in(browser, client_id="cells-sync")
    page = browser.http.get("/oidc/oauth2/sessions/logout")
    assert page.status_code == 200
    assert b"Sign out?" in page.content
    assert "_auth_user_id" in browser.http.session
    # "Stay signed in" keeps the session.
    stay = browser.http.post("/oidc/oauth2/sessions/logout", {})
    assert "_auth_user_id" in browser.http.session
    assert stay.status_code in (200, 400)
    response = browser.http.post("/oidc/oauth2/sessions/logout", {"allow": "on"})
    assert response.status_code == 302
    assert response["Location"] == "/oidc/logged-out/"
    assert "_auth_user_id" not in browser.http.session
    assert browser.http.get(response["Location"]).status_code == 200


def test_logout_with_a_forged_hint_is_an_error(rp: Application, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    header, payload, _signature = tokens["id_token"].split(".")
    forged = f"{header}.{payload}.{'A' * 342}"
    response = browser.http.get("/oidc/oauth2/sessions/logout?" + urlencode({"id_token_hint": forged}))
    assert response.status_code == 400
    assert "_auth_user_id" in browser.http.session


def test_an_access_token_is_not_an_id_token_hint(rp: Application, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    response = browser.http.get(
        "/oidc/oauth2/sessions/logout?" + urlencode({"id_token_hint": tokens["access_token"]})
    )
    assert response.status_code == 400


def test_login_keeps_authorization_request_after_prompt(default_clients: None, alice: Any) -> None:
    browser = Browser()
    response = browser.http.get(AUTH)
    assert response.status_code == 302
    assert query(response["Location"])["next"] == AUTH
