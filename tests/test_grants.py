"""The token endpoint's grants over HTTP: PKCE, authorization codes, refresh tokens, client authentication.

Codes are obtained through the real authorization endpoint (login and confirmation included) and
redeemed as the Cells clients do; every assertion is something a client or an attacker would see.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from cells_oidc.internal.validators import CellsOAuth2Validator
from cells_oidc.models import ClientPolicy, TokenFamily
from tests.kit import (
    SCOPE,
    Browser,
    basic,
    code_from,
    exchange,
    ok,
    pkce_pair,
    refresh,
    sign_in,
    token_request,
)
from tests.test_authorize import SECRET, THIRD_URI, make_app, third_party  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

SYNC_URI = "http://localhost:3651/servers/callback"
CLI_URI = "http://localhost:3000/servers/callback"
MOBILE_URI = "cellsauth://callback"
STATE = "0123456789abcdef"


# ---- helpers ---------------------------------------------------------------------------------


def authorize(
    client_id: str,
    redirect_uri: str,
    *,
    scope: str = SCOPE,
    challenge: str | None = None,
    browser: Browser | None = None,
    username: str = "alice",
) -> str:
    """Sign in through the authorization endpoint and return the code."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": STATE,
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    response = (browser or Browser()).authorize(params, username=username)
    return code_from(response, redirect_uri)["code"]


def refused(response: Any, error: str, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert body["error"] == error, body
    assert "access_token" not in body and "refresh_token" not in body
    return body


def userinfo_status(access_token: str) -> int:
    return Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code


# ---- PKCE (RFC 7636, RFC 9700 §2.1.1) ------------------------------------------------------


def test_a_code_with_a_challenge_is_redeemed_with_the_right_verifier(
    default_clients: None, alice: Any
) -> None:
    tokens = sign_in(Browser(), client_id="cells-sync", redirect_uri=SYNC_URI)
    assert tokens["refresh_token"] and tokens["id_token"]
    assert userinfo_status(tokens["access_token"]) == 200


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "wrong-" + "v" * 50,
        "A" * 42,  # too short (RFC 7636 §4.1: 43-128)
        "A" * 129,  # too long
        "A" * 42 + " ",
        "A" * 42 + "+",
    ],
    ids=["missing", "empty", "wrong", "42", "129", "space", "plus"],
)
def test_a_failed_verifier_burns_the_code(default_clients: None, alice: Any, verifier: str | None) -> None:
    right, challenge = pkce_pair()
    code = authorize("cells-sync", SYNC_URI, challenge=challenge)
    extra = {} if verifier is None else {"code_verifier": verifier}
    response = exchange(code, SYNC_URI, "cells-sync", **extra)
    assert response.status_code == 400
    assert json.loads(response.content)["error"] in ("invalid_grant", "invalid_request")
    # RFC 7636 §4.6 + RFC 6749 §4.1.2: the code is gone, the right verifier fails too.
    refused(exchange(code, SYNC_URI, "cells-sync", code_verifier=right), "invalid_grant")
    assert not get_access_token_model().objects.exists()


def test_verifiers_of_43_and_128_characters_work(default_clients: None, alice: Any) -> None:
    import hashlib

    for verifier in ("a" * 43, "~._-" * 32):
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        code = authorize("cells-sync", SYNC_URI, challenge=challenge)
        ok(exchange(code, SYNC_URI, "cells-sync", code_verifier=verifier))


def test_the_challenge_itself_is_not_a_verifier(default_clients: None, alice: Any) -> None:
    # "plain" would accept the challenge as verifier; S256 must not.
    _verifier, challenge = pkce_pair()
    code = authorize("cells-sync", SYNC_URI, challenge=challenge)
    refused(exchange(code, SYNC_URI, "cells-sync", code_verifier=challenge), "invalid_grant")


def test_no_downgrade_a_code_without_challenge_is_never_redeemed_with_a_verifier(
    default_clients: None, alice: Any
) -> None:
    # cells-client may omit PKCE; a code issued without a challenge refuses any verifier
    # (RFC 9700 §4.8.2: an attacker injecting a stolen code would send one) and is burned.
    verifier, _challenge = pkce_pair()
    code = authorize("cells-client", CLI_URI)
    refused(exchange(code, CLI_URI, "cells-client", code_verifier=verifier), "invalid_grant")
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")


def test_a_client_not_requiring_pkce_still_verifies_a_challenge_it_sent(
    default_clients: None, alice: Any
) -> None:
    verifier, challenge = pkce_pair()
    code = authorize("cells-client", CLI_URI, challenge=challenge)
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")  # verifier missing
    code = authorize("cells-client", CLI_URI, challenge=challenge)
    ok(exchange(code, CLI_URI, "cells-client", code_verifier=verifier))


