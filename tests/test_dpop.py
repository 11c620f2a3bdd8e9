"""DPoP (RFC 9449) through HTTP: the token endpoint binds tokens to the proof's key, the resource
servers (DRF, the decorator, userinfo) check the proof, and every refusal an attacker would meet."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import pytest
from django.contrib import admin
from django.http import JsonResponse
from django.test import Client
from django.urls import include, path
from jwcrypto import jwk, jws, jwt

from cells_oidc.decorators import bearer_token_required
from cells_oidc.models import ClientPolicy, TokenFamily
from tests.conftest import SCOPE, Browser, code_from, form_post, pkce_pair, token_request


@bearer_token_required
def plain_me(request: Any) -> JsonResponse:
    return JsonResponse({"sub": request.auth.subject})


urlpatterns = [
    path("", include("cells_oidc.urls")),
    path("a/", include("cells_oidc.api.urls")),
    path("plain/me", plain_me),
    path("admin/", admin.site.urls),
]
pytestmark = pytest.mark.urls(__name__)

REDIRECT_URI = "http://localhost:3640/servers/callback"
TOKEN_URL = "http://testserver/oidc/oauth2/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    """A client's DPoP key pair and its proofs."""

    def __init__(self, kty: str = "EC") -> None:
        if kty == "EC":
            self.key, self.alg = jwk.JWK.generate(kty="EC", crv="P-256"), "ES256"
        else:
            self.key, self.alg = jwk.JWK.generate(kty="RSA", size=2048), "RS256"
        self.jkt = self.key.thumbprint()

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        token: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {
            "htm": htm,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
            "jti": jti or str(uuid.uuid4()),
        }
        if token is not None:
            body["ath"] = b64(hashlib.sha256(token.encode()).digest())
        body.update(claims)
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.export_public(as_dict=True)}
        head.update(header or {})
        signed = jwt.JWT(header=head, claims=body)
        signed.make_signed_token(self.key)
        return signed.serialize()

    def raw_proof(self, members: bytes) -> str:
        """A proof whose claims set is written by hand: ``members`` then a good htu, iat and jti."""
        payload = (
            b"{"
            + members
            + b', "htu": "%s", "iat": %d, "jti": "%s"}'
            % (
                TOKEN_URL.encode(),
                int(time.time()),
                uuid.uuid4().hex.encode(),
            )
        )
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.export_public(as_dict=True)}
        signed = jws.JWS(payload)
        signed.add_signature(self.key, protected=json.dumps(head))
        return signed.serialize(compact=True)


def sign_in(browser: Browser, client_id: str = "cells-sync") -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": "0123456789abcdef",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return code_from(response, REDIRECT_URI)["code"], verifier


def exchange(code: str, verifier: str, proof: str | None = None, client_id: str = "cells-sync") -> Any:
    headers = {"HTTP_DPOP": proof} if proof else {}
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    return token_request(data, **headers)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def bound(default_clients: None, alice: Any, browser: Browser) -> tuple[Key, dict[str, Any]]:
    """A DPoP-bound sign-in of the public client cells-sync: its key and token response."""
    key = Key()
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.content
    return key, response.json()


def api(path_: str, token: str, proof: str | None, scheme: str = "DPoP", method: str = "get") -> Any:
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {token}"}
    if proof is not None:
        headers["HTTP_DPOP"] = proof
    return getattr(Client(), method)(path_, **headers)


