"""The bearer API under /a/ with real tokens: access tokens from a browser sign-in, personal tokens,
and its OpenAPI document."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from cells_oidc.internal import pat
from cells_oidc.models import ClientPolicy, PersonalAccessToken, TokenFamily
from tests.kit import Browser, sign_in, token_request

pytestmark = pytest.mark.django_db

FULL_SCOPE = "openid profile email pydio offline"


#: The cells-frontend sign-in (authorization code + PKCE), returning the token response.
frontend_sign_in = partial(sign_in, client_id="cells-frontend", scope=FULL_SCOPE, nonce="n0nce-of-the-page")


def call(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    client = Client()
    if body is not None:
        return getattr(client, method)(path, json.dumps(body), content_type="application/json", **headers)
    return getattr(client, method)(path, **headers)


@pytest.fixture
def tokens(default_clients: None, alice: Any, browser: Browser) -> dict[str, Any]:
    return frontend_sign_in(browser)


# ---- /a/user/me --------------------------------------------------------------------------------
def test_me_with_an_access_token(tokens: dict[str, Any], alice: Any) -> None:
    alice.groups.add(Group.objects.create(name="editors"), Group.objects.create(name="admins"))
    response = call("get", "/a/user/me", tokens["access_token"])
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["sub"] == str(alice.pk)
    assert body["login"] == "alice"
    assert body["name"] == "Alice Liddell"
    assert body["email"] == "alice@example.com"
    assert body["groups"] == ["admins", "editors"]
    assert body["token"]["kind"] == "jwt"
    assert body["token"]["client_id"] == "cells-frontend"
    assert set(body["token"]["scope"].split()) == set(FULL_SCOPE.split())
    # Exactly what the documented serializer (the OpenAPI schema) says, field for field.
    from cells_oidc.internal.api_serializers import UserSerializer

    assert body == UserSerializer(body).data


def test_me_without_email_scope_does_not_reveal_the_email(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = frontend_sign_in(browser, scope="openid profile")
    body = call("get", "/a/user/me", tokens["access_token"]).json()
    assert body["login"] == "alice" and body["email"] is None


def test_me_refuses_missing_bad_and_wrong_tokens(tokens: dict[str, Any]) -> None:
    anonymous = call("get", "/a/user/me")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer ")
    assert "error=" not in anonymous["WWW-Authenticate"]  # RFC 6750 §3.1: no error without a token
    for token in (
        "garbage",
        tokens["id_token"],
        tokens["refresh_token"],
        tokens["access_token"][:-4] + "AAAA",
    ):
        response = call("get", "/a/user/me", token)
        assert response.status_code == 401, token
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
    # A session cookie is not a credential of this API.
    client = Client()
    client.force_login(
        PersonalAccessToken._meta.get_field("user").related_model.objects.get(username="alice")
    )
    assert client.get("/a/user/me").status_code == 401


def test_scopes_are_enforced(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = frontend_sign_in(browser, scope="openid email")
    for method, path in (("get", "/a/user/me"), ("get", "/a/tokens"), ("get", "/a/personal-tokens")):
        response = call(method, path, tokens["access_token"])
        assert response.status_code == 403, path
        assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


# ---- /a/tokens -----------------------------------------------------------------------------------
def test_tokens_lists_grants_and_personal_tokens_without_secrets(
    tokens: dict[str, Any], alice: Any, browser: Browser
) -> None:
    minted = pat.mint(alice, expires_in=pat.parse_duration("1h"), label="laptop")
    response = call("get", "/a/tokens", tokens["access_token"])
    assert response.status_code == 200, response.content
    text = response.content.decode()
    for secret in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"], minted.secret):
        assert secret not in text
    body = response.json()
    family = TokenFamily.objects.get(user=alice)
    assert [g["id"] for g in body["grants"]] == [str(family.pk)]
    grant = body["grants"][0]
    assert grant["client_id"] == "cells-frontend" and grant["kind"] == "grant"
    assert set(grant["scope"].split()) == set(FULL_SCOPE.split())
    assert grant["last_used"] and grant["signed_in"]
    assert [t["id"] for t in body["personal_tokens"]] == [minted.token.pk]
    personal = body["personal_tokens"][0]
    assert personal["label"] == "laptop" and personal["starts_with"] == minted.secret[:9]
    assert personal["status"] == "active" and personal["owner"] == "alice"

    # A refresh moves "last used" and keeps one grant (rotation stays in the family).
    refreshed = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-frontend",
        }
    ).json()
    again = call("get", "/a/tokens", refreshed["access_token"]).json()
    assert [g["id"] for g in again["grants"]] == [str(family.pk)]
    assert again["grants"][0]["last_used"] > grant["last_used"]


@pytest.mark.django_db(transaction=True)  # the deny-list is written when the revocation commits
def test_delete_a_grant_ends_that_sign_in(tokens: dict[str, Any], alice: Any) -> None:
    family = TokenFamily.objects.get(user=alice)
    response = call("delete", f"/a/tokens/{family.pk}", tokens["access_token"])
    assert response.status_code == 204, response.content
    refused = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-frontend",
        }
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # The access token of that sign-in is refused too (revocation wins, see docs/resource-server.md).
    assert call("get", "/a/user/me", tokens["access_token"]).status_code == 401


def test_delete_a_personal_token_through_tokens(tokens: dict[str, Any], alice: Any) -> None:
    minted = pat.mint(alice, expires_in=pat.parse_duration("1h"))
    assert call("get", "/a/user/me", minted.secret).status_code == 200
    assert call("delete", f"/a/tokens/{minted.token.pk}", tokens["access_token"]).status_code == 204
    assert call("get", "/a/user/me", minted.secret).status_code == 401
    assert call("get", "/a/tokens", tokens["access_token"]).json()["personal_tokens"] == []


def test_someone_elses_grant_or_token_is_not_found(
    tokens: dict[str, Any], alice: Any, make_user: Any
) -> None:
    bob = make_user("bob")
    bobs_browser = Browser()
    bobs_tokens = frontend_sign_in(bobs_browser, username="bob")
    bobs_family = TokenFamily.objects.get(user=bob)
    bobs_pat = pat.mint(bob, expires_in=pat.parse_duration("1h"))
    for token_id in (
        str(bobs_family.pk),
        str(bobs_pat.token.pk),
        "not-an-id",
        "99999999999999999999999999",
        "00000000-0000-0000-0000-000000000000",
        "%00",
    ):
        response = call("delete", f"/a/tokens/{token_id}", tokens["access_token"])
        assert response.status_code == 404, token_id
    assert (
        call("delete", f"/a/personal-tokens/{bobs_pat.token.pk}", tokens["access_token"]).status_code == 404
    )
    # Bob's credentials still work.
    assert call("get", "/a/user/me", bobs_tokens["access_token"]).status_code == 200
    assert call("get", "/a/user/me", bobs_pat.secret).status_code == 200


# ---- /a/personal-tokens ----------------------------------------------------------------------------
def test_self_service_is_off_by_default(tokens: dict[str, Any]) -> None:
    response = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 3600})
    assert response.status_code == 403
    assert not PersonalAccessToken.objects.exists()


@pytest.mark.parametrize("label", ["\ud800", "sync \udfff script"])
def test_a_label_holding_half_a_surrogate_pair_is_a_400(
    tokens: dict[str, Any], settings: Any, label: str
) -> None:
    # Valid JSON ("\\ud800"), not Unicode text: it reached the database and failed there (a 500).
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    response = call(
        "post", "/a/personal-tokens", tokens["access_token"], {"label": label, "expires_in": 3600}
    )
    assert response.status_code == 400, response.content
    assert "Unicode" in response.json()["detail"]
    assert not PersonalAccessToken.objects.exists()


def test_personal_token_lifecycle_through_the_api(tokens: dict[str, Any], alice: Any, settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    created = call(
        "post",
        "/a/personal-tokens",
        tokens["access_token"],
        {
            "label": "sync script",
            "auto_refresh_seconds": 600,
            "max_lifetime": 86400,
            "scope": "profile pydio",
        },
    )
    assert created.status_code == 201, created.content
    assert created["Cache-Control"] == "no-store"
    body = created.json()
    secret = body["token"]
    assert pat.is_well_formed(secret)
    assert body["auto_refresh_seconds"] == 600 and body["scope"] == "profile pydio"
    stored = PersonalAccessToken.objects.get(pk=body["id"])
    assert stored.created_by == alice and stored.user == alice
    assert secret not in json.dumps(list(PersonalAccessToken.objects.values()), default=str)

    me = call("get", "/a/user/me", secret)
    assert me.status_code == 200 and me.json()["token"]["kind"] == "pat"
    listing = call("get", "/a/personal-tokens", tokens["access_token"])
    assert [t["id"] for t in listing.json()] == [body["id"]]
    assert secret not in listing.content.decode()

    assert call("delete", f"/a/personal-tokens/{body['id']}", tokens["access_token"]).status_code == 204
    assert call("get", "/a/user/me", secret).status_code == 401
    assert call("get", "/a/personal-tokens", tokens["access_token"]).json() == []
    # Revoking again is harmless.
    assert call("delete", f"/a/personal-tokens/{body['id']}", tokens["access_token"]).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"expires_in": 3600, "auto_refresh_seconds": 600}, "non_field_errors"),
        ({"expires_in": 3600, "max_lifetime": 7200}, "max_lifetime"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": "soon"}, "expires_in"),
        ({"expires_in": 10**12}, "expires_in"),
        ({"expires_in": 400 * 86400}, "non_field_errors"),
        ({"auto_refresh_seconds": 30}, "non_field_errors"),
        ({"expires_in": 3600, "scope": "nonsense"}, "non_field_errors"),
        ({"expires_in": 3600, "label": "x" * 101}, "label"),
    ],
)
def test_bad_mint_requests_are_400(
    tokens: dict[str, Any], settings: Any, body: dict[str, Any], field: str
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    response = call("post", "/a/personal-tokens", tokens["access_token"], body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not PersonalAccessToken.objects.exists()


def test_a_token_never_mints_a_more_powerful_one(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    tokens = frontend_sign_in(browser, scope="openid pydio")
    beyond = call(
        "post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 60, "scope": "profile pydio"}
    )
    assert beyond.status_code == 400 and "profile" in beyond.json()["non_field_errors"][0]
    # Without a scope: the site's default scopes, cut down to those of the caller's token.
    default = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 60})
    assert default.status_code == 201 and default.json()["scope"] == "pydio"


def test_a_personal_token_cannot_mint_personal_tokens(alice: Any, settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    minted = pat.mint(alice, expires_in=pat.parse_duration("1h"))
    response = call("post", "/a/personal-tokens", minted.secret, {"expires_in": 60})
    assert response.status_code == 403
    assert PersonalAccessToken.objects.count() == 1


def test_admins_mint_for_other_users(default_clients: None, make_user: Any, browser: Browser) -> None:
    admin = make_user("alice")
    admin.user_permissions.add(Permission.objects.get(codename="add_personalaccesstoken"))
    bob = make_user("bob")
    # Without the administrative scope an administrator is any user (tests/test_api_authz.py).
    refused = call(
        "post",
        "/a/personal-tokens",
        frontend_sign_in(Browser())["access_token"],
        {"expires_in": 60, "user": "bob"},
    )
    assert refused.status_code == 403
    policy = ClientPolicy.objects.get(application__client_id="cells-frontend")
    policy.allow_admin_scope = True
    policy.allowed_scopes += " cells_oidc:admin"
    policy.save()
    tokens = frontend_sign_in(browser, scope=FULL_SCOPE + " cells_oidc:admin")
    created = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 3600, "user": "bob"})
    assert created.status_code == 201, created.content
    assert created.json()["owner"] == "bob"
    assert call("get", "/a/user/me", created.json()["token"]).json()["login"] == "bob"
    stored = PersonalAccessToken.objects.get()
    assert stored.user == bob and stored.created_by == admin
    unknown = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 60, "user": "nobody"})
    assert unknown.status_code == 400


def test_users_cannot_mint_for_others_even_with_self_service(
    tokens: dict[str, Any], make_user: Any, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    make_user("bob")
    response = call("post", "/a/personal-tokens", tokens["access_token"], {"expires_in": 60, "user": "bob"})
    assert response.status_code == 403
    assert not PersonalAccessToken.objects.exists()


def test_api_is_json_only(tokens: dict[str, Any], settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    response = Client().post(
        "/a/personal-tokens", {"expires_in": "60"}, HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert response.status_code == 415
    assert not PersonalAccessToken.objects.exists()


# ---- the OpenAPI document ------------------------------------------------------------------------
def test_openapi_document_lists_the_api() -> None:
    response = Client().get("/a/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/a/user/me",
        "/a/tokens",
        "/a/tokens/{token_id}",
        "/a/personal-tokens",
        "/a/personal-tokens/{token_id}",
    }
    assert set(document["paths"]["/a/personal-tokens"]) == {"get", "post"}
    assert set(document["paths"]["/a/tokens/{token_id}"]) == {"delete"}
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    me = document["paths"]["/a/user/me"]["get"]
    assert me["security"] == [{"bearer": []}]
    assert "profile" in me["description"]
    created = document["paths"]["/a/personal-tokens"]["post"]["responses"]["201"]
    schema_name = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "token" in document["components"]["schemas"][schema_name]["properties"]


def test_docs_page_is_local_and_renders_the_document() -> None:
    response = Client().get("/a/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-schema-url="/a/openapi.json"' in html
    assert '<script type="module" src="/static/project/api-docs.js"></script>' in html
    assert "https://" not in html and "//cdn" not in html
    assert "script-src 'self'" in response["Content-Security-Policy"]
