"""Bearer-token verification for APIs in the provider's own site (cells_oidc.internal.resource and friends).

Real tokens come from real sign-ins through the test client; forged ones are built here byte by
byte, each breaking one rule, and sent to small DRF and plain-Django API views of this module
(it is its own URLconf), as an attacker would send them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import include, path
from django.utils import timezone
from django.views import View
from jwcrypto import jwk
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cells_oidc.api.authentication import BearerTokenAuthentication
from cells_oidc.api.permissions import HasScope
from cells_oidc.decorators import bearer_token_required
from tests.kit import SCOPE, Browser, exchange, refresh, sign_in

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_resource")]

ISSUER = "http://testserver/oidc/"
AUDIENCE = "http://testserver"
OOB = "http://testserver/oauth2/oob"

# The deny-list is written when a revocation commits (revocation.py): these tests commit for real.
REAL_COMMITS = pytest.mark.django_db(transaction=True)


# ---- the APIs under test -----------------------------------------------------------------------
def describe(request: Any) -> dict[str, Any]:
    info = request.auth
    return {
        "authenticated": bool(request.user.is_authenticated),
        "user": request.user.get_username() if request.user.is_authenticated else None,
        "user_type": request.user.__class__.__name__,  # a lazily loaded user says its class
        "kind": info.kind,
        "subject": info.subject,
        "client_id": info.client_id,
        "scopes": sorted(info.scopes),
        "token_id": info.token_id,
        "expires_at": info.expires_at,
    }


class MeView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(describe(request))

    def post(self, request: Request) -> Response:
        return Response(describe(request))


class PydioView(MeView):
    permission_classes = [HasScope("pydio")]


class WriteView(MeView):
    permission_classes = [HasScope("files:write", "pydio")]


class AnyTokenView(MeView):
    permission_classes = [HasScope("pydio") | HasScope("files:write")]


class TokenOnlyView(MeView):
    """Authenticated by a token, whoever it acts for (a client's own token included)."""

    permission_classes = [HasScope("openid")]


@bearer_token_required
def plain_me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@bearer_token_required(scopes=["files:write"])
def plain_write(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@bearer_token_required(scopes=["openid"])
def plain_openid(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@bearer_token_required(scopes="pydio")
async def plain_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


class PlainClassView(View):
    def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse(describe(request))


urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("cells_oidc.urls")),
    path("plain/class", bearer_token_required(PlainClassView.as_view(), scopes=["pydio"])),
    path("api/me", MeView.as_view()),
    path("api/pydio", PydioView.as_view()),
    path("api/write", WriteView.as_view()),
    path("api/any", AnyTokenView.as_view()),
    path("api/token-only", TokenOnlyView.as_view()),
    path("plain/me", plain_me),
    path("plain/write", plain_write),
    path("plain/async", plain_async),
    path("plain/openid", plain_openid),
]


# ---- helpers -----------------------------------------------------------------------------------
def api_get(path_: str, token: str | None = None, **extra: Any) -> Any:
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client(enforce_csrf_checks=True).get(path_, **extra)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def rs256(private_key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


DROP = object()


class Forge:
    """Builds JWTs like ours, with any header, claim or signature changed."""

    def __init__(self, subject: str) -> None:
        from cells_oidc.internal import keys

        active = keys.active_key()
        self.kid = active.kid
        self.private_key: rsa.RSAPrivateKey = active.key.get_op_key("sign")
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.subject = subject

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": self.subject,
            "aud": AUDIENCE,
            "client_id": "cells-client",
            "scope": "openid pydio",
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 600,
        }
        return self._apply(claims, changes)

    def header(self, **changes: Any) -> dict[str, Any]:
        return self._apply({"alg": "RS256", "kid": self.kid, "typ": "at+jwt"}, changes)

    @staticmethod
    def _apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        for name, value in changes.items():
            if value is DROP:
                base.pop(name, None)
            else:
                base[name] = value
        return base

    def token(
        self,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        *,
        signer: Callable[[bytes], bytes] | None = None,
        raw_payload: str | None = None,
    ) -> str:
        head = b64json(self.header() if header is None else header)
        body = b64json(self.claims() if claims is None else claims) if raw_payload is None else raw_payload
        signing_input = f"{head}.{body}".encode()
        signature = (signer or rs256(self.private_key))(signing_input)
        return f"{head}.{body}.{b64(signature)}"


@pytest.fixture
def forge(alice: Any) -> Forge:
    return Forge(str(alice.pk))


def attacker_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    public = json.loads(key.export_public())
    return key.get_op_key("sign"), {**public, "kid": key.thumbprint()}


def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401, response.content
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="'), challenge
    assert 'error="invalid_token"' in challenge, challenge


# ---- a real token ------------------------------------------------------------------------------
def test_a_real_access_token_authenticates_its_user(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    claims = segment(tokens["access_token"], 1)
    response = api_get("/api/me", tokens["access_token"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user"] == "alice"
    assert body["user_type"] == type(alice).__name__
    assert body["kind"] == "jwt"
    assert body["subject"] == str(alice.pk)
    assert body["client_id"] == "cells-client"
    assert set(body["scopes"]) == set(SCOPE.split())
    assert body["token_id"] == claims["jti"]
    assert body["expires_at"] == claims["exp"]


def test_plain_django_views_take_the_same_token(default_clients: None, alice: Any, browser: Browser) -> None:
    access = sign_in(browser)["access_token"]
    for url in ("/plain/me", "/plain/async"):
        response = api_get(url, access)
        assert response.status_code == 200, response.content
        assert response.json()["user"] == "alice"
    # A bearer-token view needs no CSRF token: browsers never attach the header by themselves.
    for url in ("/plain/me", "/plain/class"):
        response = Client(enforce_csrf_checks=True).post(url, HTTP_AUTHORIZATION=f"Bearer {access}")
        assert response.status_code == 200, url
        assert response.json()["user"] == "alice"
    assert Client(enforce_csrf_checks=True).post("/plain/class").status_code == 401


def test_verification_costs_one_query_for_the_user_and_none_without_it(
    default_clients: None, alice: Any, browser: Browser, django_assert_num_queries: Any, settings: Any
) -> None:
    access = sign_in(browser)["access_token"]
    api_get("/api/me", access)  # warm-up: imports, the key's public half
    with django_assert_num_queries(1):
        assert api_get("/api/me", access).status_code == 200
    settings.CELLS_OIDC_RESOURCE_LOAD_USER = False
    with django_assert_num_queries(0):
        response = api_get("/api/me", access)
    assert response.status_code == 200
    assert response.json()["user_type"] == "TokenUser"
    assert response.json()["user"] == str(alice.pk)


def test_a_token_of_an_inactive_or_deleted_user_is_refused(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    access = sign_in(browser)["access_token"]
    alice.is_active = False
    alice.save()
    assert_invalid_token(api_get("/api/me", access))
    alice.is_active = True
    alice.save()
    assert api_get("/api/me", access).status_code == 200
    alice.delete()
    assert_invalid_token(api_get("/api/me", access))


def test_an_id_token_is_not_an_access_token(default_clients: None, alice: Any, browser: Browser) -> None:
    tokens = sign_in(browser)
    assert segment(tokens["id_token"], 0)["typ"] == "JWT"
    for url in ("/api/me", "/plain/me"):
        response = api_get(url, tokens["id_token"])
        assert_invalid_token(response)
        assert "not an access token" in response.content.decode()


# ---- RFC 6750 §2.1 header parsing and §3 challenges ------------------------------------------------
def test_without_a_token_the_challenge_has_no_error_code(default_clients: None, settings: Any) -> None:
    settings.CELLS_OIDC_RESOURCE_REALM = 'Files "API"'
    for url in ("/api/me", "/plain/me"):
        response = api_get(url)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="Files \\"API\\""'
    # Another scheme is not ours: DRF's answer is the plain challenge again.
    response = api_get("/api/me", HTTP_AUTHORIZATION="Basic YWxpY2U6cGFzcw==")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="Files \\"API\\""'


def test_the_scheme_is_case_insensitive(default_clients: None, alice: Any, browser: Browser) -> None:
    access = sign_in(browser)["access_token"]
    for scheme in ("bearer", "BEARER", "bEaReR"):
        response = api_get("/api/me", HTTP_AUTHORIZATION=f"{scheme} {access}")
        assert response.status_code == 200, scheme
        assert api_get("/plain/me", HTTP_AUTHORIZATION=f"{scheme} {access}").status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer {t} {t}", "Bearer {t},", 'Bearer "{t}"', "Bearer t\u00f6ken", "Bearer a=b"],
)
def test_a_malformed_bearer_header_is_invalid_request(
    default_clients: None, alice: Any, browser: Browser, header: str
) -> None:
    access = sign_in(browser)["access_token"]
    value = header.replace("{t}", access)
    for url in ("/api/me", "/plain/me"):
        response = api_get(url, HTTP_AUTHORIZATION=value)
        assert response.status_code == 400, (url, value, response.content)
        assert 'error="invalid_request"' in response["WWW-Authenticate"]


def test_a_huge_token_is_refused_before_any_work(default_clients: None) -> None:
    # A token longer than any we issue is an invalid token (RFC 6750 §3.1), refused on its length
    # alone, by the APIs as by userinfo.
    for url in ("/api/me", "/plain/me"):
        response = api_get(url, "a" * 20000)
        assert_invalid_token(response)
        assert "token too long" in response["WWW-Authenticate"]


def test_query_string_tokens_are_refused_unless_allowed(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    access = sign_in(browser)["access_token"]
    for url in ("/api/me", "/plain/me"):
        response = api_get(f"{url}?access_token={access}")
        assert response.status_code == 400, response.content
        assert 'error="invalid_request"' in response["WWW-Authenticate"]
    settings.CELLS_OIDC_RESOURCE_ALLOW_QUERY_TOKEN = True
    for url in ("/api/me", "/plain/me"):
        assert api_get(f"{url}?access_token={access}").status_code == 200
        # RFC 6750 §2: one method per request, one token.
        assert api_get(f"{url}?access_token={access}", access).status_code == 400
        assert api_get(f"{url}?access_token={access}&access_token={access}").status_code == 400
    assert_invalid_token(api_get(f"/api/me?access_token={access[:-2]}"))


def test_a_signed_in_browser_without_a_token_is_not_let_in(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    sign_in(browser)  # the browser now has a session with the provider
    for url in ("/api/me", "/plain/me"):
        response = browser.http.get(url)
        assert response.status_code == 401


# ---- forged tokens -------------------------------------------------------------------------------
def test_a_forged_token_with_every_rule_right_is_accepted(forge: Forge, settings: Any) -> None:
    """The control for every forgery below: the same builder, nothing broken, is accepted."""
    response = api_get("/api/me", forge.token())
    assert response.status_code == 200, response.content
    assert response.json()["user"] == "alice"
    # Variants the rules allow: typ spellings (RFC 9068 §4), aud as a list, times within the leeway.
    now = int(time.time())
    for token in (
        forge.token(header=forge.header(typ="application/at+jwt")),
        forge.token(header=forge.header(typ="AT+JWT")),
        forge.token(forge.claims(aud=["https://elsewhere.example", AUDIENCE])),
        forge.token(forge.claims(exp=now - 20)),
        forge.token(forge.claims(nbf=now + 20, iat=now + 20)),
        forge.token(forge.claims(scope=DROP)),
    ):
        assert api_get("/api/me", token).status_code == 200, segment(token, 0)


def _tampered(forge: Forge) -> str:
    head, _, signature = forge.token().split(".")
    return f"{head}.{b64json(forge.claims(sub='999999'))}.{signature}"


def _stripped(forge: Forge) -> str:
    head, body, _ = forge.token().split(".")
    return f"{head}.{body}."


def _alg_none(forge: Forge, alg: str = "none", signature: str = "") -> str:
    head = b64json(forge.header(alg=alg))
    return f"{head}.{b64json(forge.claims())}.{signature}"


def _embedded_jwk(forge: Forge, kid: str | None = None) -> str:
    private, public = attacker_key()
    header = forge.header(jwk=public, kid=kid or public["kid"])
    return forge.token(header=header, signer=rs256(private))


def _foreign(forge: Forge, parameter: str, value: Any) -> str:
    # Signed with *our* key, so only the header parameter itself can be the reason to refuse.
    return forge.token(header=forge.header(**{parameter: value}))


def _duplicate_sub(forge: Forge) -> str:
    claims = json.dumps(forge.claims())[:-1] + ', "sub": "999999"}'
    return forge.token(raw_payload=b64(claims.encode()))


def _nan_exp(forge: Forge) -> str:
    claims = json.dumps(forge.claims(exp=DROP))[:-1] + ', "exp": NaN}'
    return forge.token(raw_payload=b64(claims.encode()))


#: "what is broken|why it must be refused": how to build the token
FORGERIES: dict[str, Callable[[Forge], str]] = {
    "payload changed after signing|bad signature": _tampered,
    "signature stripped|unsigned token": _stripped,
    "alg none|unsigned token": _alg_none,
    "alg None with a signature|algorithm not allowed": lambda f: _alg_none(f, "None", b64(b"x" * 256)),
    "alg NONE|unsigned token": lambda f: _alg_none(f, "NONE"),
    "HS256 keyed with our public key PEM|algorithm not allowed": lambda f: f.token(
        header=f.header(alg="HS256"), signer=hs256(f.public_pem)
    ),
    "HS256 keyed with our public JWK|algorithm not allowed": lambda f: f.token(
        header=f.header(alg="HS256"),
        signer=hs256(json.dumps(json.loads(jwk.JWK.from_pyca(f.private_key.public_key()).export())).encode()),
    ),
    "RS512 with our key|algorithm not allowed": lambda f: f.token(
        header=f.header(alg="RS512"),
        signer=lambda data: f.private_key.sign(data, padding.PKCS1v15(), hashes.SHA512()),
    ),
    "PS256 with our key|algorithm not allowed": lambda f: f.token(
        header=f.header(alg="PS256"),
        signer=lambda data: f.private_key.sign(
            data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH), hashes.SHA256()
        ),
    ),
    "unknown kid, attacker's key|unknown key": lambda f: f.token(
        header=f.header(kid=attacker_key()[1]["kid"]), signer=rs256(attacker_key()[0])
    ),
    "our kid, attacker's key|bad signature": lambda f: f.token(signer=rs256(attacker_key()[0])),
    "kid path traversal|unknown key": lambda f: f.token(header=f.header(kid="../../../../../../dev/null")),
    "kid SQL injection|unknown key": lambda f: f.token(header=f.header(kid="x' OR '1'='1")),
    "kid with a NUL|unknown key": lambda f: f.token(header=f.header(kid=f.kid + "\x00")),
    "kid a number|missing key id": lambda f: f.token(header=f.header(kid=1)),
    "kid a list|missing key id": lambda f: f.token(header=f.header(kid=[f.kid])),
    "kid missing|missing key id": lambda f: f.token(header=f.header(kid=DROP)),
    "kid huge|missing key id": lambda f: f.token(header=f.header(kid="k" * 5000)),
    "embedded jwk|unsupported header parameter": _embedded_jwk,
    "embedded jwk under our kid|unsupported header parameter": lambda f: _embedded_jwk(f, kid=f.kid),
    "foreign jku|unsupported header parameter": lambda f: _foreign(
        f, "jku", "https://attacker.example/jwks.json"
    ),
    "foreign x5u|unsupported header parameter": lambda f: _foreign(
        f, "x5u", "https://attacker.example/cert.pem"
    ),
    "embedded x5c|unsupported header parameter": lambda f: _foreign(f, "x5c", ["MIIBszCCAVmgAwIBAgIUU"]),
    "unknown crit|unsupported critical header": lambda f: _foreign(
        f, "crit", ["urn:example:must-understand"]
    ),
    "crit naming exp|unsupported critical header": lambda f: f.token(
        header={**f.header(), "crit": ["exp"], "exp": 1}
    ),
    "b64 false|unsupported critical header": lambda f: f.token(
        header={**f.header(), "b64": False, "crit": ["b64"]}
    ),
    "typ JWT|not an access token": lambda f: f.token(header=f.header(typ="JWT")),
    "typ missing|not an access token": lambda f: f.token(header=f.header(typ=DROP)),
    "typ application/jwt|not an access token": lambda f: f.token(header=f.header(typ="application/jwt")),
    "expired|expired": lambda f: f.token(f.claims(exp=int(time.time()) - 31)),
    "expired long ago|expired": lambda f: f.token(f.claims(iat=1_000_000_000, exp=1_000_000_600)),
    "not yet valid|not yet valid": lambda f: f.token(f.claims(nbf=int(time.time()) + 60)),
    "issued in the future|issued in the future": lambda f: f.token(f.claims(iat=int(time.time()) + 60)),
    "missing exp|missing expiry": lambda f: f.token(f.claims(exp=DROP)),
    "exp a string|missing expiry": lambda f: f.token(f.claims(exp="9999999999")),
    "exp true|missing expiry": lambda f: f.token(f.claims(exp=True)),
    "exp NaN|malformed token": _nan_exp,
    "missing iat|missing issue time": lambda f: f.token(f.claims(iat=DROP)),
    "wrong iss|wrong issuer": lambda f: f.token(f.claims(iss="https://attacker.example/oidc/")),
    "iss without its trailing slash|wrong issuer": lambda f: f.token(f.claims(iss=ISSUER.rstrip("/"))),
    "missing iss|wrong issuer": lambda f: f.token(f.claims(iss=DROP)),
    "wrong aud|wrong audience": lambda f: f.token(f.claims(aud="https://other-api.example")),
    "aud list without us|wrong audience": lambda f: f.token(
        f.claims(aud=["https://a.example", "https://b.example"])
    ),
    "aud our URL with a slash|wrong audience": lambda f: f.token(f.claims(aud=AUDIENCE + "/")),
    "missing aud|wrong audience": lambda f: f.token(f.claims(aud=DROP)),
    "missing sub|missing sub": lambda f: f.token(f.claims(sub=DROP)),
    "sub of nobody|unknown user": lambda f: f.token(f.claims(sub="987654")),
    "sub not a key|unknown user": lambda f: f.token(f.claims(sub="alice")),
    "sub another spelling of the key|unknown user": lambda f: f.token(f.claims(sub=f" +{f.subject}")),
    "sub beyond any key|unknown user": lambda f: f.token(f.claims(sub="9" * 40)),
    "missing client_id|missing client_id": lambda f: f.token(f.claims(client_id=DROP)),
    "missing jti|missing jti": lambda f: f.token(f.claims(jti=DROP)),
    "scope not a string|malformed scope": lambda f: f.token(f.claims(scope=["openid", "pydio"])),
    "duplicate sub member|duplicate member": _duplicate_sub,
    "claims not an object|malformed token": lambda f: f.token(raw_payload=b64json(["sub", "1"])),
    "payload not JSON|malformed token": lambda f: f.token(raw_payload=b64(b"not json")),
    "five segments (JWE)|not a compact JWS": lambda f: f.token() + ".AAAA.BBBB",
    "JSON serialization|not a compact JWS": lambda f: b64json({"payload": f.token().split(".")[1]}),
}


@pytest.mark.parametrize("case", list(FORGERIES), ids=[case.split("|")[0] for case in FORGERIES])
def test_forged_token_is_refused(forge: Forge, case: str) -> None:
    token = FORGERIES[case](forge)
    reason = case.split("|")[1]
    for url in ("/api/me", "/plain/me"):
        response = api_get(url, token)
        assert_invalid_token(response)
        # Refused for the rule this forgery breaks, not by accident of another one.
        body = response.json()
        assert body.get("detail", body.get("error_description")) == f"Invalid bearer token: {reason}."


def test_a_token_signed_with_the_inactive_key_verifies_until_that_key_is_retired(
    forge: Forge, settings: Any
) -> None:
    old = jwk.JWK.from_pem(settings.OLD_SIGNING_KEY.encode())
    token = forge.token(header=forge.header(kid=old.thumbprint()), signer=rs256(old.get_op_key("sign")))
    assert api_get("/api/me", token).status_code == 200
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEYS_INACTIVE": []}
    assert_invalid_token(api_get("/api/me", token))


def test_a_token_once_accepted_is_still_refused_when_changed_or_expired(forge: Forge, settings: Any) -> None:
    """A process remembers which signatures it verified (internal/jws.py): what it remembers is the
    whole token for one key object, never a verdict on a payload or on the time. An attacker who saw
    an accepted token and changes its payload or signature is refused; the accepted token itself is
    refused once it expires."""
    settings.CELLS_OIDC_RESOURCE_LEEWAY = 0
    token = forge.token(forge.claims(exp=int(time.time()) + 2))
    assert api_get("/api/me", token).status_code == 200
    assert api_get("/api/me", token).status_code == 200  # the signature remembered
    head, body, signature = token.split(".")
    richer = b64json({**segment(token, 1), "scope": "openid pydio cells_oidc:admin"})
    other_key, _ = attacker_key()
    for changed in (
        f"{head}.{richer}.{signature}",  # the payload changed, the old signature kept
        f"{head}.{body}.{b64(rs256(other_key)(f'{head}.{body}'.encode()))}",  # signed by another key
        f"{head}.{body}.{signature[:-4]}AAAA",
    ):
        assert_invalid_token(api_get("/api/me", changed))
    time.sleep(max(0.0, segment(token, 1)["exp"] - time.time()) + 1.1)
    response = api_get("/api/me", token)
    assert_invalid_token(response)
    assert response.json()["detail"] == "Invalid bearer token: expired."


def test_a_token_a_client_got_for_itself_acts_for_no_user(forge: Forge) -> None:
    token = forge.token(forge.claims(sub="cells-client", scope="openid"))
    response = api_get("/api/token-only", token)
    assert response.status_code == 200, response.content
    assert response.json()["authenticated"] is False
    assert response.json()["client_id"] == "cells-client"
    # Not a user: a view that needs one refuses it (authenticated, so 403).
    assert api_get("/api/me", token).status_code == 403


# ---- scopes --------------------------------------------------------------------------------------
def test_scopes_are_enforced_with_insufficient_scope(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    access = sign_in(browser)["access_token"]
    assert api_get("/api/pydio", access).status_code == 200
    assert api_get("/api/any", access).status_code == 200
    for url, needed in (("/api/write", "files:write pydio"), ("/plain/write", "files:write")):
        response = api_get(url, access)
        assert response.status_code == 403, response.content
        challenge = response["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert f'scope="{needed}"' in challenge
    narrow = sign_in(Browser(), scope="openid")["access_token"]
    assert api_get("/api/me", narrow).status_code == 200
    response = api_get("/api/pydio", narrow)
    assert response.status_code == 403
    assert 'scope="pydio"' in response["WWW-Authenticate"]
    assert api_get("/plain/async", narrow).status_code == 403
    # Without any token the scope check is not reached: authentication comes first (401).
    assert api_get("/api/pydio").status_code == 401
    assert api_get("/plain/write").status_code == 401


def test_scope_names_are_checked_when_the_permission_is_declared() -> None:
    for bad in ('files"read', "two words", "", "back\\slash"):
        with pytest.raises(ValueError):
            HasScope(bad)
    with pytest.raises(ValueError):
        bearer_token_required(scopes=['a"b'])


@REAL_COMMITS
# ---- revocation ------------------------------------------------------------------------------------
def test_a_token_revoked_at_the_revocation_endpoint_is_refused_at_once(
    default_clients: None, alice: Any, browser: Browser, django_assert_num_queries: Any
) -> None:
    access = sign_in(browser)["access_token"]
    assert api_get("/api/me", access).status_code == 200
    revoke = Client().post(
        "/oidc/oauth2/revoke",
        f"token={access}&token_type_hint=access_token&client_id=cells-client",
        content_type="application/x-www-form-urlencoded",
    )
    assert revoke.status_code == 200, revoke.content
    with django_assert_num_queries(0):  # the deny-list is in the cache, not the database
        assert_invalid_token(api_get("/api/me", access))
    assert_invalid_token(api_get("/plain/me", access))


@REAL_COMMITS
def test_refresh_rotation_retires_the_previous_access_token(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    response = refresh("cells-client", tokens["refresh_token"])
    assert response.status_code == 200, response.content
    renewed = response.json()
    assert api_get("/api/me", renewed["access_token"]).status_code == 200
    # DOT revokes the access token of a refresh token it rotates (as Hydra does).
    assert_invalid_token(api_get("/api/me", tokens["access_token"]))


@REAL_COMMITS
def test_reuse_of_a_rotated_refresh_token_revokes_the_live_access_token(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    renewed = refresh("cells-client", tokens["refresh_token"]).json()
    assert api_get("/api/me", renewed["access_token"]).status_code == 200
    replay = refresh("cells-client", tokens["refresh_token"])  # the stolen, already rotated refresh token
    assert replay.status_code == 400
    assert_invalid_token(api_get("/api/me", renewed["access_token"]))
    assert refresh("cells-client", renewed["refresh_token"]).status_code == 400


@REAL_COMMITS
def test_replay_of_the_authorization_code_revokes_its_access_token(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    assert api_get("/api/me", tokens["access_token"]).status_code == 200
    replay = exchange(tokens["_code"], OOB, "cells-client")
    assert replay.status_code == 400
    assert_invalid_token(api_get("/api/me", tokens["access_token"]))


@REAL_COMMITS
def test_replay_of_a_code_that_gave_no_refresh_token_revokes_its_access_token(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser, scope="openid profile pydio")  # no offline scope: no refresh token
    assert "refresh_token" not in tokens
    assert api_get("/api/me", tokens["access_token"]).status_code == 200
    replay = exchange(tokens["_code"], OOB, "cells-client")
    assert replay.status_code == 400
    assert_invalid_token(api_get("/api/me", tokens["access_token"]))


@REAL_COMMITS
def test_the_admins_revoke_action_revokes_at_once(
    default_clients: None, alice: Any, browser: Browser, admin_client: Any
) -> None:
    from cells_oidc.models import TokenFamily

    access = sign_in(browser)["access_token"]
    assert api_get("/api/me", access).status_code == 200
    family = TokenFamily.objects.get(user=alice)
    response = admin_client.post(
        "/admin/cells_oidc/tokenfamily/",
        {"action": "revoke_selected", "_selected_action": [family.pk]},
    )
    assert response.status_code == 302, response.content[:500]
    assert TokenFamily.objects.get(pk=family.pk).revoked is not None
    assert_invalid_token(api_get("/api/me", access))


@REAL_COMMITS
def test_deleting_the_token_row_revokes_it(default_clients: None, alice: Any, browser: Browser) -> None:
    from oauth2_provider.models import get_access_token_model

    from cells_oidc.models import checksum

    first = sign_in(browser)["access_token"]
    second = sign_in(Browser())["access_token"]
    model = get_access_token_model()
    model.objects.get(token_checksum=checksum(first)).delete()  # the admin's delete
    assert_invalid_token(api_get("/api/me", first))
    assert api_get("/api/me", second).status_code == 200
    model.objects.filter(user=alice).delete()  # a queryset delete sends post_delete per row too
    assert_invalid_token(api_get("/api/me", second))


@REAL_COMMITS
def test_the_deny_list_lives_in_the_configured_cache_until_the_token_expires(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    from django.core.cache import caches

    from cells_oidc.internal import revocation
    from cells_oidc.models import checksum

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
        "revocations": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "revocations",
        },
    }
    settings.CELLS_OIDC_RESOURCE_REVOCATION_CACHE = "revocations"
    access = sign_in(browser)["access_token"]
    Client().post(
        "/oidc/oauth2/revoke",
        f"token={access}&client_id=cells-client",
        content_type="application/x-www-form-urlencoded",
    )
    key = revocation.KEY_PREFIX + checksum(access)
    assert caches["revocations"].get(key) is not None
    assert caches["default"].get(key) is None
    assert_invalid_token(api_get("/api/me", access))
    # An entry outlives the token (exp + leeway) but not by much; a past token needs none.
    expires_at = time.time() + 600
    revocation.deny("some-other-token", expires_at)
    stored_until = caches["revocations"]._expire_info[
        caches["revocations"].make_and_validate_key(revocation.KEY_PREFIX + checksum("some-other-token"))
    ]
    assert expires_at + 30 < stored_until <= expires_at + 30 + revocation.MARGIN_SECONDS + 2
    revocation.deny("expired-token", time.time() - 3600)
    assert caches["revocations"].get(revocation.KEY_PREFIX + checksum("expired-token")) is None


# ---- personal access tokens go the same way --------------------------------------------------------
def test_personal_access_tokens_are_dispatched_on_their_prefix(alice: Any) -> None:
    from cells_oidc.internal import pat

    minted = pat.mint(alice, expires_in=timedelta(hours=1), scope="pydio")
    assert minted.secret.startswith(pat.PAT_PREFIX)
    response = api_get("/api/pydio", minted.secret)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["user"], body["scopes"]) == ("pat", "alice", ["pydio"])
    assert body["token_id"] == str(minted.token.pk)
    assert api_get("/api/write", minted.secret).status_code == 403
    pat.revoke(minted.token)
    assert_invalid_token(api_get("/api/pydio", minted.secret))
    expired = pat.mint(alice, expires_in=timedelta(hours=1), scope="pydio")
    type(expired.token).objects.filter(pk=expired.token.pk).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    response = api_get("/api/pydio", expired.secret)
    assert_invalid_token(response)
    assert response.json()["detail"] == "Invalid bearer token: expired personal access token."
    # A string with the prefix is never tried as a JWT, and vice versa.
    assert_invalid_token(api_get("/api/me", pat.PAT_PREFIX + "x" * 49))


def test_when_the_deny_list_cannot_be_read_tokens_are_refused(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    access = sign_in(browser)["access_token"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "no_such_cache_table",
        },
    }
    settings.CELLS_OIDC_RESOURCE_REVOCATION_CACHE = "broken"
    response = api_get("/api/me", access)
    assert_invalid_token(response)
    assert response.json()["detail"] == "Invalid bearer token: revocation status unavailable."
    # Revoking still works (the receiver logs the cache failure instead of breaking the revocation).
    revoke = Client().post(
        "/oidc/oauth2/revoke",
        f"token={access}&client_id=cells-client",
        content_type="application/x-www-form-urlencoded",
    )
    assert revoke.status_code == 200, revoke.content