# ---- the token endpoint ----------------------------------------------------------------------
def test_a_proof_binds_the_access_token_and_the_public_clients_refresh_token(
    bound: tuple[Key, dict[str, Any]],
) -> None:
    key, tokens = bound
    assert tokens["token_type"] == "DPoP"
    assert claims_of(tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    assert TokenFamily.objects.get().dpop_jkt == key.jkt
    # RFC 9449 §5: the refresh needs a proof of the same key; without one (or with another key's)
    # it is invalid_grant and the refresh token is not spent.
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "cells-sync",
    }
    response = token_request(refresh)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    response = token_request(refresh, HTTP_DPOP=Key().proof("POST", TOKEN_URL))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    response = token_request(refresh, HTTP_DPOP=key.proof("POST", TOKEN_URL))
    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "DPoP"
    assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def test_without_a_proof_the_cells_clients_get_bearer_tokens(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    code, verifier = sign_in(browser)
    response = exchange(code, verifier)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(response.json()["access_token"])
    ok = Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda k: k.proof("GET", TOKEN_URL), id="wrong-htm"),
        pytest.param(lambda k: k.proof("POST", "http://testserver/oidc/oauth2/revoke"), id="wrong-htu"),
        pytest.param(lambda k: k.proof("POST", "http://evil.example/oidc/oauth2/token"), id="other-host"),
        pytest.param(lambda k: k.proof("POST", TOKEN_URL, iat=time.time() - 3600), id="stale-iat"),
        pytest.param(lambda k: k.proof("POST", TOKEN_URL, iat=time.time() + 3600), id="future-iat"),
        pytest.param(lambda k: k.proof("POST", TOKEN_URL, header={"typ": "JWT"}), id="wrong-typ"),
        pytest.param(
            lambda k: k.proof("POST", TOKEN_URL, header={"jwk": Key().key.export_public(as_dict=True)}),
            id="signed-by-another-key",
        ),
        pytest.param(
            lambda k: k.proof("POST", TOKEN_URL, header={"jwk": k.key.export_private(as_dict=True)}),
            id="private-jwk",
        ),
        pytest.param(lambda k: "not.a.proof", id="garbage"),
        # Half a surrogate pair: valid JSON, not Unicode text; its jti was hashed as UTF-8 (a 500).
        pytest.param(lambda k: k.proof("POST", TOKEN_URL, jti="\ud800"), id="jti-unpaired-surrogate"),
        pytest.param(lambda k: k.proof("POST", TOKEN_URL + "\udc00"), id="htu-unpaired-surrogate"),
        pytest.param(lambda k: k.raw_proof(b'"htm": "GET", "htm": "POST"'), id="htm-named-twice"),
    ],
)
def test_bad_proofs_at_the_token_endpoint_are_invalid_dpop_proof(
    default_clients: None, alice: Any, browser: Browser, mutate: Any
) -> None:
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, mutate(Key()))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"
    # The code was not spent by the refused request.
    assert exchange(code, verifier).status_code == 200


def test_an_hmac_or_unsigned_proof_is_refused(default_clients: None, alice: Any, browser: Browser) -> None:
    secret = jwk.JWK.generate(kty="oct", size=256)
    forged = jwt.JWT(
        header={"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": secret.get("k")}},
        claims={"htm": "POST", "htu": TOKEN_URL, "iat": int(time.time()), "jti": "x"},
    )
    forged.make_signed_token(secret)
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, forged.serialize())
    assert response.json()["error"] == "invalid_dpop_proof"


def test_a_replayed_proof_is_refused(default_clients: None, alice: Any, browser: Browser) -> None:
    key = Key()
    proof = key.proof("POST", TOKEN_URL)
    code, verifier = sign_in(browser)
    assert exchange(code, verifier, proof).status_code == 200
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, proof)
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
    assert "used before" in response.json()["error_description"]


def test_htu_is_compared_without_query_and_with_a_normalised_host(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, Key().proof("POST", "HTTP://TestServer:80/oidc/oauth2/token?x=1#f"))
    assert response.status_code == 200, response.content


