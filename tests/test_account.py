"""The account page: applications holding tokens, remembered consents, active sessions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import Application, RefreshToken

from cells_oidc.models import Consent, TokenFamily, UserSession
from tests.kit import (
    CLI_CALLBACK,
    PASSWORD,
    Browser,
    code_from,
    refresh,
    sign_in,
    signed_in,
    token_request,
)

pytestmark = pytest.mark.django_db

LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS_EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36 Edg/126.0"
CURL = "curl/8.5.0"
ANDROID_CHROME = "Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36"


def test_anonymous_visitors_sign_in_first(db: Any) -> None:
    response = Client().get("/oidc/account/")
    assert response.status_code == 302
    assert response["Location"] == "/oidc/login/?next=/oidc/account/"


def test_revoking_an_application_ends_its_tokens(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser, redirect_uri=CLI_CALLBACK)
    page = browser.http.get("/oidc/account/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Cells Client CLI Tool" in html
    assert "Use your Cells files and folders" in html
    family = TokenFamily.objects.get(user=alice)
    assert f'action="/oidc/account/apps/{family.id}/revoke"' in html
    # The refresh token works until the user revokes the application.
    tokens = json.loads(refresh("cells-client", tokens["refresh_token"]).content)
    response = browser.http.post(f"/oidc/account/apps/{family.id}/revoke")
    assert response.status_code == 303
    assert response["Location"] == "/oidc/account/?done=revoked"
    refused = refresh("cells-client", tokens["refresh_token"])
    assert refused.status_code == 400 and json.loads(refused.content)["error"] == "invalid_grant"
    info = Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert info.status_code == 401
    after = browser.http.get(response["Location"]).content.decode()
    assert "Access revoked." in after
    assert "Cells Client CLI Tool" not in after.split("Remembered approvals")[0]


def test_nobody_revokes_another_users_application(
    default_clients: None, alice: Any, make_user: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, redirect_uri=CLI_CALLBACK)
    family = TokenFamily.objects.get(user=alice)
    make_user("mallory")
    mallory = Client()
    mallory.login(username="mallory", password=PASSWORD)
    assert "Cells Client" not in mallory.get("/oidc/account/").content.decode()
    response = mallory.post(f"/oidc/account/apps/{family.id}/revoke")
    assert response["Location"] == "/oidc/account/?done=missing"
    assert refresh("cells-client", tokens["refresh_token"]).status_code == 200


def test_account_actions_need_post_and_csrf(default_clients: None, alice: Any, browser: Browser) -> None:
    sign_in(browser, redirect_uri=CLI_CALLBACK)
    family = TokenFamily.objects.get(user=alice)
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    assert client.post(f"/oidc/account/apps/{family.id}/revoke").status_code == 403
    assert client.get(f"/oidc/account/apps/{family.id}/revoke").status_code == 405
    assert TokenFamily.objects.get(pk=family.pk).revoked is None
    # The page's own forms carry the token.
    page = client.get("/oidc/account/")
    assert page.content.decode().count('name="csrfmiddlewaretoken"') >= 2


def test_consents_are_listed_and_withdrawn(default_clients: None, alice: Any, make_user: Any) -> None:
    app = Application.objects.create(
        client_id="notes",
        name="Notes App",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://notes.example.org/cb",
        algorithm=Application.RS256_ALGORITHM,
    )
    mine = Consent.objects.create(
        user=alice, application=app, scope="openid email", expires=timezone.now() + timedelta(days=3)
    )
    bob = make_user("bob")
    theirs = Consent.objects.create(
        user=bob, application=app, scope="openid", expires=timezone.now() + timedelta(days=3)
    )
    client = Client()
    client.login(username="alice", password=PASSWORD)
    html = client.get("/oidc/account/").content.decode()
    assert "Notes App" in html and "Know your email address" in html
    assert f'action="/oidc/account/consents/{mine.pk}/withdraw"' in html
    assert f"/consents/{theirs.pk}/" not in html
    assert client.post(f"/oidc/account/consents/{theirs.pk}/withdraw")["Location"].endswith("done=missing")
    assert Consent.objects.filter(pk=theirs.pk).exists()
    assert client.post(f"/oidc/account/consents/{mine.pk}/withdraw")["Location"].endswith("done=withdrawn")
    assert not Consent.objects.filter(pk=mine.pk).exists()
    # Expired consents are not shown.
    Consent.objects.create(user=alice, application=app, scope="openid", expires=timezone.now())
    assert "Notes App" not in client.get("/oidc/account/").content.decode()


def test_sessions_are_listed_and_ended(default_clients: None, alice: Any) -> None:
    laptop = signed_in(login_page=True, HTTP_USER_AGENT=LINUX_FIREFOX)
    phone = signed_in(login_page=True, HTTP_USER_AGENT=IPHONE_SAFARI)
    rows = UserSession.objects.filter(user=alice)
    assert rows.count() == 2
    phone_row = rows.get(user_agent__contains="iPhone")
    # A token family issued from the phone's session.
    phone_browser = Browser(http=phone)
    tokens = sign_in(phone_browser, redirect_uri=CLI_CALLBACK)
    assert TokenFamily.objects.get(user=alice).sid == phone_row.sid

    html = laptop.get("/oidc/account/").content.decode()
    assert "Firefox on Linux" in html and "Safari on iPhone" in html
    assert "this browser" in html
    response = laptop.post(f"/oidc/account/sessions/{phone_row.pk}/end")
    assert response["Location"] == "/oidc/account/?done=ended"
    assert not Session.objects.filter(session_key=phone_row.session_key).exists()
    assert not UserSession.objects.filter(pk=phone_row.pk).exists()
    assert phone.get("/oidc/account/").status_code == 302  # signed out there
    assert refresh("cells-client", tokens["refresh_token"]).status_code == 400  # and its tokens revoked
    # Ending the current session signs out here.
    laptop_row = UserSession.objects.get(user=alice)
    response = laptop.post(f"/oidc/account/sessions/{laptop_row.pk}/end")
    assert response.status_code == 303 and response["Location"] == "/oidc/logged-out/"
    assert laptop.get("/oidc/account/").status_code == 302
    assert not UserSession.objects.filter(user=alice).exists()


def test_a_browser_session_is_listed_again_after_a_sign_in(alice: Any, make_user: Any) -> None:
    """A user signing in again on the same browser keeps one row; another user signing in on a
    browser where alice is signed in (Django's login() gives it a new, empty session, with no key
    until it is saved) gets a row of their own for that session."""
    bob = make_user("bob")
    browser = Client()
    for username in ("alice", "alice", "bob"):
        browser.get("/oidc/login/")
        answer = browser.post("/oidc/login/", {"username": username, "password": PASSWORD})
        assert answer.status_code == 303, answer.status_code
    assert UserSession.objects.filter(user=alice).count() == 1
    row = UserSession.objects.get(user=bob)
    assert row.session_key == browser.session.session_key
    assert "this browser" in browser.get("/oidc/account/").content.decode()


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("in a transaction"),  # the test's: the INSERT's failure in a savepoint
        pytest.param("autocommit", marks=pytest.mark.django_db(transaction=True)),  # a site's
    ],
)
def test_a_new_session_key_that_an_ended_session_had_is_recorded_for_the_new_user(
    alice: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A login's new session key is INSERTed at once (no row should have it); if the row of an
    ended session still has it, that row is taken over by the new session, not lost."""
    from django.contrib.sessions.backends import base

    stale = UserSession.objects.create(user=alice, session_key="k" * 32, sid="old-sid")
    bob = make_user("bob")
    browser = Client()
    browser.get("/oidc/login/")
    monkeypatch.setattr(base, "get_random_string", lambda length, allowed_chars=None: "k" * length)
    answer = browser.post("/oidc/login/", {"username": "bob", "password": PASSWORD})
    assert answer.status_code == 303, answer.status_code
    assert browser.session.session_key == "k" * 32
    row = UserSession.objects.get(session_key="k" * 32)
    assert (row.pk, row.user, row.sid != "old-sid") == (stale.pk, bob, True)
    assert not UserSession.objects.filter(user=alice).exists()


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_records_its_session_in_one_insert_of_its_own(alice: Any) -> None:
    """In autocommit (a site without ATOMIC_REQUESTS) the session's row is one INSERT, not wrapped
    in a BEGIN and a COMMIT of its own (two round trips a login, docs/performance.md)."""
    browser = Client()
    browser.get("/oidc/login/")
    with CaptureQueriesContext(connection) as captured:
        answer = browser.post("/oidc/login/", {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 303, answer.status_code
    sql = [query["sql"].lstrip().upper() for query in captured.captured_queries]
    [index] = [i for i, text in enumerate(sql) if text.startswith('INSERT INTO "CELLS_OIDC_USERSESSION"')]
    assert not sql[index - 1].startswith(("BEGIN", "SAVEPOINT")), sql[index - 1 : index + 2]
    assert not sql[index + 1].startswith(("COMMIT", "RELEASE")), sql[index : index + 2]
    assert UserSession.objects.get(user=alice).session_key == browser.session.session_key


def test_sessions_that_ended_elsewhere_disappear(default_clients: None, alice: Any, make_user: Any) -> None:
    laptop = signed_in(login_page=True, HTTP_USER_AGENT=WINDOWS_EDGE)
    other = signed_in(login_page=True, HTTP_USER_AGENT=CURL)
    assert UserSession.objects.filter(user=alice).count() == 2
    other.post("/oidc/oauth2/sessions/logout", {"allow": "on"})
    assert UserSession.objects.filter(user=alice).count() == 1  # user_logged_out
    # A session that expired (or was deleted by the site) is dropped from the list.
    third = signed_in(login_page=True, HTTP_USER_AGENT=ANDROID_CHROME)
    Session.objects.filter(session_key=third.session.session_key).delete()
    html = laptop.get("/oidc/account/").content.decode()
    assert "Chrome on Android" not in html and "Edge on Windows" in html
    assert UserSession.objects.filter(user=alice).count() == 1
    # Nobody ends another user's session.
    make_user("bob")
    bob = Client()
    bob.login(username="bob", password=PASSWORD)
    row = UserSession.objects.get(user=alice)
    assert bob.post(f"/oidc/account/sessions/{row.pk}/end")["Location"].endswith("done=missing")
    assert laptop.get("/oidc/account/").status_code == 200


def test_refresh_tokens_without_family_row_are_listed_and_revocable(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, redirect_uri=CLI_CALLBACK)
    TokenFamily.objects.all().delete()  # e.g. tokens issued before cells-oidc was installed
    family_id = RefreshToken.objects.get(revoked__isnull=True).token_family
    html = browser.http.get("/oidc/account/").content.decode()
    assert f"/oidc/account/apps/{family_id}/revoke" in html
    browser.http.post(f"/oidc/account/apps/{family_id}/revoke")
    assert refresh("cells-client", tokens["refresh_token"]).status_code == 400


def test_a_sign_in_without_refresh_token_is_listed_until_its_access_token_expires(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": CLI_CALLBACK,
            "scope": "openid profile",  # no offline: an access token only
            "state": "a1b2c3d4e5f6g7h8",
        }
    )
    code = code_from(response, CLI_CALLBACK)["code"]
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CLI_CALLBACK,
            "client_id": "cells-client",
        }
    )
    tokens = json.loads(exchange.content)
    assert "refresh_token" not in tokens
    family = TokenFamily.objects.get(user=alice)
    html = browser.http.get("/oidc/account/").content.decode()
    assert f"/oidc/account/apps/{family.id}/revoke" in html
    assert browser.http.post(f"/oidc/account/apps/{family.id}/revoke")["Location"].endswith("done=revoked")
    info = Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert info.status_code == 401
    assert f"/oidc/account/apps/{family.id}/revoke" not in browser.http.get("/oidc/account/").content.decode()
