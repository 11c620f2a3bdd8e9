"""Dynamic client registration (RFC 7591) and management (RFC 7592), off by default.

A registered client is a third-party client: its user is asked for consent, PKCE is required,
it may not ask for the administrative scope, and its redirect URIs pass the admin's rules.
"""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client as HttpClient

from cells_oidc.internal import registration
from cells_oidc.models import Client, ClientPolicy, ClientRegistration, InitialAccessToken, checksum
from tests.conftest import Browser, basic, code_from, pkce_pair, query, token_request
from tests.kit import clear_of_window_edges

pytestmark = pytest.mark.django_db

REGISTER = "/oidc/oauth2/register"
DISCOVERY = "/oidc/.well-known/openid-configuration"
REDIRECT = "https://app.example.org/callback"
METADATA = {
    "client_name": "Photo printer",
    "redirect_uris": [REDIRECT],
    "grant_types": ["authorization_code", "refresh_token"],
    "scope": "openid profile offline",
}


def post(body: Any, token: str | None = None, *, raw: str | None = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return HttpClient().post(REGISTER, data, content_type="application/json", **headers)


def answer(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    return json.loads(response.content) if response.content else {}


@pytest.fixture
def open_registration(settings: Any) -> None:
    settings.CELLS_OIDC_REGISTRATION = "open"


def test_registration_is_off_by_default_and_not_advertised() -> None:
    assert post(METADATA).status_code == 404
    assert "registration_endpoint" not in json.loads(HttpClient().get(DISCOVERY).content)


def test_open_registration_makes_a_third_party_client(open_registration: None) -> None:
    assert json.loads(HttpClient().get(DISCOVERY).content)["registration_endpoint"] == (
        "http://testserver/oidc/oauth2/register"
    )
    body = answer(post(METADATA), 201)
    client = Client.objects.get(client_id=body["client_id"])
    assert body["client_secret"] and body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 §2 default
    assert body["redirect_uris"] == [REDIRECT]
    assert body["registration_client_uri"] == f"http://testserver{REGISTER}/{client.client_id}"
    assert body["registration_access_token"].startswith("creg_")
    # Only hashes are stored: the registration access token's checksum, the secret hashed by DOT.
    stored = ClientRegistration.objects.get(application=client)
    assert stored.access_token_checksum == checksum(body["registration_access_token"])
    assert body["client_secret"] not in client.client_secret
    policy = ClientPolicy.objects.get(application=client)
    assert not client.skip_authorization and policy.require_pkce and not policy.allow_admin_scope
    assert policy.allowed_resources == "" and set(policy.allowed_scopes.split()) == {
        "openid",
        "profile",
        "offline",
    }
    # The client's secret works at the token endpoint.
    wrong = token_request(
        {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT},
        HTTP_AUTHORIZATION=basic(client.client_id, body["client_secret"]),
    )
    assert json.loads(wrong.content)["error"] == "invalid_grant"  # authenticated, the code is bad


BAD_REDIRECTS = {
    "http-not-loopback": "http://app.example.org/callback",
    "fragment": "https://app.example.org/cb#frag",
    "relative": "/callback",
    "javascript": "javascript:alert(1)",
    "whitespace": "https://app.example.org/a b",
}


@pytest.mark.parametrize("uri", BAD_REDIRECTS.values(), ids=BAD_REDIRECTS.keys())
def test_a_bad_redirect_uri_is_refused_as_in_the_admin(open_registration: None, uri: str) -> None:
    body = answer(post({**METADATA, "redirect_uris": [uri]}), 400)
    assert body["error"] == "invalid_redirect_uri"
    assert body["error_description"]
    assert not Client.objects.exists()


REFUSED_METADATA = {
    "no-redirect-uri": {"redirect_uris": []},
    "admin-scope": {"scope": "openid cells_oidc:admin"},
    "unknown-scope": {"scope": "openid files:delete"},
    "implicit": {"response_types": ["token"]},
    "client-credentials": {"grant_types": ["client_credentials"]},
    "client-secret-jwt": {"token_endpoint_auth_method": "client_secret_jwt"},
    "private-key-jwt-off": {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
    "jwks-uri": {"jwks_uri": "https://app.example.org/jwks.json"},
    "name-not-string": {"client_name": ["x"]},
    "uris-not-list": {"redirect_uris": REDIRECT},
}


@pytest.mark.parametrize("change", REFUSED_METADATA.values(), ids=REFUSED_METADATA.keys())
def test_metadata_outside_the_rules_is_refused(open_registration: None, change: dict[str, Any]) -> None:
    body = answer(post({**METADATA, **change}), 400)
    assert body["error"] in ("invalid_client_metadata", "invalid_redirect_uri")
    assert not Client.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        "{" * 100000,
        # Half a surrogate pair (valid JSON, not Unicode text): it reached the database as a name.
        '{"client_name": "\\ud800", "redirect_uris": ["' + REDIRECT + '"]}',
        '{"redirect_uris": ["' + REDIRECT + '"], "contacts": ["a\\udfff@example.com"]}',
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(open_registration: None, raw: str) -> None:
    assert answer(post(None, raw=raw), 400)["error"] == "invalid_client_metadata"


def test_registration_needs_a_live_initial_access_token_when_so_configured(settings: Any) -> None:
    settings.CELLS_OIDC_REGISTRATION = "initial_access_token"
    missing = post(METADATA)
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert answer(post(METADATA, "ciat_made-up"), 401)["error"] == "invalid_token"
    out = StringIO()
    call_command("cells_oidc_client", "initial-token", "--expires", "1d", "--label", "partner", stdout=out)
    token = next(word for word in out.getvalue().split() if word.startswith("ciat_"))
    stored = InitialAccessToken.objects.get()
    assert stored.token_checksum == checksum(token) and token not in out.getvalue().replace(token, "", 1)
    # A refused registration does not spend a single-use token ...
    assert answer(post({**METADATA, "redirect_uris": ["http://evil.example/cb"]}, token), 400)
    # ... a registration does, once.
    first = answer(post(METADATA, token), 201)
    assert ClientRegistration.objects.get(application__client_id=first["client_id"]).initial_token == stored
    assert answer(post(METADATA, token), 401)["error"] == "invalid_token"


def test_a_multi_use_initial_token_registers_several_clients_until_it_expires(settings: Any) -> None:
    settings.CELLS_OIDC_REGISTRATION = "initial_access_token"
    row, token = registration.issue_initial_token(lifetime=timedelta(hours=1), multi_use=True)
    answer(post(METADATA, token), 201)
    answer(post(METADATA, token), 201)
    InitialAccessToken.objects.filter(pk=row.pk).update(expires=row.created - timedelta(seconds=1))
    assert answer(post(METADATA, token), 401)["error"] == "invalid_token"


def test_a_client_reads_updates_and_deletes_its_registration(open_registration: None) -> None:
    created = answer(post(METADATA), 201)
    uri = created["registration_client_uri"].removeprefix("http://testserver")
    token = created["registration_access_token"]
    http = HttpClient()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    read = answer(http.get(uri, **auth), 200)
    assert read["client_id"] == created["client_id"] and read["redirect_uris"] == [REDIRECT]
    assert "client_secret" not in read  # stored hashed
    # RFC 7592 §2.1: a wrong token, another client's token, no token: the same 401.
    other = answer(post(METADATA), 201)
    for headers in (
        {"HTTP_AUTHORIZATION": "Bearer creg_wrong"},
        {},
        {"HTTP_AUTHORIZATION": f"Bearer {other['registration_access_token']}"},
    ):
        assert http.get(uri, **headers).status_code == 401
    # RFC 7592 §2.2: the new metadata replaces the old; a bad redirect URI is refused.
    new_uri = "https://app.example.org/v2/callback"
    update = {**METADATA, "client_id": created["client_id"], "redirect_uris": [new_uri], "client_name": "v2"}
    changed = answer(http.put(uri, json.dumps(update), content_type="application/json", **auth), 200)
    assert changed["redirect_uris"] == [new_uri] and changed["client_name"] == "v2"
    assert Client.objects.get(client_id=created["client_id"]).redirect_uris == new_uri
    bad = {**update, "redirect_uris": ["http://evil.example/cb"]}
    refused = http.put(uri, json.dumps(bad), content_type="application/json", **auth)
    assert answer(refused, 400)["error"] == "invalid_redirect_uri"
    wrong_secret = {**update, "client_secret": "not-it"}
    refused = http.put(uri, json.dumps(wrong_secret), content_type="application/json", **auth)
    assert answer(refused, 400)["error"] == "invalid_client_metadata"
    right_secret = {**update, "client_secret": created["client_secret"]}
    assert http.put(uri, json.dumps(right_secret), content_type="application/json", **auth).status_code == 200
    # The policy stays third-party whatever the update says.
    escalate = {**update, "scope": "openid cells_oidc:admin"}
    assert http.put(uri, json.dumps(escalate), content_type="application/json", **auth).status_code == 400
    assert not ClientPolicy.objects.get(application__client_id=created["client_id"]).allow_admin_scope
    # RFC 7592 §2.3: delete, then the token and the client are gone.
    assert answer(http.delete(uri, **auth), 204) == {}
    assert not Client.objects.filter(client_id=created["client_id"]).exists()
    assert http.get(uri, **auth).status_code == 401


def test_registration_is_rate_limited_per_ip(open_registration: None, settings: Any) -> None:
    clear_of_window_edges(10)  # the requests are counted in one fixed window
    settings.CELLS_OIDC_THROTTLES = {"register_ip": (2, 3600)}
    answer(post(METADATA), 201)
    answer(post(METADATA), 201)
    assert post(METADATA).status_code == 429


def test_a_registered_client_signs_a_user_in_after_consent(open_registration: None, alice: Any) -> None:
    created = answer(post({**METADATA, "token_endpoint_auth_method": "none"}), 201)
    assert "client_secret" not in created
    client_id = created["client_id"]
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = "/oidc/oauth2/auth?" + urlencode(params)
    browser = Browser()
    to_login = browser.http.get(url)
    assert to_login.status_code == 302 and urlsplit(to_login["Location"]).path == "/oidc/login/"
    assert browser.sign_in(query(to_login["Location"])["next"]).status_code == 303
    # Signed in, the user is asked first (third party): the consent page, no code yet.
    page = browser.http.get(url)
    assert page.status_code == 200 and b"cells_oidc_step" in page.content
    assert "Photo printer" in page.content.decode()
    code = code_from(browser.authorize(params), REDIRECT)["code"]
    # PKCE is required of a registered client: a request without a challenge gets no code.
    no_pkce = {k: v for k, v in params.items() if not k.startswith("code_challenge")}
    refused = browser.authorize(no_pkce)
    assert (
        "code" not in query(refused["Location"]) if refused.status_code == 302 else refused.status_code == 400
    )
    tokens = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        }
    )
    assert tokens.status_code == 200, tokens.content
    assert "id_token" in json.loads(tokens.content)
