"""What a delegated token may do with the bearer API (issue 7, points 1 and 6b).

Every operation of ``/a/`` against every kind of caller token, all obtained through HTTP: a user's
own token, an administrator's token from a Cells client (``pydio``), from a third-party client
without the administrative scope, from a client whose policy grants ``cells_oidc:admin``, a
personal access token, and a personal access token minted by a sign-in since revoked. The victim's
tokens must be untouched unless the caller really may act on others.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from oauth2_provider.models import get_application_model

from cells_oidc.internal import pat
from cells_oidc.models import ClientPolicy, PersonalAccessToken, TokenFamily
from tests.conftest import Browser, basic, code_from, form_post, pkce_pair, query, token_request

pytestmark = pytest.mark.django_db

ADMIN_SCOPE = "cells_oidc:admin"
FRONTEND_CALLBACK = "http://testserver/auth/callback"
SECRET = "client-secret-" + "s" * 30
YEAR = 31536000


# ---- clients, users and tokens, through HTTP ----------------------------------------------------
def make_client(client_id: str, *, allow_admin_scope: bool = False) -> Any:
    """A confidential third-party web application (consent is asked)."""
    model = get_application_model()
    app = model.objects.create(
        client_id=client_id,
        name=f"{client_id} app",
        client_type=model.CLIENT_CONFIDENTIAL,
        client_secret=SECRET,
        hash_client_secret=True,
        authorization_grant_type=model.GRANT_AUTHORIZATION_CODE,
        redirect_uris=callback_of(client_id),
        skip_authorization=False,
        algorithm=model.RS256_ALGORITHM,
    )
    ClientPolicy.objects.create(application=app, allow_admin_scope=allow_admin_scope)
    return app


def callback_of(client_id: str) -> str:
    return f"https://{client_id}.example/callback"


def authorization_params(client_id: str, scope: str) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce_pair()
    redirect_uri = FRONTEND_CALLBACK if client_id == "cells-frontend" else callback_of(client_id)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return params, verifier


def sign_in(client_id: str, scope: str, username: str, browser: Browser | None = None) -> dict[str, Any]:
    """A full authorization code flow (login, consent when asked, code exchange): the token response."""
    browser = browser or Browser()
    params, verifier = authorization_params(client_id, scope)
    code = code_from(browser.authorize(params, username=username), params["redirect_uri"])["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
        "code_verifier": verifier,
    }
    if client_id.startswith("cells-"):
        exchange = token_request({**data, "client_id": client_id})
    else:
        exchange = token_request(data, HTTP_AUTHORIZATION=basic(client_id, SECRET))
    assert exchange.status_code == 200, exchange.content
    tokens = exchange.json()
    tokens["client_id"] = client_id
    tokens["browser"] = browser
    return tokens


def revoke_at_endpoint(tokens: dict[str, Any]) -> None:
    """RFC 7009: the client revokes its refresh token (and with it the sign-in)."""
    client_id = tokens["client_id"]
    if client_id.startswith("cells-"):
        response = form_post(
            "/oidc/oauth2/revoke", {"token": tokens["refresh_token"], "client_id": client_id}
        )
    else:
        response = form_post(
            "/oidc/oauth2/revoke",
            {"token": tokens["refresh_token"]},
            HTTP_AUTHORIZATION=basic(client_id, SECRET),
        )
    assert response.status_code == 200, response.content


def call(method: str, path: str, token: str, body: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if body is not None:
        return getattr(Client(), method)(path, json.dumps(body), content_type="application/json", **headers)
    return getattr(Client(), method)(path, **headers)


def grant_permissions(user: Any, *codenames: str) -> None:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="cells_oidc", codename__in=codenames)
    )


ADMIN_PERMISSIONS = ("add_personalaccesstoken", "change_personalaccesstoken")
FULL = "openid profile email pydio offline"


@pytest.fixture(autouse=True)
def fresh_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def world(default_clients: None, make_user: Any) -> dict[str, Any]:
    """alice: an administrator (both permissions); bob: the victim, signed in with a personal token;
    carol: a user without rights. ``notes``: a third-party client; ``console``: one allowed the
    administrative scope."""
    alice = make_user("alice")
    grant_permissions(alice, *ADMIN_PERMISSIONS)
    bob = make_user("bob")
    make_user("carol")
    make_client("notes")
    make_client("console", allow_admin_scope=True)
    bob_tokens = sign_in("cells-frontend", FULL, "bob")
    return {
        "alice": alice,
        "bob": bob,
        "bob_tokens": bob_tokens,
        "bob_family": TokenFamily.objects.get(user=bob),
        "bob_pat": pat.mint(bob, expires_in=pat.parse_duration("1h"), label="bob's backup"),
    }


KINDS = ["own", "first_party_admin", "third_party_admin", "admin_scope", "pat", "pat_of_revoked_sign_in"]


def caller(kind: str, world: dict[str, Any]) -> str:
    """The bearer token of one kind of caller."""
    if kind == "own":
        return sign_in("cells-frontend", FULL, "carol")["access_token"]
    if kind == "first_party_admin":
        return sign_in("cells-frontend", FULL, "alice")["access_token"]
    if kind == "third_party_admin":
        return sign_in("notes", "openid profile pydio", "alice")["access_token"]
    if kind == "admin_scope":
        return sign_in("console", f"openid profile pydio {ADMIN_SCOPE}", "alice")["access_token"]
    if kind == "pat":
        return pat.mint(world["alice"], expires_in=pat.parse_duration("1h"), scope="profile pydio").secret
    assert kind == "pat_of_revoked_sign_in"
    tokens = sign_in("console", f"openid profile pydio offline {ADMIN_SCOPE}", "alice")
    minted = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 3600})
    assert minted.status_code == 201, minted.content
    secret = minted.json()["token"]
    assert call("get", "/a/user/me", secret).status_code == 200
    revoke_at_endpoint(tokens)
    return secret


# (method, path template, body): {kind: expected status}
OPERATIONS: dict[str, tuple[str, str, Any]] = {
    "me": ("get", "/a/user/me", None),
    "list_tokens": ("get", "/a/tokens", None),
    "delete_victims_grant": ("delete", "/a/tokens/{bob_family}", None),
    "delete_victims_pat_via_tokens": ("delete", "/a/tokens/{bob_pat}", None),
    "list_personal_tokens": ("get", "/a/personal-tokens", None),
    "mint_for_victim": ("post", "/a/personal-tokens", {"user": "bob", "expires_in": YEAR}),
    "mint_own": ("post", "/a/personal-tokens", {"expires_in": 3600}),
    "revoke_victims_pat": ("delete", "/a/personal-tokens/{bob_pat}", None),
}
EXPECTED: dict[str, list[int]] = {  # in the order of KINDS
    "me": [200, 200, 200, 200, 200, 401],
    "list_tokens": [200, 200, 200, 200, 200, 401],
    # /a/tokens/{id} is the caller's own only, whatever their rights.
    "delete_victims_grant": [404, 404, 404, 404, 404, 401],
    "delete_victims_pat_via_tokens": [404, 404, 404, 404, 404, 401],
    "list_personal_tokens": [200, 200, 200, 200, 200, 401],
    "mint_for_victim": [403, 403, 403, 201, 403, 401],
    # CELLS_OIDC_PAT_SELF_SERVICE is off: only an administrator *with the admin scope* mints.
    "mint_own": [403, 403, 403, 201, 403, 401],
    "revoke_victims_pat": [404, 404, 404, 204, 404, 401],
}


def victim_untouched(world: dict[str, Any], *, pats: int = 1) -> None:
    bob_tokens = world["bob_tokens"]
    assert call("get", "/a/user/me", bob_tokens["access_token"]).json()["login"] == "bob"
    assert call("get", "/a/user/me", world["bob_pat"].secret).json()["login"] == "bob"
    assert TokenFamily.objects.get(pk=world["bob_family"].pk).revoked is None
    assert PersonalAccessToken.objects.filter(user=world["bob"]).count() == pats


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("kind", KINDS)
def test_each_operation_for_each_kind_of_token(world: dict[str, Any], kind: str, operation: str) -> None:
    token = caller(kind, world)
    method, template, body = OPERATIONS[operation]
    path = template.format(bob_family=world["bob_family"].pk, bob_pat=world["bob_pat"].token.pk)
    response = call(method, path, token, body)
    expected = EXPECTED[operation][KINDS.index(kind)]
    assert response.status_code == expected, (kind, operation, response.content)
    assert response.status_code == 204 or response["Content-Type"].startswith("application/json")
    if expected == 403:
        assert response.json()["detail"]  # says why, in words
    if expected == 200 and method == "get":
        text = response.content.decode()
        assert str(world["bob_family"].pk) not in text and "bob's backup" not in text
        if operation == "me":
            assert response.json()["login"] == ("carol" if kind == "own" else "alice")
    if kind == "admin_scope" and operation == "revoke_victims_pat":
        assert call("get", "/a/user/me", world["bob_pat"].secret).status_code == 401
        return
    if kind == "admin_scope" and operation == "mint_for_victim":
        minted = response.json()
        assert minted["owner"] == "bob" and ADMIN_SCOPE not in minted["scope"].split()
        assert call("get", "/a/user/me", minted["token"]).json()["login"] == "bob"
        victim_untouched(world, pats=2)
        return
    victim_untouched(world)


@pytest.mark.parametrize("kind", KINDS)
def test_self_service_lets_every_access_token_mint_its_own(
    world: dict[str, Any], settings: Any, kind: str
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    token = caller(kind, world)
    response = call("post", "/a/personal-tokens", token, {"expires_in": 3600})
    expected = {"pat": 403, "pat_of_revoked_sign_in": 401}.get(kind, 201)
    assert response.status_code == expected, response.content
    if expected == 201:
        assert response.json()["owner"] == ("carol" if kind == "own" else "alice")
        assert response.json()["sign_in"]  # the sign-in it dies with
    victim_untouched(world)


def test_own_tokens_are_listed_and_revoked_whatever_self_service(
    world: dict[str, Any], settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = False
    carol = world["bob"].__class__.objects.get(username="carol")
    mine = pat.mint(carol, expires_in=pat.parse_duration("1h"))
    other = pat.mint(carol, expires_in=pat.parse_duration("1h"))
    token = sign_in("cells-frontend", FULL, "carol")["access_token"]
    assert [t["id"] for t in call("get", "/a/personal-tokens", token).json()] == [
        other.token.pk,
        mine.token.pk,
    ]
    assert call("delete", f"/a/personal-tokens/{mine.token.pk}", token).status_code == 204
    assert call("delete", f"/a/tokens/{other.token.pk}", token).status_code == 204
    assert call("get", "/a/personal-tokens", token).json() == []
    # A personal token revokes its owner's tokens too (itself included).
    third = pat.mint(carol, expires_in=pat.parse_duration("1h"))
    assert call("delete", f"/a/personal-tokens/{third.token.pk}", third.secret).status_code == 204
    assert call("get", "/a/user/me", third.secret).status_code == 401
    victim_untouched(world)


# ---- the attack of issue 7 ------------------------------------------------------------------------
def test_a_third_party_client_approved_by_an_admin_cannot_impersonate(world: dict[str, Any]) -> None:
    tokens = sign_in("notes", "openid pydio", "alice")
    attack = call("post", "/a/personal-tokens", tokens["access_token"], {"user": "bob", "expires_in": YEAR})
    assert attack.status_code == 403
    assert ADMIN_SCOPE in attack.json()["detail"]
    # Unknown logins get the same answer: the refusal says nothing about who exists.
    probe = call("post", "/a/personal-tokens", tokens["access_token"], {"user": "nobody", "expires_in": 60})
    assert probe.status_code == 403
    assert (
        call("delete", f"/a/personal-tokens/{world['bob_pat'].token.pk}", tokens["access_token"]).status_code
        == 404
    )
    victim_untouched(world)
    # Nor can it ask for the administrative scope: its policy does not allow it (RFC 6749 §4.1.2.1).
    params, _verifier = authorization_params("notes", f"openid pydio {ADMIN_SCOPE}")
    response = tokens["browser"].authorize(params, username="alice")
    assert response.status_code == 302
    assert response["Location"].startswith(callback_of("notes") + "?")
    assert query(response["Location"])["error"] == "invalid_scope"


def test_the_cells_clients_never_get_the_admin_scope(world: dict[str, Any]) -> None:
    # Even listed in allowed_scopes: without allow_admin_scope the scope is refused.
    policy = ClientPolicy.objects.get(application__client_id="cells-frontend")
    policy.allowed_scopes += f" {ADMIN_SCOPE}"
    policy.save()
    params, _verifier = authorization_params("cells-frontend", f"{FULL} {ADMIN_SCOPE}")
    response = Browser().authorize(params, username="alice")
    assert response.status_code == 302 and query(response["Location"])["error"] == "invalid_scope"
    # The device flow (RFC 8628 §3.1) asks the same question.
    ClientPolicy.objects.filter(application__client_id="cells-client").update(
        allowed_scopes=f"openid profile pydio offline {ADMIN_SCOPE}"
    )
    device = form_post(
        "/oidc/oauth2/device/auth", {"client_id": "cells-client", "scope": f"openid {ADMIN_SCOPE}"}
    )
    assert device.status_code == 400 and device.json()["error"] == "invalid_scope"
    ClientPolicy.objects.filter(application__client_id="cells-client").update(allow_admin_scope=True)
    allowed = form_post(
        "/oidc/oauth2/device/auth", {"client_id": "cells-client", "scope": f"openid {ADMIN_SCOPE}"}
    )
    assert allowed.status_code == 200, allowed.content


def test_the_consent_page_names_the_admin_scope_in_words(world: dict[str, Any]) -> None:
    browser = Browser()
    params, _verifier = authorization_params("console", f"openid pydio {ADMIN_SCOPE}")
    url = "/oidc/oauth2/auth?" + urlencode(params)
    login = browser.http.get(url)
    assert login.status_code == 302
    signed_in = browser.sign_in(query(login["Location"])["next"], username="alice")
    page = browser.http.get(signed_in["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Manage other people&#x27;s tokens with your administrator rights" in html


def test_turning_the_policy_off_ends_the_admin_powers_of_issued_tokens(world: dict[str, Any]) -> None:
    tokens = sign_in("console", f"openid pydio offline {ADMIN_SCOPE}", "alice")
    ClientPolicy.objects.filter(application__client_id="console").update(allow_admin_scope=False)
    # A refresh repeats the grant's scope (RFC 6749 §6); the API asks the policy again.
    refreshed = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=basic("console", SECRET),
    )
    assert refreshed.status_code == 200, refreshed.content
    for token in (tokens["access_token"], refreshed.json()["access_token"]):
        response = call("post", "/a/personal-tokens", token, {"user": "bob", "expires_in": 60})
        assert response.status_code in (401, 403)  # the old one was rotated out, the new one refused
    assert (
        call(
            "delete", f"/a/personal-tokens/{world['bob_pat'].token.pk}", refreshed.json()["access_token"]
        ).status_code
        == 404
    )
    victim_untouched(world)


def test_the_admin_scope_without_the_permission_is_nothing(world: dict[str, Any]) -> None:
    world["alice"].user_permissions.clear()
    token = sign_in("console", f"openid pydio {ADMIN_SCOPE}", "alice")["access_token"]
    assert call("post", "/a/personal-tokens", token, {"user": "bob", "expires_in": 60}).status_code == 403
    assert call("post", "/a/personal-tokens", token, {"expires_in": 60}).status_code == 403
    assert call("delete", f"/a/personal-tokens/{world['bob_pat'].token.pk}", token).status_code == 404
    victim_untouched(world)


def test_a_personal_token_never_carries_the_admin_scope(world: dict[str, Any]) -> None:
    token = sign_in("console", f"openid profile pydio {ADMIN_SCOPE}", "alice")["access_token"]
    asked = call("post", "/a/personal-tokens", token, {"expires_in": 60, "scope": f"pydio {ADMIN_SCOPE}"})
    assert asked.status_code == 400 and ADMIN_SCOPE in asked.json()["non_field_errors"][0]
    default = call("post", "/a/personal-tokens", token, {"expires_in": 60})
    assert default.status_code == 201 and ADMIN_SCOPE not in default.json()["scope"].split()
    secret = default.json()["token"]
    assert ADMIN_SCOPE not in call("get", "/a/user/me", secret).json()["token"]["scope"].split()
    # With it, a personal token acts on nobody else's tokens.
    assert call("delete", f"/a/personal-tokens/{world['bob_pat'].token.pk}", secret).status_code == 404
    victim_untouched(world)


# ---- a personal token dies with the sign-in that minted it -------------------------------------------
def mint_through(tokens: dict[str, Any]) -> dict[str, Any]:
    response = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": YEAR, "label": "ci"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert call("get", "/a/user/me", body["token"]).status_code == 200
    return body


def assert_dead(body: dict[str, Any], other_token: str, browser: Browser) -> None:
    secret = body["token"]
    me = call("get", "/a/user/me", secret)
    assert me.status_code == 401 and 'error="invalid_token"' in me["WWW-Authenticate"]
    assert body["id"] not in [t["id"] for t in call("get", "/a/personal-tokens", other_token).json()]
    rs = get_application_model().objects.create(
        client_id=f"rs-{secrets.token_hex(4)}",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=SECRET,
        hash_client_secret=True,
    )
    introspection = form_post(
        "/oidc/oauth2/introspect", {"token": secret}, HTTP_AUTHORIZATION=basic(rs.client_id, SECRET)
    )
    assert introspection.status_code == 200 and introspection.json() == {"active": False}
    page = browser.http.get("/oidc/account/")
    entries = [e for e in page.context["personal_tokens"] if e["token"].pk == body["id"]]
    assert [e["status"] for e in entries] == ["revoked"] and entries[0]["ended"] is not None


@pytest.mark.parametrize("how", ["oauth2_revoke", "account_page", "api", "sign_out"])
def test_a_personal_token_minted_through_a_sign_in_dies_with_it(
    world: dict[str, Any], settings: Any, how: str
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    browser = Browser()
    tokens = sign_in("cells-frontend", FULL, "carol", browser)
    body = mint_through(tokens)
    family = TokenFamily.objects.get(pk=body["sign_in"])
    assert (
        family.user.username == "carol"
        and PersonalAccessToken.objects.get(pk=body["id"]).token_family == family
    )
    other = sign_in("cells-frontend", FULL, "carol", browser)["access_token"]  # another sign-in, still live
    if how == "oauth2_revoke":
        revoke_at_endpoint(tokens)
    elif how == "account_page":
        response = browser.http.post(f"/oidc/account/apps/{family.pk}/revoke")
        assert response["Location"].endswith("done=revoked")
    elif how == "api":
        assert call("delete", f"/a/tokens/{family.pk}", other).status_code == 204
    else:  # ending the browser session revokes the sign-ins made from it (and so this token)
        other = pat.mint(family.user, expires_in=pat.parse_duration("1h")).secret
        from cells_oidc.models import UserSession

        row = UserSession.objects.filter(user=family.user).first()
        assert browser.http.post(f"/oidc/account/sessions/{row.pk}/end").status_code == 303
        browser = Browser()
        browser.http.force_login(family.user)
    assert_dead(body, other, browser)
    victim_untouched(world)


def test_a_sign_in_without_refresh_token_also_mints_and_revokes(world: dict[str, Any], settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    browser = Browser()
    tokens = sign_in("cells-frontend", "openid profile pydio", "carol", browser)
    assert "refresh_token" not in tokens
    body = mint_through(tokens)
    family = TokenFamily.objects.get(pk=body["sign_in"])
    assert family.access_token is not None
    other = pat.mint(family.user, expires_in=pat.parse_duration("1h")).secret
    assert browser.http.post(f"/oidc/account/apps/{family.pk}/revoke")["Location"].endswith("done=revoked")
    assert_dead(body, other, browser)


def test_an_access_token_whose_sign_in_is_unknown_mints_nothing(world: dict[str, Any], settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    tokens = sign_in("cells-frontend", FULL, "carol")
    TokenFamily.objects.filter(user__username="carol").delete()  # e.g. issued before cells-oidc
    response = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 60})
    assert response.status_code == 403 and "sign-in" in response.json()["detail"]
    assert not PersonalAccessToken.objects.filter(user__username="carol").exists()


def test_personal_tokens_minted_elsewhere_belong_to_no_sign_in(world: dict[str, Any], settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    carol = world["bob"].__class__.objects.get(username="carol")
    browser = Browser()
    browser.http.force_login(carol)
    form = browser.http.get("/oidc/account/").context["mint_form"]
    minted = browser.http.post(
        "/oidc/account/tokens/new",
        {
            "label": "laptop",
            "scope": ["pydio"],
            "mode": "fixed",
            "expires_in": "1d",
            "nonce": form.initial["nonce"],
        },
    )
    assert minted.status_code == 200, minted.content[:300]
    assert PersonalAccessToken.objects.get(user=carol).token_family is None
    assert world["bob_pat"].token.token_family is None


# ---- point 6b: one rule for "what a user holds" --------------------------------------------------------
def held_on_account_page(browser: Browser) -> set[str]:
    return {str(e["id"]) for e in browser.http.get("/oidc/account/").context["applications"]}


def held_in_api(token: str) -> set[str]:
    return {g["id"] for g in call("get", "/a/tokens", token).json()["grants"]}


def test_account_page_and_api_list_and_revoke_the_same_sign_ins(
    world: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    browser = Browser()
    with_refresh = sign_in("cells-frontend", FULL, "carol", browser)
    without_refresh = sign_in("cells-frontend", "openid profile pydio", "carol", browser)
    third_party = sign_in("notes", "openid pydio offline", "carol", browser)
    assert "refresh_token" not in without_refresh
    families = {str(f.pk) for f in TokenFamily.objects.filter(user__username="carol")}
    assert len(families) == 3
    api_token = with_refresh["access_token"]
    assert held_on_account_page(browser) == held_in_api(api_token) == families

    # Revoked through the API: gone from both.
    family_without = str(TokenFamily.objects.get(user__username="carol", access_token__isnull=False).pk)
    assert call("delete", f"/a/tokens/{family_without}", api_token).status_code == 204
    assert held_on_account_page(browser) == held_in_api(api_token) == families - {family_without}
    assert call("delete", f"/a/tokens/{family_without}", api_token).status_code == 404  # no longer held

    # Revoked on the account page: gone from both.
    third = str(TokenFamily.objects.get(user__username="carol", application__client_id="notes").pk)
    # The deny-list is written once the revocation commits (cells_oidc.internal.revocation).
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.http.post(f"/oidc/account/apps/{third}/revoke")["Location"].endswith("done=revoked")
    remaining = families - {family_without, third}
    assert held_on_account_page(browser) == held_in_api(api_token) == remaining
    assert browser.http.post(f"/oidc/account/apps/{third}/revoke")["Location"].endswith("done=missing")
    assert call("get", "/a/tokens", third_party["access_token"]).status_code == 401

    # Nobody else's sign-ins appear, nor can be revoked, on either side.
    bob_family = str(world["bob_family"].pk)
    assert bob_family not in held_on_account_page(browser)
    assert browser.http.post(f"/oidc/account/apps/{bob_family}/revoke")["Location"].endswith("done=missing")
    victim_untouched(world)


def test_the_openapi_document_states_each_operations_scope() -> None:
    document = json.loads(Client().get("/a/openapi.json").content)
    operations = {
        (path, method): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert len(operations) == 6
    for (path, method), operation in operations.items():
        needed = operation["x-scopes"]["required"]
        assert needed == (["profile"] if path == "/a/user/me" else ["pydio"]), (path, method)
        assert f"`{needed[0]}`" in operation["description"]
    for key, permission in (
        (("/a/personal-tokens", "post"), "cells_oidc.add_personalaccesstoken"),
        (("/a/personal-tokens/{token_id}", "delete"), "cells_oidc.change_personalaccesstoken"),
    ):
        operation = operations[key]
        assert ADMIN_SCOPE in operation["description"] and permission in operation["description"]
        assert operation["x-scopes"]["to act on other users"] == {
            "scopes": [ADMIN_SCOPE],
            "permission": permission,
        }
    assert "own" in operations[("/a/tokens/{token_id}", "delete")]["description"]


# ---- where an operator turns the administrative scope on ---------------------------------------------
def test_the_command_and_the_admin_show_and_set_allow_admin_scope(
    world: dict[str, Any], make_user: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    def show() -> str:
        out = StringIO()
        call_command("cells_oidc_client", "show", "tool", stdout=out)
        return out.getvalue()

    call_command(
        "cells_oidc_client", "set", "tool", "--redirect-uri", "https://tool.example/cb", stdout=StringIO()
    )
    assert ClientPolicy.objects.get(application__client_id="tool").allow_admin_scope is False
    assert "admin scope allowed" in show() and "allowed resources" in show()
    call_command("cells_oidc_client", "set", "tool", "--allow-admin-scope", stdout=StringIO())
    assert ClientPolicy.objects.get(application__client_id="tool").allow_admin_scope is True
    call_command("cells_oidc_client", "set", "tool", "--name", "Tool", stdout=StringIO())  # untouched
    assert ClientPolicy.objects.get(application__client_id="tool").allow_admin_scope is True
    call_command("cells_oidc_client", "set", "tool", "--no-allow-admin-scope", stdout=StringIO())
    assert ClientPolicy.objects.get(application__client_id="tool").allow_admin_scope is False

    make_user("root", is_staff=True, is_superuser=True)
    admin = Client()
    admin.login(username="root", password="correct horse battery staple")
    pk = get_application_model().objects.get(client_id="console").pk
    html = admin.get(f"/admin/cells_oidc/client/{pk}/change/").content.decode()
    for field in ("allow_admin_scope", "allowed_resources"):
        assert f'name="cells_policy-0-{field}"' in html, field
    assert "may ask for administrative powers" in html.lower()
