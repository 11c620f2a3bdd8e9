"""SQL statements per request on the hot paths (docs/performance.md): each test fails if a
statement is added. Transaction control (BEGIN, COMMIT, SAVEPOINT, RELEASE) is not counted: the
backends log it differently; everything the request asks of the database is.

The floor of each path and what bounds it are in docs/performance.md. The deny-list lives in the
cache (LocMemCache here; Redis or the database cache on a site), not counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from cells_oidc.decorators import bearer_token_required
from project.bench import ClaimsView
from tests import kit
from tests.kit import SCOPE, Browser, bearer_get, code_from, pkce_pair

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_query_counts")]

REDIRECT_URI = "http://localhost:3000/servers/callback"
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@bearer_token_required(scopes=["openid"])
def plain_claims(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.auth.subject, "scope": sorted(request.auth.scopes)})


urlpatterns = [
    path("", include("cells_oidc.urls")),
    path("a/", include("cells_oidc.api.urls")),
    path("claims/drf", ClaimsView.as_view()),
    path("claims/plain", plain_claims),
]


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run inside the block, transaction control left out."""
    found: list[str] = []
    with CaptureQueriesContext(connection) as captured:
        yield found
    found += [
        query["sql"]
        for query in captured.captured_queries
        if not query["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL)
    ]


def assert_statements(found: list[str], expected: int) -> None:
    assert len(found) == expected, f"{len(found)} statements, expected {expected}:\n" + "\n".join(
        sql[:160] for sql in found
    )


@pytest.fixture
def sign_in(default_clients: None, alice: Any) -> Any:
    """A code of alice for cells-client (PKCE) and its verifier, through the browser flow."""

    def code() -> tuple[str, str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": "s" * 16,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return code_from(Browser().authorize(params), REDIRECT_URI)["code"], verifier

    return code


def exchange(code: str, verifier: str) -> Any:
    return kit.exchange(code, REDIRECT_URI, "cells-client", code_verifier=verifier)


def refresh(refresh_token: str) -> Any:
    return kit.refresh("cells-client", refresh_token)


@pytest.fixture
def tokens(sign_in: Any) -> dict[str, Any]:
    response = exchange(*sign_in())
    assert response.status_code == 200, response.content
    return dict(json.loads(response.content))


# ---- the token endpoint ------------------------------------------------------------------------
# The token view's DPoP check (RFC 9449 §5) reads the client with its policy joined when no proof
# came (must the client send one?) and hands it to the validator, which reads it no more: one
# read of the client per token request, counted below.


def test_code_exchange(sign_in: Any) -> None:
    assert exchange(*sign_in()).status_code == 200  # warm-up: the signing keys, loaded once
    code, verifier = sign_in()
    with statements() as found:
        response = exchange(code, verifier)
    assert response.status_code == 200, response.content
    # The client (its policy joined), the code row (its user joined), the sign-in row locked,
    # the code's DELETE (the claim), the ID token, access token and refresh token INSERTs, and
    # the sign-in's UPDATE (redeemed). DOT's read of the new access token for its app_authorized
    # signal is gone: the view sends the row the validator saved.
    assert_statements(found, 8)


def test_refresh(tokens: dict[str, Any]) -> None:
    with statements() as found:
        response = refresh(tokens["refresh_token"])
    assert response.status_code == 200, response.content
    # The client (its policy joined), the sign-in row locked (found by the token's family in a
    # subquery), the refresh token with its user and access token, the claim (conditional
    # UPDATE), the ID token, access token and refresh token INSERTs, and the spent access
    # token's DELETE with Django's two SET NULLs.
    assert_statements(found, 10)
    # The next refresh of the chain costs the same.
    with statements() as found:
        assert refresh(json.loads(response.content)["refresh_token"]).status_code == 200
    assert_statements(found, 10)


def test_a_reused_refresh_token_is_refused_and_revokes_its_sign_in(tokens: dict[str, Any]) -> None:
    assert refresh(tokens["refresh_token"]).status_code == 200
    response = refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == "invalid_grant"


# ---- the bearer path -----------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/claims/drf", "/claims/plain"])
def test_a_view_of_the_token_alone_runs_no_query(tokens: dict[str, Any], url: str) -> None:
    bearer_get(url, tokens["access_token"])  # warm-up: the key's public half, imports
    with statements() as found:
        response = bearer_get(url, tokens["access_token"])
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["scope"] == sorted(SCOPE.split())
    assert_statements(found, 0)


@pytest.mark.parametrize("url", ["/claims/drf", "/claims/plain"])
def test_the_lazy_user_still_refuses_a_deactivated_user_when_read(
    tokens: dict[str, Any], alice: Any, url: str
) -> None:
    alice.is_active = False
    alice.save()
    # A view of the token alone does not read the user (as any JWT resource server)...
    assert bearer_get(url, tokens["access_token"]).status_code == 200
    # ...a view that reads it refuses the token at once.
    response = bearer_get("/a/user/me", tokens["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_user_me(tokens: dict[str, Any]) -> None:
    # The first call reads the user row (the adapter's look-up, which refuses an unknown or
    # inactive user), then its groups, and caches the profile (cells_oidc.internal.profiles).
    with statements() as found:
        first = bearer_get("/a/user/me", tokens["access_token"])
    assert first.status_code == 200, first.content
    assert_statements(found, 2)
    # The next ones answer from the cached profile.
    with statements() as found:
        response = bearer_get("/a/user/me", tokens["access_token"])
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == json.loads(first.content)
    assert json.loads(response.content)["login"] == "alice"
    assert_statements(found, 0)


def test_user_me_without_the_profile_cache(tokens: dict[str, Any], settings: Any) -> None:
    settings.CELLS_OIDC_PROFILE_CACHE_SECONDS = 0
    for _ in range(2):
        with statements() as found:
            response = bearer_get("/a/user/me", tokens["access_token"])
        assert response.status_code == 200, response.content
        assert_statements(found, 2)


def test_userinfo(tokens: dict[str, Any]) -> None:
    with statements() as found:
        response = bearer_get("/oidc/userinfo", tokens["access_token"])
    assert response.status_code == 200, response.content
    # The access token with its user and client (the revocation check), then DOT's own look-up
    # of the same row while it builds the answer.
    assert_statements(found, 2)


# ---- discovery -----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/oidc/.well-known/openid-configuration", "/oidc/.well-known/jwks.json"])
def test_discovery_and_jwks_run_no_query_and_answer_304_to_their_etag(url: str) -> None:
    Client().get(url)  # built once per configuration
    with statements() as found:
        response = Client().get(url)
    assert response.status_code == 200
    assert_statements(found, 0)
    etag = response["ETag"]
    assert etag.startswith('"') and "max-age" in response["Cache-Control"]
    # RFC 9110 §13.1.2: the same validator (or a list holding it, or a weak form) → 304, no body.
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        not_modified = Client().get(url, HTTP_IF_NONE_MATCH=header)
        assert not_modified.status_code == 304, header
        assert not_modified.content == b""
        assert not_modified["ETag"] == etag
    assert Client().get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200
    assert Client().get(url).content == response.content


# ---- DOT's app_authorized, sent without DOT's read of the token ---------------------------------
def test_app_authorized_carries_the_issued_access_token(sign_in: Any) -> None:
    from oauth2_provider.signals import app_authorized

    from cells_oidc.models import checksum

    received: list[Any] = []

    def receiver(sender: Any, request: Any, token: Any, **kwargs: Any) -> None:
        received.append(token)

    app_authorized.connect(receiver)
    try:
        response = exchange(*sign_in())
        assert response.status_code == 200, response.content
        issued = json.loads(response.content)
        response = refresh(issued["refresh_token"])
        assert response.status_code == 200, response.content
        refreshed = json.loads(response.content)
        # A refused request sends nothing.
        assert refresh(issued["refresh_token"]).status_code == 400
    finally:
        app_authorized.disconnect(receiver)
    assert [token.token_checksum for token in received] == [
        checksum(issued["access_token"]),
        checksum(refreshed["access_token"]),
    ]
    assert all(token.pk is not None and token.user.username == "alice" for token in received)


# ---- sign-in ----------------------------------------------------------------------------------
def test_login(alice: Any) -> None:
    from cells_oidc.models import UserSession

    browser = Client()
    browser.get("/oidc/login/")  # the form (and its CSRF cookie)
    with statements() as found:
        response = browser.post(
            "/oidc/login/", {"username": "alice", "password": kit.PASSWORD, "next": "/oidc/account/"}
        )
    assert response.status_code in (302, 303), response.status_code
    # alice; Django's new session (its existence check and INSERT: cycle_key); last_login; this
    # browser session on the account page (its INSERT: the key is new, no row can have it;
    # Django's update_or_create read it first and inserted in a savepoint, and an UPDATE first
    # found nothing); the session's UPDATE when the response is sent. (The audit row is written
    # after the commit, as on the token endpoint.)
    assert_statements(found, 6)
    assert UserSession.objects.filter(user=alice).count() == 1
    # The same user signing in again on this session keeps its key: an UPDATE finds the row.
    browser.get("/oidc/login/")
    with statements() as found:
        response = browser.post(
            "/oidc/login/", {"username": "alice", "password": kit.PASSWORD, "next": "/oidc/account/"}
        )
    assert response.status_code in (302, 303), response.status_code
    assert any(sql.lstrip().upper().startswith("UPDATE") and "cells_oidc_usersession" in sql for sql in found)
    assert UserSession.objects.filter(user=alice).count() == 1
