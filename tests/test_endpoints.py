"""The provider's HTTP endpoints as clients, browsers and attackers call them.

Discovery and JWKS (OpenID Connect Discovery 1.0, RFC 8414, RFC 7517), the token endpoint's errors
and hostile bodies (RFC 6749 §5.2), CORS, userinfo (OpenID Connect Core §5.3, RFC 6750), revocation
(RFC 7009) and introspection (RFC 7662). Tokens come from real sign-ins (see tests/test_tokens.py).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from jwcrypto import jwk

from cells_oidc.conf import CELLS_LIFETIMES
from tests.kit import FORM, ISSUER, OOB, SCOPE, Browser, basic, code_from, refresh, sign_in
from tests.test_tokens import api, header_of, post_form, token_call, userinfo, verified_claims

pytestmark = pytest.mark.django_db

DISCOVERY = "/oidc/.well-known/openid-configuration"
JWKS = "/oidc/.well-known/jwks.json"
TOKEN = "/oidc/oauth2/token"
REVOKE = "/oidc/oauth2/revoke"
INTROSPECT = "/oidc/oauth2/introspect"
USERINFO = "/oidc/userinfo"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
ALLOWED_ORIGIN = "http://localhost:3640"
FOREIGN_ORIGINS = ["http://localhost:3667", "https://localhost:3640", "http://evil.com", "null"]
RS_SECRET = "resource-server-secret-0123456789"


def body_of(response: Any) -> Any:
    return json.loads(response.content)


def assert_json_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """RFC 6749 §5.2 / RFC 6750 §3.1: a JSON error body, never cached."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    assert response["Cache-Control"] == "no-store"
    data = body_of(response)
    assert data["error"] == error, data
    return data


def metadata(**headers: Any) -> dict[str, Any]:
    response = Client().get(DISCOVERY, **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return body_of(response)


@pytest.fixture
def resource_server(db: Any) -> Any:
    """A confidential client (a resource server) allowed to introspect; DOT stores its secret hashed."""
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    app = model.objects.create(
        client_id="files-api",
        name="Files API",
        client_type=model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=model.GRANT_CLIENT_CREDENTIALS,
        client_secret=RS_SECRET,
        hash_client_secret=True,
    )
    app.refresh_from_db()
    assert app.client_secret != RS_SECRET  # only a hash is stored
    return app


# ---- discovery ---------------------------------------------------------------------------------
def test_issuer_is_identical_everywhere(default_clients: None, alice: Any, browser: Browser) -> None:
    issuer = metadata()["issuer"]
    assert issuer == ISSUER == "http://testserver/oidc/"
    tokens = sign_in(browser, nonce="abcdefgh")
    assert tokens["_authorization_response"]["iss"] == issuer  # RFC 9207
    assert verified_claims(tokens["id_token"])["iss"] == issuer
    assert verified_claims(tokens["access_token"])["iss"] == issuer
    refreshed = body_of(refresh("cells-client", tokens["refresh_token"]))
    assert verified_claims(refreshed["id_token"])["iss"] == issuer
    assert verified_claims(refreshed["access_token"])["iss"] == issuer


def test_discovery_lists_every_endpoint_with_absolute_urls() -> None:
    data = metadata()
    expected = {
        "authorization_endpoint": "http://testserver/oidc/oauth2/auth",
        "token_endpoint": "http://testserver/oidc/oauth2/token",
        "userinfo_endpoint": "http://testserver/oidc/userinfo",
        "jwks_uri": "http://testserver/oidc/.well-known/jwks.json",
        "revocation_endpoint": "http://testserver/oidc/oauth2/revoke",
        "introspection_endpoint": "http://testserver/oidc/oauth2/introspect",
        "end_session_endpoint": "http://testserver/oidc/oauth2/sessions/logout",
    }
    for name, url in expected.items():
        assert data[name] == url, name
        # Every advertised endpoint is really served at that path.
        path = url.removeprefix("http://testserver")
        assert Client().options(path).status_code != 404, path


def test_discovery_ignores_the_host_header(settings: Any) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    settings.ALLOWED_HOSTS = ["cells.example.com", "other.example.net", "testserver"]
    data = metadata(HTTP_HOST="other.example.net")
    assert data["issuer"] == "https://cells.example.com/oidc/"
    urls = [value for key, value in data.items() if key.endswith(("_endpoint", "_uri"))]
    assert len(urls) >= 7
    for url in urls:
        assert url.startswith("https://cells.example.com/oidc/"), url
    assert "other.example.net" not in json.dumps(data)


def test_discovery_with_the_public_url_in_https_tokens_say_the_same(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "other.example.net"]
    issuer = metadata(HTTP_HOST="other.example.net")["issuer"]
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": "https://cells.example.com/oauth2/oob",
        "scope": SCOPE,
        "state": "0123456789abcdef",
    }
    response = browser.authorize(params)
    result = code_from(response, params["redirect_uri"])
    assert result["iss"] == issuer
    exchange = token_call(
        {
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": params["redirect_uri"],
            "client_id": "cells-client",
        },
        HTTP_HOST="other.example.net",
    )
    assert exchange.status_code == 200, exchange.content
    tokens = body_of(exchange)
    assert verified_claims(tokens["id_token"])["iss"] == issuer
    access = verified_claims(tokens["access_token"])
    assert access["iss"] == issuer
    assert access["aud"] == "https://cells.example.com"


