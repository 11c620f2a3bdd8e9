"""Service accounts: the client credentials grant (RFC 6749 §4.4) for confidential clients.

A client token's ``sub`` is the client (RFC 9068 §2.2) and it acts for no user: the bearer kit
gives ``AnonymousUser``, introspection names no user, and the API refuses operations that act
for a user with a 403 that says why. Authlib drives the grant over real HTTP with
``client_secret_basic``, ``client_secret_post`` and ``private_key_jwt``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from django.test import Client as HttpClient
from jwcrypto import jwk

from cells_oidc.internal import tokens
from cells_oidc.internal.api_views import CLIENT_TOKEN_REFUSAL
from cells_oidc.models import Client, ClientPolicy
from tests.conftest import basic, form_post, token_request

pytestmark = pytest.mark.django_db

SECRET = "s3rvice-account-secret-of-a-good-length"
TIMEOUT = 10


def service_client(client_id: str = "backup-bot", *, method: str = "", **policy: Any) -> Client:
    client = Client.objects.create(
        client_id=client_id,
        name="Backup bot",
        client_type=Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        client_secret=SECRET,
        hash_client_secret=True,
        redirect_uris="",
        algorithm=Client.RS256_ALGORITHM,
    )
    ClientPolicy.objects.create(application=client, token_endpoint_auth_method=method, **policy)
    return client


def client_token(scope: str = "pydio profile", **headers: str) -> dict[str, Any]:
    response = token_request(
        {"grant_type": "client_credentials", "scope": scope},
        **(headers or {"HTTP_AUTHORIZATION": basic("backup-bot", SECRET)}),
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_a_client_token_names_the_client_as_its_subject_and_no_user(db: Any) -> None:
    service_client()
    answer = client_token()
    assert "refresh_token" not in answer  # RFC 6749 §4.4.3: SHOULD NOT
    assert "id_token" not in answer  # no user signed in
    claims = tokens.verify(answer["access_token"], typ=tokens.ACCESS_TOKEN_TYP)
    assert claims["sub"] == "backup-bot" == claims["client_id"]  # RFC 9068 §2.2
    assert "auth_time" not in claims and "sid" not in claims
    assert set(claims["scope"].split()) == {"pydio", "profile"}


def test_introspection_of_a_client_token_names_the_client_and_no_user(db: Any) -> None:
    service_client()
    token = client_token()["access_token"]
    service_client("rs-introspector")
    response = form_post(
        "/oidc/oauth2/introspect", {"token": token}, HTTP_AUTHORIZATION=basic("rs-introspector", SECRET)
    )
    data = json.loads(response.content)
    assert data["active"] is True
    assert data["sub"] == "backup-bot" == data["client_id"]
    assert "username" not in data


def test_the_api_refuses_user_operations_to_a_client_token_and_says_why(db: Any) -> None:
    service_client()
    token = client_token()["access_token"]
    http = HttpClient()
    for path in ("/a/tokens", "/a/user/me", "/a/personal-tokens"):
        response = http.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 403, (path, response.content)
        assert response["Content-Type"].startswith("application/json")
        assert CLIENT_TOKEN_REFUSAL in response.content.decode()
    minted = http.post(
        "/a/personal-tokens", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert minted.status_code == 403
    assert CLIENT_TOKEN_REFUSAL in minted.content.decode()


def test_the_bearer_kit_gives_a_client_token_no_user(db: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    from cells_oidc.internal.resource import authenticate_token

    service_client()
    user, info = authenticate_token(client_token()["access_token"])
    assert isinstance(user, AnonymousUser)
    assert info.for_client and info.subject == "backup-bot" and info.client_id == "backup-bot"


def test_a_client_secret_is_accepted_only_by_the_method_the_policy_names(db: Any) -> None:
    service_client(method="client_secret_basic")
    by_body = {"client_id": "backup-bot", "client_secret": SECRET}
    refused = token_request({"grant_type": "client_credentials", **by_body})
    assert refused.status_code == 401
    assert json.loads(refused.content)["error"] == "invalid_client"
    assert client_token()  # Basic works
    ClientPolicy.objects.filter(application__client_id="backup-bot").update(
        token_endpoint_auth_method="client_secret_post"
    )
    refused = token_request(
        {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic("backup-bot", SECRET)
    )
    assert json.loads(refused.content)["error"] == "invalid_client"
    assert token_request({"grant_type": "client_credentials", **by_body}).status_code == 200


def test_a_wrong_secret_and_a_user_facing_client_get_no_client_token(default_clients: None) -> None:
    service_client()
    wrong = token_request({"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic("backup-bot", "x"))
    assert wrong.status_code == 401
    # A Cells (public, authorization code) client cannot obtain a token for itself.
    public = token_request({"grant_type": "client_credentials", "client_id": "cells-client"})
    assert public.status_code in (400, 401)
    assert json.loads(public.content)["error"] in ("unauthorized_client", "invalid_client")


def test_discovery_advertises_service_accounts_only_when_enabled(db: Any, settings: Any) -> None:
    def metadata() -> dict[str, Any]:
        return json.loads(HttpClient().get("/oidc/.well-known/openid-configuration").content)

    off = metadata()
    assert "client_credentials" not in off["grant_types_supported"]
    assert "private_key_jwt" not in off["token_endpoint_auth_methods_supported"]
    assert "token_endpoint_auth_signing_alg_values_supported" not in off
    settings.CELLS_OIDC_SERVICE_ACCOUNTS = True
    on = metadata()
    assert "client_credentials" in on["grant_types_supported"]
    for name in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in on[f"{name}_endpoint_auth_methods_supported"]
        assert on[f"{name}_endpoint_auth_signing_alg_values_supported"] == ["RS256", "ES256", "EdDSA"]
    assert "client_secret_jwt" not in json.dumps(on)  # not supported: secrets are stored hashed
    assert "HS256" not in json.dumps(on)


# ---- Authlib, an independent client, over real HTTP ----------------------------------------------
@pytest.fixture
def provider(live_server: Any, settings: Any) -> str:
    settings.CELLS_OIDC_SITE_URL = live_server.url
    settings.CELLS_OIDC_SERVICE_ACCOUNTS = True
    return live_server.url


def resource_call(provider: str, token: str) -> requests.Response:
    return requests.get(f"{provider}/a/tokens", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_obtains_a_client_token_with_a_secret(provider: str, method: str) -> None:
    service_client(method=method)
    metadata = requests.get(f"{provider}/oidc/.well-known/openid-configuration", timeout=TIMEOUT).json()
    assert method in metadata["token_endpoint_auth_methods_supported"]
    session = OAuth2Session("backup-bot", SECRET, scope="pydio", token_endpoint_auth_method=method)
    token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer"
    assert tokens.verify(token["access_token"], typ=tokens.ACCESS_TOKEN_TYP)["sub"] == "backup-bot"
    refused = resource_call(provider, token["access_token"])
    assert refused.status_code == 403 and CLIENT_TOKEN_REFUSAL in refused.text


@pytest.mark.django_db(transaction=True)
def test_authlib_obtains_a_client_token_with_private_key_jwt(provider: str) -> None:
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="bot-2026")
    service_client(method="private_key_jwt", jwks=json.dumps({"keys": [key.export_public(as_dict=True)]}))
    metadata = requests.get(f"{provider}/oidc/.well-known/openid-configuration", timeout=TIMEOUT).json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "RS256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    pem = key.export_to_pem(private_key=True, password=None)

    def session() -> OAuth2Session:
        # Authlib's assertions live an hour by default; this server takes at most 5 minutes. (Authlib
        # writes the jti it draws into the claims it is given: a fresh dict per session.)
        auth = PrivateKeyJWT(
            metadata["token_endpoint"],
            alg="RS256",
            claims={"exp": int(time.time()) + 120},
            headers={"kid": "bot-2026"},
        )
        return OAuth2Session("backup-bot", pem, scope="pydio", token_endpoint_auth_method=auth)

    first = session()
    token = first.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    claims = tokens.verify(token["access_token"], typ=tokens.ACCESS_TOKEN_TYP)
    assert claims["sub"] == "backup-bot"
    again = session().fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert again["access_token"] != token["access_token"]
    # The first session signs with the jti it drew before: a replay, refused (RFC 7523 §3).
    with pytest.raises(OAuthError, match="invalid_client"):
        first.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    # The secret of a private_key_jwt client is refused: the policy names one method.
    by_secret = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("backup-bot", SECRET),
        timeout=TIMEOUT,
    )
    assert by_secret.status_code == 401
    assert by_secret.json()["error"] == "invalid_client"
