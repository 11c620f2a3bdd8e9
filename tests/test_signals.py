"""The signals of cells_oidc.signals: each action, done through HTTP, sends its signal exactly once,
after commit, with the documented kwargs and never a secret; a rolled-back action sends nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import Application

from cells_oidc import signals
from cells_oidc.internal import consent, pat
from cells_oidc.models import TokenFamily
from tests.conftest import PASSWORD, SCOPE, Browser, basic, code_from, form_post, query, token_request
from tests.kit import clear_of_window_edges

pytestmark = pytest.mark.django_db

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
REDIRECT = "http://localhost:3000/servers/callback"
COMMON = {"user", "client", "ip", "user_agent", "request_id"}


class Recorder:
    """Every signal of cells_oidc.signals received, in order, as ``(name, kwargs)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def receive(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        assert sender is None
        name = next(name for name in signals.__all__ if getattr(signals, name) is signal)
        self.sent.append((name, kwargs))

    def names(self) -> list[str]:
        return [name for name, _kwargs in self.sent]

    def one(self, name: str) -> dict[str, Any]:
        """The kwargs of the one ``name`` signal received (it must be exactly one)."""
        matching = [kwargs for sent, kwargs in self.sent if sent == name]
        assert len(matching) == 1, (name, self.names())
        return matching[0]

    def clear(self) -> None:
        self.sent.clear()

    def assert_no_secret(self, *secrets: str) -> None:
        for name, kwargs in self.sent:
            for key, value in kwargs.items():
                for secret in secrets:
                    assert secret not in str(value), (name, key)


@pytest.fixture
def caught() -> Iterator[Recorder]:
    recorder = Recorder()
    for name in signals.__all__:
        getattr(signals, name).connect(recorder.receive, dispatch_uid=f"tests.signals.{name}")
    yield recorder
    for name in signals.__all__:
        getattr(signals, name).disconnect(dispatch_uid=f"tests.signals.{name}")


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """``with commit():`` runs the on-commit callbacks (the signals) of what happens inside."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def from_browser(kwargs: dict[str, Any], user: Any) -> None:
    """The common kwargs of an event caused by a request of the test client with :data:`UA`."""
    assert COMMON <= set(kwargs)
    assert kwargs["user"] == user
    assert kwargs["ip"] == "127.0.0.1"
    assert kwargs["user_agent"] == UA
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,}", kwargs["request_id"])


def authorize(browser: Browser, client_id: str = "cells-client", redirect: str = REDIRECT) -> str:
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": SCOPE,
            "state": "a1b2c3d4e5f6g7h8",
        }
    )
    return code_from(response, redirect)["code"]


def exchange(code: str, client_id: str = "cells-client") -> Any:
    return token_request(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client_id},
        HTTP_USER_AGENT=UA,
    )


def refresh(refresh_token: str) -> Any:
    return token_request(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "cells-client"},
        HTTP_USER_AGENT=UA,
    )


@pytest.fixture
def browser() -> Browser:
    return Browser(http=Client(HTTP_USER_AGENT=UA))


# ---- sign-in -------------------------------------------------------------------------------------
def test_sign_in_failed_then_succeeded(alice: Any, caught: Recorder, commit: Any) -> None:
    http = Client(HTTP_USER_AGENT=UA)
    with commit():
        refused = http.post("/oidc/login/", {"username": "alice", "password": "wrong " + PASSWORD})
    assert refused.status_code == 200
    failed = caught.one("sign_in_failed")
    assert caught.names() == ["sign_in_failed"]
    from_browser(failed, None)  # never the account: no enumeration through receivers
    assert failed["login"] == "alice" and failed["client"] is None
    with commit():
        signed_in = http.post("/oidc/login/", {"username": "alice", "password": PASSWORD})
    assert signed_in.status_code == 303
    succeeded = caught.one("sign_in_succeeded")
    from_browser(succeeded, alice)
    assert succeeded["method"] == "password"
    caught.assert_no_secret(PASSWORD)


def test_the_admin_login_sends_sign_in_signals_too(make_user: Any, caught: Recorder, commit: Any) -> None:
    root = make_user("root", is_staff=True, is_superuser=True)
    http = Client(HTTP_USER_AGENT=UA)
    with commit():
        http.post("/admin/login/", {"username": "root", "password": "nope"})
        response = http.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 302
    assert caught.names() == ["sign_in_failed", "sign_in_succeeded"]
    assert caught.one("sign_in_succeeded")["user"] == root
    caught.assert_no_secret(PASSWORD, "nope")


def test_a_lockout_is_sent_once_when_it_begins(
    alice: Any, caught: Recorder, commit: Any, settings: Any
) -> None:
    clear_of_window_edges(10)  # the failures are counted in one fixed window
    settings.CELLS_OIDC_THROTTLES = {"login_account": (3, 900)}
    http = Client(HTTP_USER_AGENT=UA)
    with commit():
        answers = [
            http.post("/oidc/login/", {"username": "alice", "password": f"guess {n}"}).status_code
            for n in range(5)
        ]
    assert answers[:3] == [200, 200, 200] and answers[3:] == [429, 429]
    assert caught.names().count("sign_in_failed") == 3
    locked = caught.one("sign_in_locked_out")
    from_browser(locked, None)
    assert locked["login"] == "alice" and locked["rule"] == "login_account"
    assert isinstance(locked["until"], datetime) and locked["until"] > timezone.now()
    caught.assert_no_secret(*(f"guess {n}" for n in range(5)))


# ---- the code flow -------------------------------------------------------------------------------
def test_code_issued_redeemed_tokens_issued_and_refreshed(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    with commit():
        code = authorize(browser)
    issued = caught.one("code_issued")
    family = TokenFamily.objects.get(user=alice)
    from_browser(issued, alice)
    assert issued["client"].client_id == "cells-client"
    assert issued["family_id"] == family.pk and issued["scope"] == family.scope
    caught.clear()
    with commit():
        response = exchange(code)
    assert response.status_code == 200
    tokens = json.loads(response.content)
    assert sorted(caught.names()) == ["code_redeemed", "tokens_issued"]
    assert caught.one("code_redeemed")["family_id"] == family.pk
    given = caught.one("tokens_issued")
    from_browser(given, alice)
    assert given["grant_type"] == "authorization_code" and given["refresh_token"] is True
    assert given["family_id"] == family.pk and set(given["scope"].split()) == set(SCOPE.split())
    caught.clear()
    with commit():
        assert refresh(tokens["refresh_token"]).status_code == 200
    refreshed = caught.one("tokens_issued")
    assert caught.names() == ["tokens_issued"]
    assert refreshed["grant_type"] == "refresh_token" and refreshed["family_id"] == family.pk
    caught.assert_no_secret(code, tokens["access_token"], tokens["refresh_token"], tokens["id_token"])


def test_a_replayed_code_is_sent_with_its_revocation(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    code = authorize(browser)
    with commit():
        assert exchange(code).status_code == 200
    caught.clear()
    with commit():
        assert exchange(code).status_code == 400
    family = TokenFamily.objects.get(user=alice)
    assert sorted(caught.names()) == ["code_replayed", "token_revoked"]
    assert caught.one("code_replayed")["family_id"] == family.pk
    revoked = caught.one("token_revoked")
    assert (revoked["kind"], revoked["reason"], revoked["family_id"]) == ("sign_in", "replay", family.pk)
    from_browser(revoked, alice)
    caught.clear()
    with commit():
        assert exchange(code).status_code == 400
    assert caught.names() == []  # revoked already: nothing new
    caught.assert_no_secret(code)


def test_refresh_token_reuse_is_detected_once(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    first = json.loads(exchange(authorize(browser)).content)
    assert refresh(first["refresh_token"]).status_code == 200
    with commit():
        assert refresh(first["refresh_token"]).status_code == 400
    family = TokenFamily.objects.get(user=alice)
    assert sorted(caught.names()) == ["refresh_reuse_detected", "token_revoked"]
    reuse = caught.one("refresh_reuse_detected")
    from_browser(reuse, alice)
    assert reuse["family_id"] == family.pk and reuse["client"].client_id == "cells-client"
    assert caught.one("token_revoked")["reason"] == "reuse"
    caught.clear()
    with commit():
        assert refresh(first["refresh_token"]).status_code == 400
    assert caught.names() == []
    caught.assert_no_secret(first["refresh_token"])


# ---- revocations ---------------------------------------------------------------------------------
def test_the_revocation_endpoint_names_the_kind_revoked(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    tokens = json.loads(exchange(authorize(browser)).content)
    family = TokenFamily.objects.get(user=alice)
    with commit():
        response = form_post(
            "/oidc/oauth2/revoke",
            {"token": tokens["access_token"], "client_id": "cells-client"},
            HTTP_USER_AGENT=UA,
        )
    assert response.status_code == 200
    revoked = caught.one("token_revoked")
    from_browser(revoked, alice)
    assert (revoked["kind"], revoked["reason"]) == ("access_token", "revocation_endpoint")
    assert revoked["family_id"] == family.pk
    # DOT revokes the refresh token bound to a revoked access token: a second sign-in for this one.
    other = json.loads(exchange(authorize(browser)).content)
    second = TokenFamily.objects.exclude(pk=family.pk).get(user=alice)
    caught.clear()
    with commit():
        form_post("/oidc/oauth2/revoke", {"token": other["refresh_token"], "client_id": "cells-client"})
    revoked = caught.one("token_revoked")
    assert (revoked["kind"], revoked["family_id"]) == ("refresh_token", second.pk)
    caught.clear()
    with commit():  # RFC 7009 §2.2: an unknown token is a 200 too, and no event
        form_post("/oidc/oauth2/revoke", {"token": "nothing-of-ours", "client_id": "cells-client"})
    assert caught.names() == []
    caught.assert_no_secret(tokens["access_token"], tokens["refresh_token"], other["refresh_token"])


def test_the_account_page_and_the_api_revoke_with_their_reason(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    first = json.loads(exchange(authorize(browser)).content)
    second = json.loads(exchange(authorize(browser)).content)
    families = list(TokenFamily.objects.filter(user=alice).order_by("created"))
    with commit():
        assert browser.http.post(f"/oidc/account/apps/{families[0].pk}/revoke").status_code == 303
    revoked = caught.one("token_revoked")
    from_browser(revoked, alice)
    assert (revoked["kind"], revoked["reason"], revoked["family_id"]) == (
        "sign_in",
        "account_page",
        families[0].pk,
    )
    caught.clear()
    with commit():
        response = Client(HTTP_USER_AGENT=UA).delete(
            f"/a/tokens/{families[1].pk}", HTTP_AUTHORIZATION=f"Bearer {second['access_token']}"
        )
    assert response.status_code == 204
    revoked = caught.one("token_revoked")
    from_browser(revoked, alice)
    assert (revoked["reason"], revoked["family_id"]) == ("api", families[1].pk)
    caught.assert_no_secret(first["access_token"], second["access_token"])


def test_the_admin_revokes_with_reason_admin(
    default_clients: None, alice: Any, make_user: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    exchange(authorize(browser))
    family = TokenFamily.objects.get(user=alice)
    make_user("root", is_staff=True, is_superuser=True)
    admin = Client(HTTP_USER_AGENT=UA)
    admin.login(username="root", password=PASSWORD)
    caught.clear()
    with commit():
        response = admin.post(
            "/admin/cells_oidc/tokenfamily/",
            {"action": "revoke_selected", "_selected_action": [str(family.pk)]},
        )
    assert response.status_code == 302
    revoked = caught.one("token_revoked")
    assert (revoked["reason"], revoked["user"], revoked["family_id"]) == ("admin", alice, family.pk)
    assert revoked["ip"] == "127.0.0.1" and revoked["user_agent"] == UA


def test_logout_signs_out_and_revokes_the_session_tokens(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    tokens = json.loads(exchange(authorize(browser)).content)
    family = TokenFamily.objects.get(user=alice)
    with commit():
        response = browser.http.get(
            "/oidc/oauth2/sessions/logout",
            {"id_token_hint": tokens["id_token"], "client_id": "cells-client"},
        )
    assert response.status_code == 302
    assert sorted(caught.names()) == ["signed_out", "token_revoked"]
    out = caught.one("signed_out")
    from_browser(out, alice)
    assert out["sid"] == family.sid and out["sid"]
    revoked = caught.one("token_revoked")
    assert (revoked["reason"], revoked["family_id"]) == ("logout", family.pk)
    caught.assert_no_secret(tokens["id_token"], tokens["access_token"])


# ---- consent -------------------------------------------------------------------------------------
def test_consent_given_and_withdrawn(alice: Any, browser: Browser, caught: Recorder, commit: Any) -> None:
    notes = Application.objects.create(
        client_id="notes",
        name="Notes",
        client_type=Application.CLIENT_CONFIDENTIAL,
        client_secret="notes-secret-value",
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://notes.example.org/cb",
        algorithm=Application.RS256_ALGORITHM,
    )
    with commit():
        response = browser.authorize(
            {
                "response_type": "code",
                "client_id": "notes",
                "redirect_uri": "https://notes.example.org/cb",
                "scope": "openid email",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            }
        )
    code = query(response["Location"])["code"]
    given = caught.one("consent_given")
    from_browser(given, alice)
    assert given["client"] == notes and given["scope"] == "email openid" and given["remembered"] is True
    assert caught.names().count("code_issued") == 1
    stored = consent.of_user(alice)[0]
    caught.clear()
    with commit():
        assert browser.http.post(f"/oidc/account/consents/{stored.pk}/withdraw").status_code == 303
    withdrawn = caught.one("consent_withdrawn")
    from_browser(withdrawn, alice)
    assert withdrawn["client"] == notes and withdrawn["scope"] == "email openid"
    caught.assert_no_secret(code, "notes-secret-value", basic("notes", "notes-secret-value"))


# ---- personal access tokens ----------------------------------------------------------------------
def test_personal_token_created_used_once_a_day_and_revoked(
    alice: Any, caught: Recorder, commit: Any, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    http = Client(HTTP_USER_AGENT=UA)
    http.login(username="alice", password=PASSWORD)
    html = http.get("/oidc/account/").content.decode()
    nonce = re.search(r'name="nonce" value="([A-Za-z0-9_-]+)"', html)
    assert nonce
    form = {"nonce": nonce.group(1), "label": "backup", "scope": ["profile", "pydio"], "mode": "fixed"}
    caught.clear()
    with commit():
        minted = http.post("/oidc/account/tokens/new", {**form, "expires_in": "7d", "auto_refresh": "1d"})
    assert minted.status_code == 200
    secret = re.search(pat.TOKEN_PATTERN, minted.content.decode())
    assert secret
    created = caught.one("pat_created")
    from_browser(created, alice)
    assert created["created_by"] == alice and created["scope"] == "profile pydio"
    token_id = created["token_id"]
    caught.clear()
    api = Client(HTTP_USER_AGENT=UA)
    with commit():
        for _ in range(3):
            assert api.get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {secret.group(0)}").status_code == 200
    used = caught.one("pat_used")
    from_browser(used, alice)
    assert used["token_id"] == token_id
    caught.clear()
    with commit():
        assert http.post(f"/oidc/account/tokens/{token_id}/revoke").status_code == 303
        assert http.post(f"/oidc/account/tokens/{token_id}/revoke").status_code == 303  # idempotent
    revoked = caught.one("pat_revoked")
    from_browser(revoked, alice)
    assert revoked["token_id"] == token_id and revoked["revoked_by"] == alice
    caught.assert_no_secret(secret.group(0), secret.group(0)[5:])


# ---- clients -------------------------------------------------------------------------------------
def test_client_changes(db: Any, caught: Recorder, commit: Any) -> None:
    with commit():
        app = Application.objects.create(
            client_id="robot",
            name="Robot",
            client_type=Application.CLIENT_CONFIDENTIAL,
            client_secret="robot-secret-value",
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        )
    created = caught.one("client_changed")
    assert (created["action"], created["client_id"], created["client"]) == ("created", "robot", app)
    caught.clear()
    with commit():
        app.name = "Robot 2"
        app.save()
    assert caught.one("client_changed")["action"] == "changed"
    caught.clear()
    with commit():
        app.delete()
    deleted = caught.one("client_changed")
    assert (deleted["action"], deleted["client_id"], deleted["client"]) == ("deleted", "robot", None)
    caught.assert_no_secret("robot-secret-value")


# ---- rolled back: nothing ------------------------------------------------------------------------
def test_a_token_request_that_crashes_sends_nothing(
    default_clients: None, alice: Any, browser: Browser, caught: Recorder, commit: Any
) -> None:
    code = authorize(browser)
    caught.clear()
    crashing = Client(raise_request_exception=False)
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "cells-client",
    }
    with commit(), mock.patch("cells_oidc.internal.issuance.sign", side_effect=RuntimeError("boom")):
        response = crashing.post(
            "/oidc/oauth2/token", urlencode(body), content_type="application/x-www-form-urlencoded"
        )
    assert response.status_code == 500
    assert caught.names() == []
    with commit():  # the code was not spent: the transaction rolled back
        assert exchange(code).status_code == 200
    assert "tokens_issued" in caught.names()


def test_a_rolled_back_action_sends_nothing(alice: Any, caught: Recorder, commit: Any) -> None:
    with commit():
        with pytest.raises(RuntimeError), transaction.atomic():
            pat.mint(alice, label="never", expires_in=timedelta(days=1))
            raise RuntimeError("rolled back")
    assert caught.names() == []