def test_discovery_advertises_only_what_is_supported() -> None:
    data = metadata()
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["id_token_signing_alg_values_supported"] == ["RS256"]
    assert data["response_types_supported"] == ["code"]
    assert data["response_modes_supported"] == ["query"]
    assert data["authorization_response_iss_parameter_supported"] is True
    assert data["subject_types_supported"] == ["public"]
    assert set(data["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",  # RFC 8628, for clients whose policy allows it
    }
    assert data["device_authorization_endpoint"] == "http://testserver/oidc/oauth2/device/auth"
    assert {"openid", "email", "profile", "offline", "offline_access", "pydio"} <= set(
        data["scopes_supported"]
    )
    assert {"sub", "iss", "name", "email", "auth_time", "nonce", "sid"} <= set(data["claims_supported"])
    for key in (
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ):
        assert set(data[key]) <= {"client_secret_basic", "client_secret_post", "none"}, key
    assert "none" not in data["introspection_endpoint_auth_methods_supported"]
    # Nothing advertised that is not implemented.
    assert "none" not in json.dumps(data["id_token_signing_alg_values_supported"])
    assert "HS256" not in json.dumps(data)
    assert "plain" not in json.dumps(data)
    assert data.get("request_parameter_supported") in (None, False)
    assert data.get("request_uri_parameter_supported") in (None, False)
    assert not data.get("userinfo_signing_alg_values_supported")


def test_discovery_and_jwks_answer_cors_for_any_origin() -> None:
    for path in (DISCOVERY, JWKS):
        for origin in (ALLOWED_ORIGIN, "http://evil.com"):
            response = Client().get(path, HTTP_ORIGIN=origin)
            assert response.status_code == 200
            assert response["Access-Control-Allow-Origin"] == "*", path
        preflight = Client().options(
            path, HTTP_ORIGIN="http://evil.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
        )
        assert preflight.status_code in (200, 204)
        assert preflight["Access-Control-Allow-Origin"] == "*"
        assert "GET" in preflight["Access-Control-Allow-Methods"]
        # Public documents: a POST is not how they are read.
        assert Client().post(path).status_code == 405


def test_issuer_url_points_at_discovery() -> None:
    response = Client().get("/oidc/")
    assert response.status_code in (301, 302)
    assert response["Location"] == "http://testserver/oidc/.well-known/openid-configuration"


# ---- JWKS ----------------------------------------------------------------------------------------
def test_jwks_publishes_active_and_inactive_public_keys(settings: Any) -> None:
    from django.conf import settings as django_settings

    response = Client().get(JWKS)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    keys = body_of(response)["keys"]
    active = jwk.JWK.from_pem(django_settings.SIGNING_KEY.encode())
    old = jwk.JWK.from_pem(django_settings.OLD_SIGNING_KEY.encode())
    assert [key["kid"] for key in keys] == [active.thumbprint(), old.thumbprint()]
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert not PRIVATE_MEMBERS & set(key), key.keys()
        # The kid is the RFC 7638 thumbprint of the published key itself.
        assert jwk.JWK(**key).thumbprint() == key["kid"]
        assert not jwk.JWK(**key).has_private


def test_jwks_lists_each_key_once(settings: Any) -> None:
    from django.conf import settings as django_settings

    from cells_oidc.conf import oauth2_provider_settings

    active, old = django_settings.SIGNING_KEY, django_settings.OLD_SIGNING_KEY
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=active, inactive_keys=[old, active, old])
    kids = [key["kid"] for key in body_of(Client().get(JWKS))["keys"]]
    assert len(kids) == len(set(kids)) == 2


