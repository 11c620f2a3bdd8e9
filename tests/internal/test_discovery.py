"""Discovery (OpenID Connect Discovery 1.0 §3, RFC 8414) says what the endpoints enforce.

Each advertised value is built from the constant the endpoint checks with; these tests hold
both ends: every advertised value is accepted, every other candidate refused. And the document
is built once per configuration, again when a setting changes.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client

from tests.conftest import PASSWORD, Browser, basic, form_post, pkce_pair, query, token_request

pytestmark = pytest.mark.django_db

DISCOVERY = "/oidc/.well-known/openid-configuration"
REDIRECT_URI = "http://localhost:3636"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def metadata() -> dict[str, Any]:
    response = Client().get(DISCOVERY)
    assert response.status_code == 200
    return json.loads(response.content)


def authorization_error(http: Client, **params: str) -> str | None:
    """The ``error`` an authorization request is answered with (redirect or page), else ``None``."""
    _verifier, challenge = pkce_pair()
    request = {
        "client_id": "cells-client",
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    response = http.get("/oidc/oauth2/auth?" + urlencode(request))
    if response.status_code == 302 and response["Location"].startswith(REDIRECT_URI):
        return query(response["Location"]).get("error")
    if response.status_code >= 400:
        return response.context["error"] if response.context else "invalid_request"
    return None


@pytest.fixture
def signed_in(default_clients: None, alice: Any) -> Client:
    http = Client()
    assert http.login(username="alice", password=PASSWORD)
    return http


# OpenID Connect Core §3.1.2.1 (and Prompt Create 1.0's ``create``).
PROMPT_CANDIDATES = ("none", "login", "consent", "select_account", "create", "bogus")


@pytest.mark.parametrize("prompt", PROMPT_CANDIDATES)
def test_a_prompt_value_is_accepted_exactly_when_advertised(signed_in: Client, prompt: str) -> None:
    advertised = prompt in metadata()["prompt_values_supported"]
    error = authorization_error(signed_in, prompt=prompt)
    # prompt=none may end in consent_required or interaction_required: the value was understood.
    assert (error != "invalid_request") is advertised, error


@pytest.mark.parametrize("method", ["S256", "plain", "s256"])
def test_a_code_challenge_method_is_accepted_exactly_when_advertised(signed_in: Client, method: str) -> None:
    advertised = method in metadata()["code_challenge_methods_supported"]
    error = authorization_error(signed_in, code_challenge_method=method)
    assert (error != "invalid_request") is advertised, error


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_a_response_mode_is_accepted_exactly_when_advertised(signed_in: Client, mode: str) -> None:
    advertised = mode in metadata()["response_modes_supported"]
    assert (authorization_error(signed_in, response_mode=mode) != "invalid_request") is advertised


GRANT_CANDIDATES = (
    "authorization_code",
    "refresh_token",
    DEVICE_GRANT,
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
)


@pytest.mark.parametrize("grant_type", GRANT_CANDIDATES)
def test_a_grant_type_is_accepted_exactly_when_advertised(
    default_clients: None, alice: Any, grant_type: str
) -> None:
    """A Cells client's token request of each grant type: refused for its type only when the
    type is not advertised (an advertised one fails on its missing parameters instead)."""
    advertised = grant_type in metadata()["grant_types_supported"]
    # With the password grant's parameters (oauthlib checks the user first), so that only its
    # type can refuse it.
    body = {"grant_type": grant_type, "client_id": "cells-client", "username": "alice", "password": PASSWORD}
    response = token_request(body)
    error = json.loads(response.content)["error"]
    assert (error not in ("unsupported_grant_type", "unauthorized_client")) is advertised, error


def test_every_advertised_token_endpoint_auth_method_authenticates_a_client(default_clients: None) -> None:
    """``none`` (client_id in the body) and ``client_secret_basic`` (a public client's empty
    password, as Cells sends it) at the device endpoint; a malformed Basic header is refused."""
    advertised = metadata()["token_endpoint_auth_methods_supported"]
    assert {"none", "client_secret_basic"} <= set(advertised)
    device = "/oidc/oauth2/device/auth"
    by_body = form_post(device, {"client_id": "cells-client", "scope": "openid"})
    assert by_body.status_code == 200, by_body.content
    by_basic = form_post(
        device, {"client_id": "cells-client", "scope": "openid"}, HTTP_AUTHORIZATION=basic("cells-client")
    )
    assert by_basic.status_code == 200, by_basic.content


def test_the_document_is_built_once_per_configuration(
    default_clients: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cells_oidc.internal import endpoints

    calls = []
    original = endpoints.reverse
    monkeypatch.setattr(endpoints, "reverse", lambda *a, **k: calls.append(a) or original(*a, **k))
    settings.CELLS_OIDC_SITE_URL = "https://id.example.com"  # a configuration of this test
    first = metadata()
    built = len(calls)
    assert built > 0
    assert metadata() == first
    Client().get("/oidc/.well-known/jwks.json")
    assert len(calls) == built  # no reverse() for a document already built
    settings.CELLS_OIDC_SITE_URL = "https://id.example.org"  # setting_changed: built again
    moved = metadata()
    assert moved["issuer"] == "https://id.example.org/oidc/"
    assert moved["token_endpoint"] == "https://id.example.org/oidc/oauth2/token"
    assert len(calls) > built


# ---- completeness: every field a spec defines for what is supported, nothing else ----------------
#: The provider metadata fields and the specification defining each (docs/discovery.md).
KNOWN_FIELDS = {
    # OpenID Connect Discovery 1.0 §3 and RFC 8414 §2
    "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
    "registration_endpoint", "scopes_supported", "response_types_supported", "response_modes_supported",
    "grant_types_supported", "acr_values_supported", "subject_types_supported",
    "id_token_signing_alg_values_supported", "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported", "display_values_supported", "claim_types_supported",
    "claims_supported", "service_documentation", "claims_locales_supported", "ui_locales_supported",
    "claims_parameter_supported", "request_parameter_supported", "request_uri_parameter_supported",
    "require_request_uri_registration", "op_policy_uri", "op_tos_uri",
    "revocation_endpoint", "revocation_endpoint_auth_methods_supported",
    "revocation_endpoint_auth_signing_alg_values_supported", "introspection_endpoint",
    "introspection_endpoint_auth_methods_supported",
    "introspection_endpoint_auth_signing_alg_values_supported",
    "code_challenge_methods_supported",
    "prompt_values_supported",  # OpenID Connect Prompt Create 1.0 §4
    "end_session_endpoint",  # RP-Initiated Logout 1.0 §2.1
    "frontchannel_logout_supported",  # Front-Channel Logout 1.0 §3
    "backchannel_logout_supported", "backchannel_logout_session_supported",  # Back-Channel Logout §2.1
    "device_authorization_endpoint",  # RFC 8628 §4
    "authorization_response_iss_parameter_supported",  # RFC 9207 §3
    "pushed_authorization_request_endpoint", "require_pushed_authorization_requests",  # RFC 9126 §5
    "dpop_signing_alg_values_supported",  # RFC 9449 §5.1
}  # fmt: skip


@pytest.fixture
def everything_on(settings: Any) -> Any:
    settings.CELLS_OIDC_SITE_URL = "https://id.example.com"  # RFC 8414 §2: https URLs
    settings.CELLS_OIDC_SERVICE_ACCOUNTS = True
    settings.CELLS_OIDC_REGISTRATION = "open"
    settings.CELLS_OIDC_SERVICE_DOCUMENTATION = "https://docs.example.com/oidc"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.locale.LocaleMiddleware"]
    settings.LANGUAGES = [("en", "English"), ("fr", "Français"), ("pt", "Português")]
    return settings


@pytest.mark.parametrize("configuration", ["default", "everything_on"])
def test_an_independent_library_validates_the_document(
    default_clients: None, settings: Any, request: pytest.FixtureRequest, configuration: str
) -> None:
    """Authlib's validators of OpenID Connect Discovery §3 and RFC 8414 §2 accept the document."""
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

    if configuration == "everything_on":
        request.getfixturevalue("everything_on")
    else:
        settings.CELLS_OIDC_SITE_URL = "https://id.example.com"
    document = metadata()
    OpenIDProviderMetadata(document).validate()
    AuthorizationServerMetadata(document).validate()
    assert set(document) <= KNOWN_FIELDS, set(document) - KNOWN_FIELDS


