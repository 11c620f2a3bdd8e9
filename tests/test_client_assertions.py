"""private_key_jwt client authentication (RFC 7523 §2.2, §3; OpenID Connect Core §9) over HTTP.

Each refusal an attacker would try is answered ``invalid_client`` (RFC 7523 §3.2, RFC 6749 §5.2):
a wrong audience, a replayed ``jti``, an expired or far-future ``exp``, an algorithm off the
allow-list (``none``, HS256 keyed with a public key or with the secret), an unknown ``kid``, a
key that is not the client's, a header that picks its own key. The client's keys come inline or
from its ``jwks_uri``, cached, fetched again for an unknown ``kid`` at most once per interval.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jwcrypto import jwk, jws

from cells_oidc.models import Client, ClientPolicy
from tests.conftest import basic, form_post, token_request

pytestmark = pytest.mark.django_db

TOKEN_URL = "http://testserver/oidc/oauth2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET = "a-secret-that-the-client-never-uses-here"
RSA_KEY = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1")
EC_KEY = jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-1")
ED_KEY = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed-1")
OTHER_KEY = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1")  # same kid, not the client's


def jwks_of(*keys: jwk.JWK) -> str:
    return json.dumps({"keys": [key.export_public(as_dict=True) for key in keys]})


@pytest.fixture(autouse=True)
def service_accounts(settings: Any) -> None:
    settings.CELLS_OIDC_SERVICE_ACCOUNTS = True


def service_client(client_id: str = "backup-bot", **policy: Any) -> Client:
    client = Client.objects.create(
        client_id=client_id,
        client_type=Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        client_secret=SECRET,
        hash_client_secret=True,
        redirect_uris="",
        algorithm=Client.RS256_ALGORITHM,
    )
    policy.setdefault("jwks", jwks_of(RSA_KEY, EC_KEY, ED_KEY))
    ClientPolicy.objects.create(application=client, token_endpoint_auth_method="private_key_jwt", **policy)
    return client


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def assertion(
    key: jwk.JWK = RSA_KEY,
    *,
    alg: str = "RS256",
    header: dict[str, Any] | None = None,
    omit: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": "backup-bot",
        "sub": "backup-bot",
        "aud": TOKEN_URL,
        "exp": now + 60,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    for name in omit:
        body.pop(name, None)
    protected = {"alg": alg, "kid": key.get("kid"), **(header or {})}
    protected = {name: value for name, value in protected.items() if value is not None}
    token = jws.JWS(json.dumps(body))
    token.allowed_algs = [alg]
    token.add_signature(key, alg=alg, protected=json.dumps(protected))
    return token.serialize(compact=True)


def with_assertion(value: str, **extra: str) -> Any:
    return token_request(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": value,
            **extra,
        }
    )


def assert_invalid_client(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert json.loads(response.content)["error"] == "invalid_client"


@pytest.mark.parametrize(("key", "alg"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256"), (ED_KEY, "EdDSA")])
def test_each_allowed_algorithm_authenticates_the_client(key: jwk.JWK, alg: str) -> None:
    service_client()
    response = with_assertion(assertion(key, alg=alg))
    assert response.status_code == 200, response.content
    # The issuer is an accepted audience too (RFC 7523 §3), and a client_id that agrees.
    issuer_aud = with_assertion(
        assertion(key, alg=alg, aud="http://testserver/oidc/"), client_id="backup-bot"
    )
    assert issuer_aud.status_code == 200, issuer_aud.content


def test_an_assertion_without_a_kid_is_tried_against_the_client_keys_of_its_type() -> None:
    service_client()
    assert with_assertion(assertion(EC_KEY, alg="ES256", header={"kid": None})).status_code == 200


REFUSED_CLAIMS = {
    "wrong-aud": {"aud": "https://other.example/token"},
    "aud-list-without-us": {"aud": ["https://other.example", "https://x.example"]},
    "expired": {"exp": int(time.time()) - 3600},
    "exp-too-far": {"exp": int(time.time()) + 3600},
    "exp-not-a-number": {"exp": "soon"},
    "nbf-in-future": {"nbf": int(time.time()) + 600},
    "iss-not-sub": {"sub": "someone-else"},
    "unknown-client": {"iss": "nobody", "sub": "nobody"},
}


@pytest.mark.parametrize("claims", REFUSED_CLAIMS.values(), ids=REFUSED_CLAIMS.keys())
def test_an_assertion_with_bad_claims_is_refused(claims: dict[str, Any]) -> None:
    service_client()
    assert_invalid_client(with_assertion(assertion(**claims)))


@pytest.mark.parametrize("claim", ["exp", "jti", "aud", "iss"])
def test_an_assertion_missing_a_required_claim_is_refused(claim: str) -> None:
    service_client()
    assert_invalid_client(with_assertion(assertion(omit=(claim,))))


def test_a_replayed_assertion_is_refused() -> None:
    service_client()
    value = assertion()
    assert with_assertion(value).status_code == 200
    assert_invalid_client(with_assertion(value))
    # A new assertion with the same jti is a replay too (RFC 7523 §3 item 7).
    jti = str(uuid.uuid4())
    assert with_assertion(assertion(jti=jti)).status_code == 200
    assert_invalid_client(with_assertion(assertion(jti=jti)))


def test_a_wrong_key_an_unknown_kid_and_a_wrong_algorithm_are_refused() -> None:
    service_client()
    assert_invalid_client(with_assertion(assertion(OTHER_KEY)))  # kid rsa-1, not the client's key
    unknown = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-unknown")
    assert_invalid_client(with_assertion(assertion(unknown)))
    # PS256: an RSA algorithm, but not on the allow-list (RFC 8725 §3.1).
    assert_invalid_client(with_assertion(assertion(RSA_KEY, alg="PS256")))


def test_algorithms_off_the_allow_list_are_refused() -> None:
    service_client()
    now = int(time.time())
    claims = {"iss": "backup-bot", "sub": "backup-bot", "aud": TOKEN_URL, "exp": now + 60, "jti": "x1"}
    unsigned = f"{_b64({'alg': 'none'})}.{_b64(claims)}."
    assert_invalid_client(with_assertion(unsigned))
    # HS256 keyed with the secret (client_secret_jwt): not supported, secrets are stored hashed.
    secret_key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(SECRET.encode()).rstrip(b"=").decode())
    assert_invalid_client(with_assertion(assertion(secret_key, alg="HS256", header={"kid": None})))
    # HS256 keyed with the client's public key (the algorithm confusion attack, RFC 8725 §2.1).
    public_pem = RSA_KEY.export_to_pem()
    confused = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(public_pem).rstrip(b"=").decode())
    assert_invalid_client(with_assertion(assertion(confused, alg="HS256", header={"kid": "rsa-1"})))


def rsa_signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An RS256 JWS signed by the client's key, with any header (jwcrypto refuses to write some)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = RSA_KEY.get_op_key("sign").sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def good_claims(**claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "backup-bot",
        "sub": "backup-bot",
        "aud": TOKEN_URL,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        **claims,
    }


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "crit"])
def test_a_header_that_picks_its_own_key_is_refused(name: str) -> None:
    service_client()
    values = {
        "jwk": OTHER_KEY.export_public(as_dict=True),
        "jku": "https://evil.example/jwks",
        "x5u": "https://evil.example/cert",
        "crit": ["exp"],
    }
    # Signed by the client's own key, so only the header parameter can refuse it.
    assert with_assertion(rsa_signed({"alg": "RS256", "kid": "rsa-1"}, good_claims())).status_code == 200
    assert_invalid_client(
        with_assertion(rsa_signed({"alg": "RS256", "kid": "rsa-1", name: values[name]}, good_claims()))
    )


def test_duplicate_claims_are_refused() -> None:
    service_client()
    value = rsa_signed({"alg": "RS256", "kid": "rsa-1"}, good_claims())
    header, payload, _signature = value.split(".")
    claims = json.dumps(good_claims())[:-1] + ', "sub": "someone-else"}'
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    body = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    signature = RSA_KEY.get_op_key("sign").sign(
        f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    duplicated = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert_invalid_client(with_assertion(duplicated))


def test_one_method_per_request() -> None:
    service_client()
    # An assertion next to Basic credentials or a secret in the body: refused (RFC 6749 §2.3).
    both = token_request(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(),
        },
        HTTP_AUTHORIZATION=basic("backup-bot", SECRET),
    )
    assert_invalid_client(both)
    assert_invalid_client(with_assertion(assertion(), client_secret=SECRET))
    assert_invalid_client(with_assertion(assertion(), client_id="another-client"))
    # A wrong assertion type, or the type without an assertion.
    wrong_type = token_request(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:x",
            "client_assertion": assertion(),
        }
    )
    assert_invalid_client(wrong_type)
    assert_invalid_client(
        token_request({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE})
    )
    # The client's secret is not a method of a private_key_jwt client.
    assert_invalid_client(
        token_request({"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic("backup-bot", SECRET))
    )


def test_an_assertion_is_refused_to_a_client_whose_policy_does_not_name_private_key_jwt() -> None:
    service_client()
    ClientPolicy.objects.filter(application__client_id="backup-bot").update(token_endpoint_auth_method="")
    assert_invalid_client(with_assertion(assertion()))


def test_assertions_are_refused_while_service_accounts_are_off(settings: Any) -> None:
    service_client()
    settings.CELLS_OIDC_SERVICE_ACCOUNTS = False
    assert_invalid_client(with_assertion(assertion()))


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 9000, "e30.e30.", "W10.W10.AA"])
def test_malformed_assertions_are_invalid_client_not_errors(garbage: str) -> None:
    service_client()
    assert_invalid_client(with_assertion(garbage))


def test_introspection_and_revocation_accept_an_assertion() -> None:
    service_client()
    token = json.loads(with_assertion(assertion()).content)["access_token"]
    introspection_url = "http://testserver/oidc/oauth2/introspect"
    data = {"token": token, "client_assertion_type": ASSERTION_TYPE}
    answer = form_post(
        "/oidc/oauth2/introspect", {**data, "client_assertion": assertion(aud=introspection_url)}
    )
    assert answer.status_code == 200, answer.content
    assert json.loads(answer.content)["active"] is True
    revoked = form_post("/oidc/oauth2/revoke", {**data, "client_assertion": assertion()})
    assert revoked.status_code == 200, revoked.content
    replay = form_post("/oidc/oauth2/introspect", {**data, "client_assertion": assertion(jti="same")})
    assert replay.status_code == 200
    assert_invalid_client(
        form_post("/oidc/oauth2/introspect", {**data, "client_assertion": assertion(jti="same")})
    )


# ---- keys from a jwks_uri ------------------------------------------------------------------------
class KeyServer:
    """A client's key server on the loopback interface: serves ``document``, counts requests."""

    def __init__(self) -> None:
        self.document = jwks_of(RSA_KEY)
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                body = server.document.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_keys_from_a_jwks_uri_are_cached_and_fetched_again_for_an_unknown_kid(
    key_server: KeyServer, settings: Any
) -> None:
    settings.CELLS_OIDC_CLIENT_JWKS_MIN_REFRESH_SECONDS = 60
    service_client(jwks="", jwks_uri=key_server.url)
    assert with_assertion(assertion()).status_code == 200
    assert with_assertion(assertion()).status_code == 200
    assert key_server.requests == 1  # cached
    # The client rotates to a new key: the unknown kid fetches the set again, once.
    rotated = jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-2026")
    key_server.document = jwks_of(rotated)
    assert with_assertion(assertion(rotated, alg="ES256")).status_code == 200
    assert key_server.requests == 2
    # Made-up kids do not make the provider hammer the client's server.
    for index in range(3):
        stranger = jwk.JWK.generate(kty="EC", crv="P-256", kid=f"made-up-{index}")
        assert_invalid_client(with_assertion(assertion(stranger, alg="ES256")))
    assert key_server.requests == 2  # the refresh of the rotation was less than a minute ago


def test_a_jwks_uri_must_be_https_except_on_loopback() -> None:
    from django.core.exceptions import ValidationError

    client = service_client(jwks="")
    policy = ClientPolicy.objects.get(application=client)
    for uri, ok in (
        ("https://keys.example.com/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", True),
        ("http://localhost/jwks", True),
        ("http://keys.example.com/jwks.json", False),
        ("ftp://keys.example.com/jwks.json", False),
        ("https://user:pw@keys.example.com/jwks", False),
    ):
        policy.jwks_uri = uri
        if ok:
            policy.full_clean()
        else:
            with pytest.raises(ValidationError):
                policy.full_clean()


def test_the_admin_refuses_a_private_key_or_a_policy_without_keys() -> None:
    from django.core.exceptions import ValidationError

    client = service_client()
    policy = ClientPolicy.objects.get(application=client)
    policy.jwks = json.dumps({"keys": [RSA_KEY.export_private(as_dict=True)]})
    with pytest.raises(ValidationError, match="private key"):
        policy.full_clean()
    policy.jwks = ""
    with pytest.raises(ValidationError, match="public keys"):
        policy.full_clean()
    policy.jwks = "{not json"
    with pytest.raises(ValidationError):
        policy.full_clean()