def test_a_client_that_requires_dpop_gets_no_token_without_a_proof(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    ClientPolicy.objects.filter(application__client_id="cells-sync").update(require_dpop=True)
    code, verifier = sign_in(browser)
    response = exchange(code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
    assert exchange(code, verifier, Key().proof("POST", TOKEN_URL)).status_code == 200


def test_server_nonces_when_configured(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_DPOP_NONCE = True
    key = Key()
    code, verifier = sign_in(browser)
    response = exchange(code, verifier, key.proof("POST", TOKEN_URL))
    assert response.status_code == 400 and response.json()["error"] == "use_dpop_nonce"
    nonce = response["DPoP-Nonce"]
    assert exchange(code, verifier, key.proof("POST", TOKEN_URL, nonce="stale")).json()["error"] == (
        "use_dpop_nonce"
    )
    assert exchange(code, verifier, key.proof("POST", TOKEN_URL, nonce=nonce)).status_code == 200


# ---- resource servers ---------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/a/user/me", "/plain/me", "/oidc/userinfo"])
def test_resource_servers_accept_the_dpop_scheme_with_a_proof_of_the_token(
    bound: tuple[Key, dict[str, Any]], url: str
) -> None:
    key, tokens = bound
    token = tokens["access_token"]
    full = f"http://testserver{url}"
    assert api(url, token, key.proof("GET", full, token=token)).status_code == 200
    refusals = {
        "plain Bearer": api(url, token, None, scheme="Bearer"),
        "no proof": api(url, token, None),
        "wrong htu": api(url, token, key.proof("GET", "http://testserver/elsewhere", token=token)),
        "wrong htm": api(url, token, key.proof("POST", full, token=token)),
        "wrong ath": api(url, token, key.proof("GET", full, token="another-token")),
        "no ath": api(url, token, key.proof("GET", full)),
        "another key": api(url, token, Key().proof("GET", full, token=token)),
        "stale iat": api(url, token, key.proof("GET", full, token=token, iat=time.time() - 600)),
    }
    for what, response in refusals.items():
        assert response.status_code == 401, what
        challenge = response["WWW-Authenticate"]
        assert challenge.startswith("DPoP "), (what, challenge)
        assert "Bearer realm=" in challenge, what
    assert 'error="invalid_token"' in refusals["plain Bearer"]["WWW-Authenticate"]
    assert 'error="invalid_dpop_proof"' in refusals["another key"]["WWW-Authenticate"]
    # A proof is used once (RFC 9449 §11.1), at resource servers too.
    proof = key.proof("GET", full, token=token)
    assert api(url, token, proof).status_code == 200
    assert api(url, token, proof).status_code == 401


def test_a_bearer_token_is_not_accepted_with_the_dpop_scheme(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    code, verifier = sign_in(browser)
    token = exchange(code, verifier).json()["access_token"]
    key = Key()
    response = api("/a/user/me", token, key.proof("GET", "http://testserver/a/user/me", token=token))
    assert response.status_code == 401


def test_introspection_reports_the_binding(bound: tuple[Key, dict[str, Any]]) -> None:
    from cells_oidc.models import Client as OAuthClient

    key, tokens = bound
    OAuthClient.objects.create(
        client_id="rs",
        client_secret="rs-secret",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        name="resource server",
    )
    response = form_post(
        "/oidc/oauth2/introspect",
        {"token": tokens["access_token"], "client_id": "rs", "client_secret": "rs-secret"},
    )
    data = response.json()
    assert data["active"] is True
    assert data["cnf"] == {"jkt": key.jkt}
    assert data["token_type"] == "DPoP"


def test_discovery_names_the_algorithms_only_when_enabled(default_clients: None, settings: Any) -> None:
    document = Client().get("/oidc/.well-known/openid-configuration").json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "RS256", "EdDSA"]
    settings.CELLS_OIDC_DPOP_ENABLED = False
    document = Client().get("/oidc/.well-known/openid-configuration").json()
    assert "dpop_signing_alg_values_supported" not in document


def test_the_client_command_sets_require_dpop_and_require_par(default_clients: None) -> None:
    from io import StringIO

    from django.core.management import call_command

    call_command(
        "cells_oidc_client", "set", "cells-sync", "--require-dpop", "--require-par", stdout=StringIO()
    )
    policy = ClientPolicy.objects.get(application__client_id="cells-sync")
    assert policy.require_dpop and policy.require_pushed_authorization_requests
    out = StringIO()
    call_command("cells_oidc_client", "show", "cells-sync", stdout=out)
    assert "DPoP required" in out.getvalue() and "PAR required" in out.getvalue()
    call_command("cells_oidc_client", "set", "cells-sync", "--no-require-dpop", stdout=StringIO())
    assert not ClientPolicy.objects.get(application__client_id="cells-sync").require_dpop


def test_the_admin_shows_the_policy_fields(default_clients: None, admin_client: Any) -> None:
    from cells_oidc.models import Client as OAuthClient

    client = OAuthClient.objects.get(client_id="cells-sync")
    page = admin_client.get(f"/admin/cells_oidc/client/{client.pk}/change/")
    assert page.status_code == 200
    assert b"require_dpop" in page.content
    assert b"require_pushed_authorization_requests" in page.content


def test_a_browser_client_may_send_a_proof_and_read_the_nonce(default_clients: None) -> None:
    # cells-sync exchanges its code from JavaScript served on http://localhost:36xx: CORS must let the
    # DPoP header through (RFC 9449 §4.1) and expose DPoP-Nonce (§8) to the script.
    origin = "http://localhost:3640"
    preflight = Client().options(
        "/oidc/oauth2/token",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, dpop",
    )
    assert preflight["Access-Control-Allow-Origin"] == origin
    assert "dpop" in preflight["Access-Control-Allow-Headers"].lower().replace(" ", "").split(",")
    answer = Client().post(
        "/oidc/oauth2/token",
        {"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": "cells-sync"},
        HTTP_ORIGIN=origin,
    )
    assert answer["Access-Control-Allow-Origin"] == origin
    assert "DPoP-Nonce" in answer["Access-Control-Expose-Headers"]