def test_optional_fields_follow_their_settings(default_clients: None, settings: Any) -> None:
    plain = metadata()
    for absent in ("registration_endpoint", "service_documentation"):
        assert absent not in plain
    assert "private_key_jwt" not in plain["token_endpoint_auth_methods_supported"]
    assert "client_credentials" not in plain["grant_types_supported"]
    assert "token_endpoint_auth_signing_alg_values_supported" not in plain
    assert plain["backchannel_logout_supported"] is True
    assert plain["backchannel_logout_session_supported"] is True
    # Without LocaleMiddleware every page speaks LANGUAGE_CODE: no ui_locales_supported.
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if not name.endswith("LocaleMiddleware")]
    assert "ui_locales_supported" not in metadata()


def test_every_field_on_is_what_the_endpoints_do(
    default_clients: None, alice: Any, everything_on: Any
) -> None:
    from cells_oidc.internal import client_auth

    document = metadata()
    assert document["service_documentation"] == "https://docs.example.com/oidc"
    # ui_locales_supported: the LANGUAGES the pages are translated into (no Portuguese catalogue).
    assert document["ui_locales_supported"] == ["en", "fr"]
    login = Client().get("/oidc/login/", HTTP_ACCEPT_LANGUAGE="fr")
    assert login["Content-Language"] == "fr" and b"Se connecter" in login.content
    # private_key_jwt with the algorithms the assertion verifier allows (RFC 7523 §2.2).
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    for name in ("token", "revocation", "introspection"):
        algorithms = document[f"{name}_endpoint_auth_signing_alg_values_supported"]
        assert algorithms == list(client_auth.ASSERTION_SIGNING_ALGORITHMS)
        assert "none" not in algorithms and not any(alg.startswith("HS") for alg in algorithms)
    assert "client_credentials" in document["grant_types_supported"]
    # The registration endpoint answers (RFC 7591 §3): a bad redirect URI is refused, not a 404.
    path = urlsplit(document["registration_endpoint"]).path
    response = Client().post(
        path, json.dumps({"redirect_uris": ["http://evil.example/cb"]}), "application/json"
    )
    assert response.status_code == 400, response.content