def test_cells_sync_without_pkce_is_refused_at_the_authorization_endpoint(
    default_clients: None, alice: Any
) -> None:
    params = {
        "response_type": "code",
        "client_id": "cells-sync",
        "redirect_uri": SYNC_URI,
        "scope": SCOPE,
        "state": STATE,
    }
    response = Browser().authorize(params)
    assert response.status_code == 302
    assert "error=invalid_request" in response["Location"]
    assert not get_grant_model().objects.exists()


def test_plain_pkce_is_refused_at_the_authorization_endpoint(default_clients: None, alice: Any) -> None:
    verifier = "p" * 50
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CLI_URI,
        "scope": SCOPE,
        "state": STATE,
        "code_challenge": verifier,
        "code_challenge_method": "plain",
    }
    response = Browser().authorize(params)
    assert "error=invalid_request" in response["Location"]
    assert not get_grant_model().objects.exists()


# ---- authorization codes ---------------------------------------------------------------------


def test_a_code_is_single_use_and_a_replay_revokes_its_tokens(default_clients: None, alice: Any) -> None:
    code = authorize("cells-client", CLI_URI)
    tokens = ok(exchange(code, CLI_URI, "cells-client"))
    assert userinfo_status(tokens["access_token"]) == 200
    # RFC 6749 §4.1.2: used twice -> refused, and what it produced is revoked.
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")
    assert userinfo_status(tokens["access_token"]) == 401
    refused(refresh("cells-client", tokens["refresh_token"], SCOPE), "invalid_grant")
    assert TokenFamily.objects.get().revoked is not None


def test_a_replay_also_revokes_tokens_refreshed_since(default_clients: None, alice: Any) -> None:
    code = authorize("cells-client", CLI_URI)
    first = ok(exchange(code, CLI_URI, "cells-client"))
    second = ok(refresh("cells-client", first["refresh_token"], SCOPE))
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")
    assert userinfo_status(second["access_token"]) == 401
    refused(refresh("cells-client", second["refresh_token"], SCOPE), "invalid_grant")


def test_a_replay_revokes_the_access_token_of_a_sign_in_without_refresh_token(
    default_clients: None, alice: Any
) -> None:
    code = authorize("cells-client", CLI_URI, scope="openid profile pydio")
    tokens = ok(exchange(code, CLI_URI, "cells-client"))
    assert "refresh_token" not in tokens
    assert userinfo_status(tokens["access_token"]) == 200
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")
    assert userinfo_status(tokens["access_token"]) == 401


def test_a_replay_does_not_touch_other_sign_ins(default_clients: None, alice: Any) -> None:
    other = sign_in(Browser(), redirect_uri=CLI_URI)
    code = authorize("cells-client", CLI_URI)
    ok(exchange(code, CLI_URI, "cells-client"))
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")
    assert userinfo_status(other["access_token"]) == 200
    ok(refresh("cells-client", other["refresh_token"], SCOPE))


def test_an_expired_code_fails(default_clients: None, alice: Any) -> None:
    code = authorize("cells-client", CLI_URI)
    get_grant_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    refused(exchange(code, CLI_URI, "cells-client"), "invalid_grant")
    assert not get_access_token_model().objects.exists()


@pytest.mark.parametrize("code", ["", "x", "nope" * 100, "%00", "a\x00b", "é" * 10])
def test_unknown_or_malformed_codes_fail(default_clients: None, alice: Any, code: str) -> None:
    response = exchange(code, CLI_URI, "cells-client")
    assert response.status_code == 400
    assert json.loads(response.content)["error"] in ("invalid_grant", "invalid_request")


def test_a_code_of_client_a_is_refused_to_client_b(default_clients: None, alice: Any) -> None:
    code = authorize("cells-client", CLI_URI)
    refused(exchange(code, CLI_URI, "cells-mobile"), "invalid_grant")
    refused(exchange(code, CLI_URI, None, HTTP_AUTHORIZATION=basic("cells-mobile")), "invalid_grant")
    assert not get_access_token_model().objects.exists()
    # As fosite does, an attempt by another client does not spend the rightful client's code.
    ok(exchange(code, CLI_URI, "cells-client"))


