"""RP-initiated logout decides by browser session (``sid``), not only by user.

OpenID Connect RP-Initiated Logout 1.0 §2: the OP MUST ask the End-User whether to log out when
the ID token hint "does not belong to the current OP session with the RP"; a hint of the same
user from another browser session is such a hint.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from oauth2_provider.models import Application

from tests import kit
from tests.kit import Browser, token_request

pytestmark = pytest.mark.django_db

LOGOUT = "/oidc/oauth2/sessions/logout"
TARGET = "http://localhost:3641/servers/logout"


@pytest.fixture
def rp(default_clients: None, alice: Any) -> Application:
    app = Application.objects.get(client_id="cells-sync")
    app.post_logout_redirect_uris = "http://localhost:[3636-3666]/servers/logout"
    app.save()
    return app


def sign_in(browser: Browser) -> dict[str, Any]:
    """cells-sync's sign-in in ``browser``: its tokens (the ID token carries the session's sid)."""
    return kit.sign_in(
        browser, client_id="cells-sync", redirect_uri="http://localhost:3640/servers/callback", state="t" * 16
    )


def refreshes(tokens: dict[str, Any]) -> bool:
    response = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-sync"}
    )
    if response.status_code == 200:
        tokens["refresh_token"] = json.loads(response.content)["refresh_token"]
        return True
    assert json.loads(response.content)["error"] == "invalid_grant"
    return False


def logout_url(id_token: str) -> str:
    return f"{LOGOUT}?" + urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": TARGET})


def test_a_hint_from_another_session_of_the_same_user_asks_first(rp: Application) -> None:
    laptop, phone = Browser(), Browser()
    laptop_tokens, phone_tokens = sign_in(laptop), sign_in(phone)
    # A cross-site GET in the phone's browser, with the laptop session's ID token.
    page = phone.http.get(logout_url(laptop_tokens["id_token"]))
    assert page.status_code == 200, page.get("Location")
    assert b"Sign out?" in page.content
    assert "_auth_user_id" in phone.http.session  # nothing happened without the user
    assert "_auth_user_id" in laptop.http.session
    assert refreshes(phone_tokens) and refreshes(laptop_tokens)


def test_confirming_a_foreign_hint_ends_only_the_current_session(rp: Application) -> None:
    laptop, phone = Browser(), Browser()
    laptop_tokens, phone_tokens = sign_in(laptop), sign_in(phone)
    phone.http.get(logout_url(laptop_tokens["id_token"]))
    # "Stay signed in": nothing ends.
    phone.http.post(LOGOUT, {"id_token_hint": laptop_tokens["id_token"], "post_logout_redirect_uri": TARGET})
    assert "_auth_user_id" in phone.http.session
    assert refreshes(phone_tokens)
    # "Sign out": the phone's session and its tokens end, the laptop's sign-in does not.
    response = phone.http.post(
        LOGOUT,
        {"id_token_hint": laptop_tokens["id_token"], "post_logout_redirect_uri": TARGET, "allow": "on"},
    )
    assert response.status_code == 302
    assert response["Location"] == TARGET
    assert "_auth_user_id" not in phone.http.session
    assert not refreshes(phone_tokens)
    assert "_auth_user_id" in laptop.http.session
    assert refreshes(laptop_tokens)


def test_a_hint_of_the_current_session_still_signs_out_without_a_prompt(rp: Application) -> None:
    laptop, phone = Browser(), Browser()
    laptop_tokens, phone_tokens = sign_in(laptop), sign_in(phone)
    response = phone.http.get(logout_url(phone_tokens["id_token"]))
    assert response.status_code == 302
    assert response["Location"] == TARGET
    assert "_auth_user_id" not in phone.http.session
    assert not refreshes(phone_tokens)
    assert refreshes(laptop_tokens)


def test_a_refreshed_id_token_of_the_current_session_is_still_its_hint(rp: Application) -> None:
    browser = Browser()
    tokens = sign_in(browser)
    refreshed = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-sync"}
    )
    assert refreshed.status_code == 200
    response = browser.http.get(logout_url(json.loads(refreshed.content)["id_token"]))
    assert response.status_code == 302
    assert "_auth_user_id" not in browser.http.session


def test_a_hint_of_a_session_signed_out_before_asks(rp: Application) -> None:
    browser = Browser()
    old = sign_in(browser)
    assert browser.http.get(logout_url(old["id_token"])).status_code == 302
    sign_in(browser)  # a new session of the same user in the same browser: a new sid
    page = browser.http.get(logout_url(old["id_token"]))
    assert page.status_code == 200
    assert "_auth_user_id" in browser.http.session