def test_tokens_verify_against_the_jwks(default_clients: None, alice: Any, browser: Browser) -> None:
    from django.conf import settings

    tokens = sign_in(browser)
    active = jwk.JWK.from_pem(settings.SIGNING_KEY.encode()).thumbprint()
    for token in (tokens["id_token"], tokens["access_token"]):
        assert header_of(token)["kid"] == active
        verified_claims(token)  # raises when the signature does not verify with the JWKS key


def test_a_rotated_out_key_still_verifies_its_tokens(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    from django.conf import settings as django_settings

    from cells_oidc.conf import oauth2_provider_settings

    old, new = django_settings.SIGNING_KEY, django_settings.OLD_SIGNING_KEY
    tokens = sign_in(browser)
    # Rotate: the former key becomes inactive, published and still accepted.
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=new, inactive_keys=[old])
    assert header_of(tokens["access_token"])["kid"] == jwk.JWK.from_pem(old.encode()).thumbprint()
    verified_claims(tokens["access_token"])
    assert userinfo(tokens["access_token"]).status_code == 200
    refreshed = body_of(refresh("cells-client", tokens["refresh_token"]))
    assert header_of(refreshed["access_token"])["kid"] == jwk.JWK.from_pem(new.encode()).thumbprint()
    verified_claims(refreshed["id_token"])