@pytest.mark.usefixtures("third_party")
def test_a_code_of_a_public_client_is_refused_to_a_confidential_one(
    default_clients: None, alice: Any
) -> None:
    code = authorize("cells-client", CLI_URI)
    refused(
        exchange(code, CLI_URI, None, HTTP_AUTHORIZATION=basic("third-party", SECRET)),
        "invalid_grant",
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost:3000/servers/callback/",
        "http://localhost:3636",
        "http://testserver/oauth2/oob",  # registered too, but not the one of this request
        "http://localhost:3000/servers/callback?x",
        "",
        None,
    ],
)
def test_the_token_request_redirect_uri_must_equal_the_authorization_requests(
    default_clients: None, alice: Any, redirect_uri: str | None
) -> None:
    code = authorize("cells-client", CLI_URI)
    response = exchange(code, redirect_uri, "cells-client")
    assert response.status_code == 400
    assert json.loads(response.content)["error"] in ("invalid_grant", "invalid_request")
    assert not get_access_token_model().objects.exists()


def test_a_second_redemption_after_the_grant_was_claimed_gets_nothing(
    default_clients: None, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two redemptions of one code race: the second arrives after the first claimed the grant
    (deleted its row) but before it issued the tokens. Only one may get tokens."""
    code = authorize("cells-client", CLI_URI)
    original = CellsOAuth2Validator._save_bearer_token
    concurrent: list[Any] = []

    def save_while_another_redeems(self: Any, token: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not concurrent:
            concurrent.append(exchange(code, CLI_URI, "cells-client"))
        return original(self, token, request, *args, **kwargs)

    monkeypatch.setattr(CellsOAuth2Validator, "_save_bearer_token", save_while_another_redeems)
    first = exchange(code, CLI_URI, "cells-client")
    assert len(concurrent) == 1
    refused(concurrent[0], "invalid_grant")
    tokens = ok(first)
    assert get_access_token_model().objects.count() == 1
    assert userinfo_status(tokens["access_token"]) == 200


def test_two_redemptions_in_sequence_give_one_token_set(default_clients: None, alice: Any) -> None:
    code = authorize("cells-client", CLI_URI)
    responses = [exchange(code, CLI_URI, "cells-client") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 400, 400]


# ---- refresh tokens --------------------------------------------------------------------------


def test_refresh_rotates_and_always_returns_a_refresh_token(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI)
    seen = {tokens["refresh_token"]}
    for scope in (SCOPE, None, SCOPE):
        tokens = ok(refresh("cells-client", tokens["refresh_token"], scope))
        assert tokens["refresh_token"] not in seen
        assert isinstance(tokens["expires_in"], int)
        seen.add(tokens["refresh_token"])
    assert userinfo_status(tokens["access_token"]) == 200


def test_replaying_a_rotated_out_refresh_token_revokes_the_family(default_clients: None, alice: Any) -> None:
    first = sign_in(Browser(), redirect_uri=CLI_URI)
    second = ok(refresh("cells-client", first["refresh_token"], SCOPE))
    third = ok(refresh("cells-client", second["refresh_token"], SCOPE))
    # An attacker (or a confused client) replays the first one.
    refused(refresh("cells-client", first["refresh_token"], SCOPE), "invalid_grant")
    # RFC 9700 §4.14.2: the newest refresh token is revoked too, and its access token.
    refused(refresh("cells-client", third["refresh_token"], SCOPE), "invalid_grant")
    assert userinfo_status(third["access_token"]) == 401


def test_a_replay_does_not_revoke_another_family(default_clients: None, alice: Any) -> None:
    mine = sign_in(Browser(), redirect_uri=CLI_URI)
    other = sign_in(Browser(), redirect_uri=CLI_URI)
    ok(refresh("cells-client", mine["refresh_token"], SCOPE))
    refused(refresh("cells-client", mine["refresh_token"], SCOPE), "invalid_grant")
    ok(refresh("cells-client", other["refresh_token"], SCOPE))


@pytest.mark.parametrize("scope", ["openid email profile pydio", "openid", "pydio", "openid profile email"])
def test_no_refresh_token_without_offline_scope(default_clients: None, alice: Any, scope: str) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI, scope=scope)
    assert "refresh_token" not in tokens
    assert get_refresh_token_model().objects.filter(revoked__isnull=True).count() == 0


@pytest.mark.parametrize("scope", ["openid offline_access", "offline_access", "offline", "pydio offline"])
def test_offline_or_offline_access_gives_a_refresh_token(
    default_clients: None, alice: Any, scope: str
) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI, scope=scope)
    assert tokens["refresh_token"]
    assert ("id_token" in tokens) == ("openid" in scope)
    refreshed = ok(refresh("cells-client", tokens["refresh_token"]))
    assert refreshed["refresh_token"]
    assert refreshed["scope"] == tokens["scope"]


def test_a_narrowed_refresh_still_rotates(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI)
    narrowed = ok(refresh("cells-client", tokens["refresh_token"], "openid pydio"))
    assert narrowed["scope"] == "openid pydio"
    # The old refresh token must not stay usable just because no offline scope was asked for.
    assert narrowed["refresh_token"]
    refused(refresh("cells-client", tokens["refresh_token"], "openid pydio"), "invalid_grant")


def test_refreshing_with_a_broader_scope_is_refused(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI, scope="openid pydio offline")
    refused(refresh("cells-client", tokens["refresh_token"], "openid pydio offline email"), "invalid_scope")
    # The refusal does not spend the token.
    ok(refresh("cells-client", tokens["refresh_token"], "openid pydio offline"))


def test_refresh_of_another_clients_token_is_refused(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI)
    refused(refresh("cells-mobile", tokens["refresh_token"], SCOPE), "invalid_grant")
    refused(
        refresh(None, tokens["refresh_token"], SCOPE, HTTP_AUTHORIZATION=basic("cells-sync")), "invalid_grant"
    )
    assert get_access_token_model().objects.count() == 1


@pytest.mark.parametrize("token", ["", "x", "y" * 300, "a\x00b", "%ff"])
def test_unknown_refresh_tokens_fail(default_clients: None, alice: Any, token: str) -> None:
    response = refresh("cells-client", token, SCOPE)
    assert response.status_code == 400
    assert json.loads(response.content)["error"] in ("invalid_grant", "invalid_request")


def test_a_refresh_token_of_a_revoked_family_fails(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), redirect_uri=CLI_URI)
    TokenFamily.objects.get().revoke()
    refused(refresh("cells-client", tokens["refresh_token"], SCOPE), "invalid_grant")


def test_the_refreshed_id_token_keeps_the_sign_in(default_clients: None, alice: Any) -> None:
    from cells_oidc.internal import tokens as jwt

    first = sign_in(Browser(), redirect_uri=CLI_URI)
    refreshed = ok(refresh("cells-client", first["refresh_token"], SCOPE))
    a = jwt.verify(first["id_token"], typ=jwt.ID_TOKEN_TYP)
    b = jwt.verify(refreshed["id_token"], typ=jwt.ID_TOKEN_TYP)
    assert a["sub"] == b["sub"] and a["auth_time"] == b["auth_time"] and a["sid"] == b["sid"]


# ---- client authentication -------------------------------------------------------------------


def test_basic_with_an_empty_password_identifies_a_public_client(default_clients: None, alice: Any) -> None:
    verifier, challenge = pkce_pair()
    code = authorize("cells-sync", SYNC_URI, challenge=challenge)
    tokens = ok(
        exchange(code, SYNC_URI, None, code_verifier=verifier, HTTP_AUTHORIZATION=basic("cells-sync"))
    )
    tokens = ok(refresh(None, tokens["refresh_token"], SCOPE, HTTP_AUTHORIZATION=basic("cells-sync")))
    # Also with the client_id repeated in the body.
    ok(refresh("cells-sync", tokens["refresh_token"], SCOPE, HTTP_AUTHORIZATION=basic("cells-sync")))


@pytest.mark.parametrize("with_body_client_id", [False, True])
def test_basic_with_a_wrong_secret_is_refused_for_a_public_client(
    default_clients: None, alice: Any, with_body_client_id: bool
) -> None:
    verifier, challenge = pkce_pair()
    code = authorize("cells-sync", SYNC_URI, challenge=challenge)
    client_id = "cells-sync" if with_body_client_id else None
    response = exchange(
        code, SYNC_URI, client_id, code_verifier=verifier, HTTP_AUTHORIZATION=basic("cells-sync", "wrong")
    )
    refused(response, "invalid_client", status=401)
    tokens = sign_in(Browser(), client_id="cells-sync", redirect_uri=SYNC_URI)
    response = refresh(client_id, tokens["refresh_token"], SCOPE, HTTP_AUTHORIZATION=basic("cells-sync", "x"))
    refused(response, "invalid_client", status=401)


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"cells-sync").decode(),  # no colon
        "Basic " + base64.b64encode(b":").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
        "Basic " + base64.b64encode(b"nobody:").decode(),
        "Basic " + base64.b64encode(b"cells-mobile:").decode(),  # another client than the body's
        "Basic " + base64.b64encode(b"cells%2Dsync:x").decode(),
        "Basic " + "A" * 10000,
    ],
    ids=[
        "not-base64",
        "no-colon",
        "empty-id",
        "not-utf8",
        "unknown",
        "other-client",
        "encoded-secret",
        "huge",
    ],
)
def test_malformed_basic_credentials_are_refused(default_clients: None, alice: Any, header: str) -> None:
    tokens = sign_in(Browser(), client_id="cells-sync", redirect_uri=SYNC_URI)
    response = refresh("cells-sync", tokens["refresh_token"], SCOPE, HTTP_AUTHORIZATION=header)
    assert response.status_code in (400, 401), response.content
    assert json.loads(response.content)["error"] in ("invalid_client", "invalid_request")
    ok(refresh("cells-sync", tokens["refresh_token"], SCOPE))  # and the token was not spent


def test_a_public_client_sending_a_secret_in_the_body_is_refused(default_clients: None, alice: Any) -> None:
    tokens = sign_in(Browser(), client_id="cells-sync", redirect_uri=SYNC_URI)
    refused(
        token_request(
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "cells-sync",
                "client_secret": "guess",
            }
        ),
        "invalid_client",
        status=401,
    )


def _third_party_code(alice_browser: Browser | None = None) -> str:
    return authorize("third-party", THIRD_URI, scope="openid offline", browser=alice_browser)


@pytest.mark.usefixtures("third_party")
def test_a_confidential_client_must_authenticate(alice: Any) -> None:
    code = _third_party_code()
    # No secret, an empty one, a wrong one: refused, and (DOT) the code stays for the real client.
    refused(exchange(code, THIRD_URI, "third-party"), "invalid_client", status=401)
    refused(exchange(code, THIRD_URI, None, HTTP_AUTHORIZATION=basic("third-party")), "invalid_client", 401)
    refused(
        exchange(code, THIRD_URI, None, HTTP_AUTHORIZATION=basic("third-party", "wrong")),
        "invalid_client",
        401,
    )
    refused(exchange(code, THIRD_URI, "third-party", client_secret="wrong"), "invalid_client", 401)
    # Basic with a wrong secret is not rescued by the right one in the body (RFC 6749 §2.3).
    refused(
        exchange(
            code,
            THIRD_URI,
            "third-party",
            client_secret=SECRET,
            HTTP_AUTHORIZATION=basic("third-party", "bad"),
        ),
        "invalid_client",
        401,
    )
    tokens = ok(exchange(code, THIRD_URI, None, HTTP_AUTHORIZATION=basic("third-party", SECRET)))
    refused(refresh("third-party", tokens["refresh_token"], client_secret="wrong"), "invalid_client", 401)
    ok(refresh(None, tokens["refresh_token"], HTTP_AUTHORIZATION=basic("third-party", SECRET)))


@pytest.mark.usefixtures("third_party")
def test_a_confidential_client_may_authenticate_in_the_body(alice: Any) -> None:
    code = _third_party_code()
    tokens = ok(exchange(code, THIRD_URI, "third-party", client_secret=SECRET))
    ok(refresh("third-party", tokens["refresh_token"], client_secret=SECRET))


@pytest.mark.usefixtures("third_party")
def test_a_confidential_client_cannot_pose_as_public_with_an_empty_basic_password(alice: Any) -> None:
    code = _third_party_code()
    refused(
        exchange(code, THIRD_URI, "third-party", HTTP_AUTHORIZATION=basic("third-party", "")),
        "invalid_client",
        401,
    )


@pytest.mark.parametrize("grant_type", ["openid", "implicit", "password", "client_credentials", "bogus", ""])
def test_unsupported_grant_types_are_errors_not_crashes(
    default_clients: None, alice: Any, grant_type: str
) -> None:
    # oauthlib's code grant also answers grant_type=openid, which DOT's mapping then asserted on.
    code = authorize("cells-client", CLI_URI)
    response = exchange(code, CLI_URI, "cells-client", grant_type=grant_type)
    assert response.status_code in (400, 401), response.content
    assert json.loads(response.content)["error"] in (
        "unsupported_grant_type",
        "unauthorized_client",
        "invalid_request",
    )
    assert not get_access_token_model().objects.exists()


def test_resource_indicators_travel_with_the_grant(default_clients: None, alice: Any) -> None:
    # RFC 8707 §2: only a resource the client's policy lists (tests/test_resource_indicators.py).
    ClientPolicy.objects.filter(application__client_id="cells-client").update(
        allowed_resources="https://api.example.com/"
    )
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CLI_URI,
        "scope": SCOPE,
        "state": STATE,
        "resource": "https://api.example.com/",
    }
    code = code_from(Browser().authorize(params), CLI_URI)["code"]
    assert get_grant_model().objects.get(code=code).resource == ["https://api.example.com/"]
    ok(exchange(code, CLI_URI, "cells-client"))
    assert get_access_token_model().objects.get().resource == ["https://api.example.com/"]
    assert get_refresh_token_model().objects.get().resource == ["https://api.example.com/"]
