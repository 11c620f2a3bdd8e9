"""cells_oidc.internal.client_auth: one reader of HTTP Basic client credentials (RFC 6749 §2.3.1).

Every client endpoint (token, revocation, introspection, device authorization) reads the header
through it, so a malformed one gets the same answer everywhere: ``invalid_client`` (RFC 6749
§5.2), never a 500 — a NUL reaching a query is a ``DataError`` on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cells_oidc.internal.client_auth import MAX_CREDENTIAL_LENGTH, basic_credentials
from tests.conftest import basic, form_post

pytestmark = pytest.mark.django_db

DEVICE_AUTH = "/oidc/oauth2/device/auth"
CLIENT_ENDPOINTS = {
    "token": ("/oidc/oauth2/token", {"grant_type": "client_credentials"}),
    "revoke": ("/oidc/oauth2/revoke", {"token": "x"}),
    "introspect": ("/oidc/oauth2/introspect", {"token": "x"}),
    "device": (DEVICE_AUTH, {"scope": "openid"}),
}


def raw_basic(decoded: str) -> str:
    return "Basic " + base64.b64encode(decoded.encode()).decode()


MALFORMED = {
    "nul-id-and-secret": "Basic ADoA",  # base64("\x00:\x00"): a 500 on PostgreSQL before
    "nul-in-id": raw_basic("cells-client\x00:"),
    "nul-in-secret": raw_basic("cells-client:\x00"),
    "encoded-nul-in-id": raw_basic("cells-client%00:"),
    "control-in-id": raw_basic("cells-client\x01:"),
    "newline-in-secret": raw_basic("cells-client:a\nb"),
    "del-in-secret": raw_basic("cells-client:\x7f"),
    "long-id": raw_basic("c" * (MAX_CREDENTIAL_LENGTH + 1) + ":"),
    "long-secret": raw_basic("cells-client:" + "s" * (MAX_CREDENTIAL_LENGTH + 1)),
}


@pytest.mark.parametrize("endpoint", CLIENT_ENDPOINTS)
@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_basic_credentials_are_invalid_client_at_every_client_endpoint(
    default_clients: None, endpoint: str, header: str
) -> None:
    path, body = CLIENT_ENDPOINTS[endpoint]
    response = form_post(path, body, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert json.loads(response.content)["error"] == "invalid_client"
    # RFC 6749 §5.2: a client that tried the Authorization header is challenged for its scheme.
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_a_nul_in_the_secret_no_longer_names_the_client(default_clients: None) -> None:
    """The device endpoint used to take ``cells-client:\\x00`` for ``cells-client`` and go on; the
    well-formed header still names the client (oauthlib then wants the public client's id in the
    body, RFC 8628 §3.1), the one with a NUL is nobody's."""
    named = form_post(DEVICE_AUTH, {"scope": "openid"}, HTTP_AUTHORIZATION=basic("cells-client"))
    assert named.status_code == 400, named.content
    assert json.loads(named.content)["error"] == "invalid_request"
    nul = form_post(DEVICE_AUTH, {"scope": "openid"}, HTTP_AUTHORIZATION=raw_basic("cells-client:\x00"))
    assert nul.status_code == 401, nul.content
    assert json.loads(nul.content)["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (base64.b64encode(b"cells%2Dsync:a%3Ab+c").decode(), ("cells-sync", "a:b c")),  # §2.3.1 form-decoded
        (base64.b64encode(b"cells-sync:").decode(), ("cells-sync", "")),
        (base64.b64encode(b":secret").decode(), None),
        (base64.b64encode(b"no-colon").decode(), None),
        ("not base64!", None),
        (base64.b64encode(b"\xff:\xfe").decode(), None),
        ("", None),
        (None, None),
    ],
)
def test_basic_credentials_parses_rfc_6749_form_encoding(encoded: Any, expected: Any) -> None:
    assert basic_credentials(encoded) == expected