# ---- the token endpoint: errors ----------------------------------------------------------------
def test_token_endpoint_errors_are_json(default_clients: None) -> None:
    assert_json_error(
        token_call({"grant_type": "urn:example:unknown", "client_id": "cells-client"}),
        400,
        "unsupported_grant_type",
    )
    assert_json_error(
        token_call(
            {
                "grant_type": "authorization_code",
                "code": "nope",
                "redirect_uri": OOB,
                "client_id": "cells-client",
            }
        ),
        400,
        "invalid_grant",
    )
    assert_json_error(
        token_call({"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "cells-client"}),
        400,
        "invalid_grant",
    )
    assert_json_error(
        token_call(
            {"grant_type": "authorization_code", "code": "x", "redirect_uri": OOB, "client_id": "who"}
        ),
        401,
        "invalid_client",
    )
    missing_code = assert_json_error(
        token_call({"grant_type": "authorization_code", "redirect_uri": OOB, "client_id": "cells-client"}),
        400,
        "invalid_request",
    )
    assert "code" in missing_code.get("error_description", "")
    assert_json_error(token_call({"client_id": "cells-client", "code": "x"}), 400, "invalid_request")
    assert_json_error(token_call({}), 400, "invalid_request")
    get = api().get(TOKEN)
    assert_json_error(get, 405, "invalid_request")
    assert "POST" in get["Allow"]
    for method in ("put", "delete", "patch"):
        assert_json_error(getattr(api(), method)(TOKEN), 405, "invalid_request")


def test_bad_client_credentials_get_a_basic_challenge(resource_server: Any) -> None:
    auth = basic("files-api", "wrong")
    for response in (
        token_call({"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=auth),
        post_form(REVOKE, {"token": "x"}, HTTP_AUTHORIZATION=auth),
        post_form(INTROSPECT, {"token": "x"}, HTTP_AUTHORIZATION=auth),
    ):
        assert_json_error(response, 401, "invalid_client")
        # RFC 6749 §5.2: a client that tried the Authorization header gets a matching challenge.
        assert response["WWW-Authenticate"].startswith("Basic ")


def test_confidential_client_gets_tokens_with_its_secret(resource_server: Any) -> None:
    ok = token_call({"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic("files-api", RS_SECRET))
    assert ok.status_code == 200, ok.content
    claims = verified_claims(body_of(ok)["access_token"])
    # RFC 9068 §2.2: without a user, the subject is the client itself.
    assert claims["sub"] == claims["client_id"] == "files-api"
    assert "auth_time" not in claims


@pytest.mark.parametrize("path", [TOKEN, REVOKE, INTROSPECT])
def test_client_endpoints_refuse_parameters_in_the_url(
    default_clients: None, alice: Any, browser: Browser, resource_server: Any, path: str
) -> None:
    tokens = sign_in(browser)
    query = urlencode({"refresh_token": tokens["refresh_token"], "token": tokens["refresh_token"]})
    body = {"grant_type": "refresh_token", "client_id": "cells-client"}
    response = post_form(f"{path}?{query}", body, HTTP_AUTHORIZATION=basic("files-api", RS_SECRET))
    assert_json_error(response, 400, "invalid_request")
    # Nothing happened to the token.
    assert refresh("cells-client", tokens["refresh_token"]).status_code == 200


def test_unknown_parameters_are_ignored(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    data = {
        "grant_type": "refresh_token",
        "client_id": "cells-client",
        "refresh_token": tokens["refresh_token"],
    }
    response = post_form(TOKEN, {**data, "foo": "bar", "prompt": "none", "utm_source": "x"})
    assert response.status_code == 200, response.content


def test_userinfo_needs_the_openid_scope(default_clients: None, alice: Any, browser: Browser) -> None:
    access = sign_in(browser, scope="pydio offline")["access_token"]
    response = userinfo(access)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert body_of(response)["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


def test_public_client_may_send_basic_with_an_empty_password(default_clients: None) -> None:
    # Identification, not a failed authentication: the code is what is wrong here.
    response = token_call(
        {"grant_type": "authorization_code", "code": "unknown", "redirect_uri": "cellsauth://callback"},
        HTTP_AUTHORIZATION=basic("cells-mobile"),
    )
    assert_json_error(response, 400, "invalid_grant")


RAW_BODIES = [
    (
        "repeated grant_type",
        FORM,
        b"grant_type=authorization_code&grant_type=refresh_token&client_id=cells-client",
    ),
    (
        "repeated client_id",
        FORM,
        b"grant_type=refresh_token&refresh_token=x&client_id=cells-client&client_id=a",
    ),
    ("NUL byte", FORM, b"grant_type=authorization_code&code=ab%00cd&client_id=cells-client"),
    ("raw NUL byte", FORM, b"grant_type=authorization_code&code=ab\x00cd&client_id=cells-client"),
    ("invalid UTF-8", FORM, b"grant_type=authorization_code&code=%ff%fe&client_id=cells-client"),
    ("raw invalid UTF-8", FORM, b"grant_type=authorization_code&code=\xff\xfe&client_id=cells-\xc3client"),
    ("bad percent-encoding", FORM, b"grant_type=authorization_code&code=%zz%&client_id=cells-client%"),
    ("JSON body", "application/json", b'{"grant_type": "authorization_code", "code": "x"}'),
    ("JSON body as form", FORM, b'{"grant_type": "authorization_code", "code": "x"}'),
    ("text body", "text/plain", b"grant_type=authorization_code&code=x&client_id=cells-client"),
    ("huge code", FORM, b"grant_type=authorization_code&client_id=cells-client&code=" + b"a" * 100_000),
    ("huge client_id", FORM, b"grant_type=authorization_code&code=x&client_id=" + b"a" * 100_000),
    ("huge body", FORM, b"grant_type=authorization_code&code=x&pad=" + b"a" * 3_000_000),
    ("too many fields", FORM, b"&".join(b"f%d=1" % i for i in range(1500))),
    ("device grant without device_code", FORM, b"grant_type=urn:ietf:params:oauth:grant-type:device_code"),
    (
        "device grant with an unknown device_code",
        FORM,
        b"grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=nope&client_id=cells-client",
    ),
    ("empty body", FORM, b""),
    ("no content type", "", b"grant_type=authorization_code"),
    ("grant type with spaces", FORM, b"grant_type=authorization_code%20&code=x&client_id=cells-client"),
    ("unicode client id", FORM, "grant_type=refresh_token&refresh_token=x&client_id=ç€🙂".encode()),
    ("control characters", FORM, b"grant_type=refresh_token&refresh_token=%0d%0aX:1&client_id=cells-client"),
]


@pytest.mark.parametrize(("name", "content_type", "body"), RAW_BODIES, ids=[row[0] for row in RAW_BODIES])
def test_malformed_token_requests_never_fail_the_server(
    default_clients: None, name: str, content_type: str, body: bytes
) -> None:
    response = api().generic("POST", TOKEN, body, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if name == "huge body":
        assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert body_of(response)["error"] in {
        "invalid_request",
        "invalid_grant",
        "invalid_client",
        "unsupported_grant_type",
        "unauthorized_client",
    }


def test_multipart_body_is_refused(default_clients: None) -> None:
    response = api().post(
        TOKEN, {"grant_type": "authorization_code", "code": "x", "client_id": "cells-client"}
    )
    assert_json_error(response, 400, "invalid_request")


def test_form_content_type_with_charset_is_accepted(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    # What fetch() sends for URLSearchParams (cells-sync's oidc-client-js).
    tokens = sign_in(browser)
    body = urlencode(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-client"}
    )
    response = api().post(TOKEN, body, content_type="application/x-www-form-urlencoded;charset=UTF-8")
    assert response.status_code == 200, response.content


# ---- CORS on the API endpoints --------------------------------------------------------------------
def test_token_endpoint_cors_for_the_registered_origin(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    assert refresh("cells-sync", tokens["refresh_token"]).status_code == 200
    replay = token_call(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-sync"},
        HTTP_ORIGIN=ALLOWED_ORIGIN,
    )
    # The first refresh above rotated the token out: replaying it is invalid_grant, readable by the page.
    assert_json_error(replay, 400, "invalid_grant")
    assert replay["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN

    fresh = sign_in(Browser(), client_id="cells-sync")
    good = token_call(
        {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"], "client_id": "cells-sync"},
        HTTP_ORIGIN=ALLOWED_ORIGIN,
    )
    assert good.status_code == 200, good.content
    assert good["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Origin" in good.get("Vary", "")
    unknown = token_call({"grant_type": "nope", "client_id": "cells-sync"}, HTTP_ORIGIN=ALLOWED_ORIGIN)
    assert_json_error(unknown, 400, "unsupported_grant_type")
    assert unknown["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    not_allowed = api().get(TOKEN, HTTP_ORIGIN=ALLOWED_ORIGIN)
    assert not_allowed.status_code == 405
    assert not_allowed["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_token_endpoint_cors_is_per_client(default_clients: None, alice: Any, browser: Browser) -> None:
    # cells-client registers no origin: a page on cells-sync's origins cannot read its tokens.
    tokens = sign_in(browser)
    for response in (
        token_call(
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "cells-client",
            },
            HTTP_ORIGIN=ALLOWED_ORIGIN,
        ),
        token_call(
            {"grant_type": "refresh_token", "refresh_token": "x"},
            HTTP_ORIGIN=ALLOWED_ORIGIN,
            HTTP_AUTHORIZATION=basic("cells-client"),
        ),
        post_form(REVOKE, {"token": "x", "client_id": "cells-client"}, HTTP_ORIGIN=ALLOWED_ORIGIN),
    ):
        assert not response.has_header("Access-Control-Allow-Origin")
    # An unknown client's error stays readable for a registered origin.
    unknown = token_call(
        {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "who"}, HTTP_ORIGIN=ALLOWED_ORIGIN
    )
    assert_json_error(unknown, 401, "invalid_client")
    assert unknown["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    # No Basic challenge for a client that did not use the Authorization header.
    assert not unknown.get("WWW-Authenticate", "").startswith("Basic")


@pytest.mark.parametrize("path", [TOKEN, REVOKE, USERINFO])
def test_preflight_for_the_registered_origin(default_clients: None, path: str) -> None:
    response = api().options(
        path,
        HTTP_ORIGIN=ALLOWED_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization",
    )
    assert response.status_code in (200, 204)
    assert response["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed_headers = response["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed_headers and "authorization" in allowed_headers


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_no_cors_for_foreign_origins(default_clients: None, alice: Any, origin: str) -> None:
    tokens = sign_in(Browser(), client_id="cells-sync")
    good = token_call(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-sync"},
        HTTP_ORIGIN=origin,
    )
    assert good.status_code == 200
    bad = token_call(
        {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "cells-sync"}, HTTP_ORIGIN=origin
    )
    assert bad.status_code == 400
    preflight = api().options(TOKEN, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    info = api().get(
        USERINFO, HTTP_ORIGIN=origin, HTTP_AUTHORIZATION=f"Bearer {body_of(good)['access_token']}"
    )
    assert info.status_code == 200
    for response in (good, bad, preflight, info):
        assert not response.has_header("Access-Control-Allow-Origin"), origin
        assert not response.has_header("Access-Control-Allow-Methods")


# ---- userinfo ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "post"])
def test_userinfo_returns_the_scoped_claims(default_clients: None, alice: Any, method: str) -> None:
    everything = sign_in(Browser())["access_token"]
    response = call_userinfo(method, everything)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    claims = body_of(response)
    assert claims["sub"] == str(alice.pk)
    assert claims["name"] == "alice"
    assert claims["given_name"] == "Alice"
    assert claims["email"] == "alice@example.com"

    profile_only = sign_in(Browser(), scope="openid profile offline")["access_token"]
    claims = body_of(call_userinfo(method, profile_only))
    assert claims["name"] == "alice"
    assert "email" not in claims

    email_only = sign_in(Browser(), scope="openid email offline")["access_token"]
    claims = body_of(call_userinfo(method, email_only))
    assert claims == {"sub": str(alice.pk), "email": "alice@example.com"}


def test_userinfo_accepts_a_token_in_a_form_body(default_clients: None, alice: Any) -> None:
    # RFC 6750 §2.2 (OpenID Connect Core §5.3.1 allows it for POST).
    access = sign_in(Browser())["access_token"]
    response = post_form(USERINFO, {"access_token": access})
    assert response.status_code == 200, response.content
    assert body_of(response)["sub"] == str(alice.pk)


def call_userinfo(method: str, access_token: str, **headers: Any) -> Any:
    """GET, or POST with an empty body as OIDC clients do (OpenID Connect Core §5.3.1)."""
    headers["HTTP_AUTHORIZATION"] = f"Bearer {access_token}"
    if method == "post":
        return api().generic("POST", USERINFO, b"", content_type="", **headers)
    return api().get(USERINFO, **headers)


def assert_bearer_refusal(response: Any, error: str | None = "invalid_token", status: int = 401) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    if error:
        assert f'error="{error}"' in challenge, challenge
        assert body_of(response)["error"] == error
    else:
        # RFC 6750 §3.1: a request without credentials gets a challenge and no error code.
        assert "error=" not in challenge, challenge


def test_userinfo_refuses_an_id_token(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    for method in ("get", "post"):
        assert_bearer_refusal(call_userinfo(method, tokens["id_token"]))


def test_userinfo_refuses_bad_tokens(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    access = tokens["access_token"]
    head, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "999"}).encode()).rstrip(b"=").decode()
    for bad in ("garbage", "a.b.c", f"{head}.{forged}.{signature}", access + "x", "x" * 20000):
        assert_bearer_refusal(userinfo(bad))
    assert_bearer_refusal(
        api().get(USERINFO, HTTP_AUTHORIZATION="Bearer"), error="invalid_request", status=400
    )
    assert_bearer_refusal(api().get(USERINFO), error=None)
    assert_bearer_refusal(api().get(USERINFO, HTTP_AUTHORIZATION=basic("cells-client")), error=None)


def test_userinfo_refuses_a_token_in_the_query_string(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    access = sign_in(browser)["access_token"]
    response = api().get(f"{USERINFO}?{urlencode({'access_token': access})}")
    # RFC 9700 §4.3.2 / RFC 6750 §5.3: never in the URI, where logs and referrers keep it.
    assert response.status_code in (400, 401)
    assert response["Content-Type"] == "application/json"
    assert "sub" not in body_of(response)
    assert response["WWW-Authenticate"].startswith("Bearer")
    both = api().get(
        f"{USERINFO}?{urlencode({'access_token': access})}", HTTP_AUTHORIZATION=f"Bearer {access}"
    )
    assert both.status_code == 400
    two_methods = post_form(USERINFO, {"access_token": access}, HTTP_AUTHORIZATION=f"Bearer {access}")
    # RFC 6750 §2: a client MUST NOT use more than one method.
    assert_bearer_refusal(two_methods, error="invalid_request", status=400)


def test_userinfo_refuses_an_expired_token(
    default_clients: None, alice: Any, browser: Browser, time_machine: Any
) -> None:
    time_machine.move_to(time.time())  # the clock is moved, never waited for
    tokens = sign_in(browser)
    assert tokens["expires_in"] == CELLS_LIFETIMES["ACCESS_TOKEN_EXPIRE_SECONDS"]
    assert userinfo(tokens["access_token"]).status_code == 200
    time_machine.shift(CELLS_LIFETIMES["ACCESS_TOKEN_EXPIRE_SECONDS"] + 60)  # beyond the 30 s leeway
    assert_bearer_refusal(userinfo(tokens["access_token"]))


def test_userinfo_refuses_the_token_of_a_deactivated_user(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    access = sign_in(browser)["access_token"]
    alice.is_active = False
    alice.save()
    assert_bearer_refusal(userinfo(access))


# ---- revocation (RFC 7009) ---------------------------------------------------------------------
def revoke(token: str, client_id: str | None = "cells-client", **headers: Any) -> Any:
    data = {"token": token}
    if client_id is not None:
        data["client_id"] = client_id
    return post_form(REVOKE, data, **headers)


def test_revoking_a_refresh_token_revokes_its_family(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    first = sign_in(browser)
    second = body_of(refresh("cells-client", first["refresh_token"]))
    third = body_of(refresh("cells-client", second["refresh_token"]))
    assert userinfo(third["access_token"]).status_code == 200
    response = revoke(second["refresh_token"])  # rotated out, still part of the family
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert_bearer_refusal(userinfo(third["access_token"]))
    assert_json_error(refresh("cells-client", third["refresh_token"]), 400, "invalid_grant")


def test_revoking_the_current_refresh_token(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    other = sign_in(Browser())  # another sign-in of the same user and client is not affected
    assert revoke(tokens["refresh_token"], token_type_hint="refresh_token").status_code == 200
    assert_bearer_refusal(userinfo(tokens["access_token"]))
    assert_json_error(refresh("cells-client", tokens["refresh_token"]), 400, "invalid_grant")
    assert userinfo(other["access_token"]).status_code == 200
    assert refresh("cells-client", other["refresh_token"]).status_code == 200


def revoke_hint(token: str, hint: str, **headers: Any) -> Any:
    return post_form(
        REVOKE, {"token": token, "token_type_hint": hint, "client_id": "cells-client"}, **headers
    )


def test_revoking_an_access_token(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    for hint in (None, "access_token", "refresh_token"):
        fresh = sign_in(Browser())
        data = {"token": fresh["access_token"], "client_id": "cells-client"}
        if hint:
            data["token_type_hint"] = hint  # a wrong hint must not stop the revocation (RFC 7009 §2.1)
        assert post_form(REVOKE, data).status_code == 200
        assert_bearer_refusal(userinfo(fresh["access_token"]))
    assert userinfo(tokens["access_token"]).status_code == 200


def test_revoking_unknown_tokens_answers_200(default_clients: None) -> None:
    for token in ("unknown", "a.b.c", "x" * 5000):
        response = revoke(token)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"


def test_a_client_cannot_revoke_the_tokens_of_another(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert revoke(token, client_id="cells-mobile").status_code == 200
        assert revoke(token, client_id=None, HTTP_AUTHORIZATION=basic("cells-sync")).status_code == 200
    assert userinfo(tokens["access_token"]).status_code == 200
    assert refresh("cells-client", tokens["refresh_token"]).status_code == 200


def test_public_client_revokes_with_basic_and_empty_password(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, client_id="cells-mobile")
    response = revoke(tokens["refresh_token"], client_id=None, HTTP_AUTHORIZATION=basic("cells-mobile"))
    assert response.status_code == 200
    assert_bearer_refusal(userinfo(tokens["access_token"]))


def test_revocation_errors(default_clients: None, resource_server: Any) -> None:
    assert_json_error(post_form(REVOKE, {"client_id": "cells-client"}), 400, "invalid_request")
    assert_json_error(post_form(REVOKE, {"token": "x"}), 401, "invalid_client")
    assert_json_error(post_form(REVOKE, {"token": "x", "client_id": "nobody"}), 401, "invalid_client")
    wrong = post_form(REVOKE, {"token": "x"}, HTTP_AUTHORIZATION=basic("files-api", "wrong"))
    assert_json_error(wrong, 401, "invalid_client")
    # A confidential client must authenticate; its client_id alone is not enough.
    assert_json_error(post_form(REVOKE, {"token": "x", "client_id": "files-api"}), 401, "invalid_client")
    assert_json_error(api().get(REVOKE), 405, "invalid_request")
    assert_json_error(api().post(REVOKE, {"token": "x", "client_id": "cells-client"}), 400, "invalid_request")
    cors = post_form(REVOKE, {"token": "x"}, HTTP_ORIGIN=ALLOWED_ORIGIN)
    assert_json_error(cors, 401, "invalid_client")
    assert cors["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


# ---- introspection (RFC 7662) --------------------------------------------------------------------
def introspect(token: str, auth: str | None = None, **extra: str) -> Any:
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    return post_form(INTROSPECT, {"token": token, **extra}, **headers)


def test_introspection_of_an_active_access_token(
    default_clients: None, alice: Any, browser: Browser, resource_server: Any
) -> None:
    tokens = sign_in(browser)
    claims = verified_claims(tokens["access_token"])
    for response in (
        introspect(tokens["access_token"], basic("files-api", RS_SECRET)),
        introspect(tokens["access_token"], client_id="files-api", client_secret=RS_SECRET),
    ):
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        assert response["Cache-Control"] == "no-store"
        data = body_of(response)
        assert data["active"] is True
        assert data["scope"].split() == SCOPE.split()
        assert data["client_id"] == "cells-client"
        assert data["sub"] == str(alice.pk)
        assert data["iss"] == ISSUER
        assert data["token_type"] == "Bearer"
        assert data["exp"] == claims["exp"]
        assert data["iat"] == claims["iat"]
        assert data["aud"] == claims["aud"]
        assert data["jti"] == claims["jti"]
        assert data["username"] == "alice"


def test_introspection_of_a_refresh_token(
    default_clients: None, alice: Any, browser: Browser, resource_server: Any
) -> None:
    tokens = sign_in(browser)
    data = body_of(
        introspect(tokens["refresh_token"], basic("files-api", RS_SECRET), token_type_hint="refresh_token")
    )
    assert data["active"] is True
    assert data["client_id"] == "cells-client"
    assert data["sub"] == str(alice.pk)
    assert data["scope"].split() == SCOPE.split()
    assert data["iss"] == ISSUER
    assert data["exp"] > time.time() + 59 * 24 * 3600
    # Rotated out by a refresh: no longer active, and neither is its old access token.
    refreshed = body_of(refresh("cells-client", tokens["refresh_token"]))
    assert body_of(introspect(tokens["refresh_token"], basic("files-api", RS_SECRET))) == {"active": False}
    assert body_of(introspect(refreshed["refresh_token"], basic("files-api", RS_SECRET)))["active"] is True


def test_introspection_of_inactive_tokens(
    default_clients: None, alice: Any, browser: Browser, resource_server: Any, time_machine: Any
) -> None:
    time_machine.move_to(time.time())  # expiry is reached by moving the clock, not by sleeping
    auth = basic("files-api", RS_SECRET)
    tokens = sign_in(browser)
    for token in ("unknown", "a.b.c", tokens["id_token"]):
        assert body_of(introspect(token, auth)) == {"active": False}
    revoke(tokens["refresh_token"])
    assert body_of(introspect(tokens["access_token"], auth)) == {"active": False}
    assert body_of(introspect(tokens["refresh_token"], auth)) == {"active": False}

    short = sign_in(Browser())
    assert body_of(introspect(short["access_token"], auth))["active"] is True
    time_machine.shift(CELLS_LIFETIMES["ACCESS_TOKEN_EXPIRE_SECONDS"] + 1)
    assert body_of(introspect(short["access_token"], auth)) == {"active": False}

    deactivated = sign_in(Browser())
    alice.is_active = False
    alice.save()
    assert body_of(introspect(deactivated["access_token"], auth)) == {"active": False}
    assert body_of(introspect(deactivated["refresh_token"], auth)) == {"active": False}


def test_introspection_only_for_authenticated_confidential_clients(
    default_clients: None, alice: Any, browser: Browser, resource_server: Any
) -> None:
    access = sign_in(browser)["access_token"]
    refusals = [
        introspect(access),
        introspect(access, client_id="cells-client"),
        introspect(access, basic("cells-client")),
        introspect(access, client_id="cells-client", client_secret=""),
        introspect(access, client_id="files-api"),
        introspect(access, basic("files-api", "wrong")),
        introspect(access, client_id="files-api", client_secret="wrong"),
        introspect(access, basic("files-api", resource_server.client_secret)),  # the stored hash
        introspect(access, f"Bearer {access}"),
        introspect(
            access,
            client_id="cells-client",
            grant_type="urn:ietf:params:oauth:grant-type:device_code",
        ),
    ]
    for response in refusals:
        data = assert_json_error(response, 401, "invalid_client")
        assert "active" not in data
        assert response.has_header("WWW-Authenticate")
    assert_json_error(api().get(INTROSPECT, {"token": access}), 405, "invalid_request")
    missing = post_form(INTROSPECT, {}, HTTP_AUTHORIZATION=basic("files-api", RS_SECRET))
    assert_json_error(missing, 400, "invalid_request")


def test_the_token_endpoint_does_not_leak_secrets_in_errors(default_clients: None) -> None:
    response = token_call(
        {"grant_type": "authorization_code", "code": "secret-code-value", "client_id": "cells-client"}
    )
    assert b"secret-code-value" not in response.content