def test_every_advertised_endpoint_answers_as_its_specification_says(default_clients: None) -> None:
    document = metadata()
    http = Client()

    def path(name: str) -> str:
        return urlsplit(document[name]).path

    assert "keys" in json.loads(http.get(path("jwks_uri")).content)
    assert http.get(path("userinfo_endpoint")).status_code == 401  # OIDC Core §5.3.3, RFC 6750 §3
    assert (
        form_post(path("revocation_endpoint"), {"token": "x", "client_id": "cells-client"}).status_code == 200
    )
    assert form_post(path("introspection_endpoint"), {"token": "x"}).status_code == 401  # RFC 7662 §2.1
    assert http.get(path("end_session_endpoint")).status_code in (200, 302)  # RP-Initiated Logout §2
    assert form_post(path("pushed_authorization_request_endpoint"), {}).status_code in (400, 401)  # RFC 9126


def test_the_id_token_userinfo_and_authorization_response_match_the_document(
    signed_in: Client, default_clients: None
) -> None:
    """claims_supported holds every claim of an ID token and of userinfo; the ID token is signed
    with an advertised algorithm; the response carries iss (RFC 9207); sub is public (one value
    for every client, Discovery §3 subject_types_supported)."""
    document = metadata()
    assert document["subject_types_supported"] == ["public"]
    subjects = set()
    for client_id, redirect_uri in (
        ("cells-client", REDIRECT_URI),
        ("cells-sync", "http://localhost:3640/servers/callback"),
    ):
        verifier, challenge = pkce_pair()
        params = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid email profile",
            "state": "st4te",
            "nonce": "n0nce",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response = Browser(http=signed_in).authorize(params)  # confirms "Continue as alice"
        assert response.status_code == 302, response.content
        answer = query(response["Location"])
        assert document["authorization_response_iss_parameter_supported"] is True
        assert answer["iss"] == document["issuer"]
        tokens = json.loads(
            token_request(
                {
                    "grant_type": "authorization_code",
                    "code": answer["code"],
                    "redirect_uri": redirect_uri,
                    "client_id": client_id,
                    "code_verifier": verifier,
                }
            ).content
        )
        header_segment, payload_segment, _sig = tokens["id_token"].split(".")
        header = json.loads(base64.urlsafe_b64decode(header_segment + "=="))
        claims = json.loads(base64.urlsafe_b64decode(payload_segment + "=="))
        assert header["alg"] in document["id_token_signing_alg_values_supported"]
        userinfo = json.loads(
            Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}").content
        )
        assert set(claims) <= set(document["claims_supported"]), set(claims) - set(
            document["claims_supported"]
        )
        assert set(userinfo) <= set(document["claims_supported"]), set(userinfo)
        assert claims["sid"] and claims["nonce"] == "n0nce"
        subjects.add(claims["sub"])
    assert len(subjects) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"request": "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."},  # request_parameter_supported false
        {"request_uri": "https://attacker.example/request.jwt"},  # request_uri_parameter_supported false
    ],
)
def test_request_objects_are_refused_as_advertised(signed_in: Client, params: dict[str, str]) -> None:
    document = metadata()
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    assert authorization_error(signed_in, **params) is not None
