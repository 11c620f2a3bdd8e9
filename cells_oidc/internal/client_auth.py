"""Client authentication: HTTP Basic client credentials (RFC 6749 §2.3.1) and client assertions
(``private_key_jwt``, RFC 7523 §2.2 and OpenID Connect Core §9).

Every caller that needs the client of a request reads it here: the validator's
``authenticate_client`` (token, revocation and introspection endpoints), the device
authorization endpoint and the CORS decision of the client endpoints. One parser, so that
they all see the same client id and refuse the same malformed headers; a value that could
reach a database query (NUL, which PostgreSQL refuses with a ``DataError``) or a log (control
characters) never leaves it.

Discovery advertises :data:`TOKEN_ENDPOINT_AUTH_METHODS`,
:data:`INTROSPECTION_ENDPOINT_AUTH_METHODS` and :data:`ASSERTION_SIGNING_ALGORITHMS` from here.

Client assertions (:func:`authenticate_assertion`): a client whose policy says
``private_key_jwt`` proves itself with a JWT signed by one of its keys (its policy's inline JWKS
or its ``jwks_uri``), never with its secret. ``client_secret_jwt`` (an HS256 JWT keyed with the
client secret) is not supported: client secrets are stored hashed, so the server does not hold
the key to verify it with (docs/service-accounts.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote_plus

from cells_oidc.internal import jsontext
from cells_oidc.internal.cache import isolated
from cells_oidc.internal.prepared import PreparedRead

__all__ = [
    "ASSERTION_SIGNING_ALGORITHMS",
    "CLIENT_ASSERTION_TYPE",
    "INTROSPECTION_ENDPOINT_AUTH_METHODS",
    "MAX_CREDENTIAL_LENGTH",
    "PRIVATE_KEY_JWT",
    "TOKEN_ENDPOINT_AUTH_METHODS",
    "authenticate_assertion",
    "basic_credentials",
    "basic_part",
    "has_assertion",
    "jwks_uri_error",
    "load_client",
    "parse_jwks",
    "policy_errors",
    "request_basic_credentials",
    "secret_method_allowed",
]

logger = logging.getLogger(__name__)

PRIVATE_KEY_JWT = "private_key_jwt"
#: RFC 6749 §2.3.1 and OpenID Connect Core §9: HTTP Basic, the body, a JWT signed with the
#: client's key (RFC 7523 §2.2), or none (public clients).
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT, "none")
#: RFC 7662 §2.1: the introspection endpoint requires an authenticated (confidential) client.
INTROSPECTION_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT)
#: RFC 7523 §2.2: the value of ``client_assertion_type``.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 8725 §3.1: the algorithms a client assertion may be signed with, from this list only
#: (never HS256: see the module docstring; never ``none``).
ASSERTION_SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: The key type (and curves) each algorithm verifies with (RFC 7518 §3, RFC 8037 §3.1).
_KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "RS256": ("RSA", ()),
    "ES256": ("EC", ("P-256",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}
#: RFC 7515 §4.1: header parameters that would let the assertion pick its own key, or change
#: how it is processed: refused.
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"})
MAX_ASSERTION_LENGTH = 8 * 1024
#: At most this many keys in a client's JWK Set (each may be tried when the assertion has no kid).
MAX_CLIENT_KEYS = 10
MIN_RSA_BITS = 2048
#: Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (seconds).
ASSERTION_LEEWAY = 30
_JTI_PREFIX = "cells_oidc:assertion-jti:"
_JWKS_PREFIX = "cells_oidc:client-jwks:"
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: Longest client id or secret read (DOT's columns hold 100 and 255 characters; a secret is
#: stored hashed, but nobody's is longer than this).
MAX_CREDENTIAL_LENGTH = 1024
# The base64 of two such values, form-encoded (3 characters each at worst), and the colon.
_MAX_ENCODED_LENGTH = 4 * ((2 * 3 * MAX_CREDENTIAL_LENGTH + 1 + 2) // 3)
# C0 controls and DEL: never in a client id or secret (RFC 7617 §2: no control characters).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def basic_credentials(encoded: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` of HTTP Basic credentials (the part after ``Basic``), or ``None``.

    RFC 6749 §2.3.1: the client id and secret are form-encoded (``application/x-www-form-
    urlencoded``) before they are joined by a colon and base64-encoded. ``None`` for anything
    else: not base64, not UTF-8, no colon, an empty client id, a control character (NUL
    included) or an over-long value in either part.
    """
    if not encoded or len(encoded) > _MAX_ENCODED_LENGTH:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    for value in (client_id, secret):
        if len(value) > MAX_CREDENTIAL_LENGTH or _CONTROL_RE.search(value):
            return None
    if not client_id:
        return None
    return client_id, secret


def basic_part(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization`` header value whose scheme is ``Basic``
    (case-insensitive, RFC 9110 §11.1), ``""`` when there are none, ``None`` for another scheme."""
    scheme, _sep, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    return credentials.strip()


def request_basic_credentials(request: Any) -> tuple[str, str] | None:
    """``(client_id, secret)`` of the ``Authorization: Basic`` header of a Django request, or ``None``."""
    return basic_credentials(basic_part(request.headers.get("Authorization")))


# ---- client assertions (RFC 7523 §2.2, §3; OpenID Connect Core §9) ----------------------------
class AssertionRefused(Exception):
    """A client assertion that must be refused (``invalid_client``, RFC 7523 §3.2)."""


def _body_values(request: Any, name: str) -> list[str]:
    body = getattr(request, "decoded_body", None) or []
    return [value for key, value in body if key == name]


def has_assertion(request: Any) -> bool:
    """Whether the oauthlib ``request`` carries a client assertion (either parameter)."""
    return bool(_body_values(request, "client_assertion") or _body_values(request, "client_assertion_type"))


def authenticate_assertion(request: Any, load_client: Any) -> bool | None:
    """Authenticate the client of ``request`` by its ``client_assertion``.

    ``None`` when the request carries no assertion (the caller goes on with the client's secret);
    otherwise ``True`` with ``request.client`` and ``request.client_id`` set, or ``False``
    (``invalid_client``). ``load_client(client_id, request)`` is the validator's loader, which
    sets ``request.client``. The rules, in order:

    - RFC 6749 §2.3: one method per request (no ``Authorization`` header, no ``client_secret``);
      RFC 7523 §2.2: ``client_assertion_type`` is the JWT bearer type; each parameter once;
    - the header: ``alg`` from :data:`ASSERTION_SIGNING_ALGORITHMS` (RFC 8725 §3.1), no
      parameter that picks a key or changes processing (``jku``, ``jwk``, ``x5u``, ``crit`` …);
    - RFC 7523 §3 and OpenID Connect Core §9: ``iss`` and ``sub`` are the client id (and equal
      to a ``client_id`` parameter, when sent); the client's policy says ``private_key_jwt``;
    - the signature, by one of the client's keys of the algorithm's type (``kid`` when given;
      an unknown ``kid`` fetches a ``jwks_uri`` again, at most once per interval);
    - ``aud`` names the issuer or the token endpoint (or the endpoint called); ``exp`` is
      required, not past, and at most ``CELLS_OIDC_CLIENT_ASSERTION_MAX_AGE`` seconds ahead;
      ``nbf``/``iat`` not in the future;
    - ``jti`` is required and used once: remembered in the shared cache until ``exp``.
    """
    assertions = _body_values(request, "client_assertion")
    types = _body_values(request, "client_assertion_type")
    if not assertions and not types:
        return None
    from cells_oidc.conf import app_settings

    if not app_settings.SERVICE_ACCOUNTS:
        logger.info("Client assertion refused: CELLS_OIDC_SERVICE_ACCOUNTS is off")
        return False
    try:
        client = _verified_client(request, assertions, types, load_client)
    except AssertionRefused as exc:
        logger.info("Client assertion refused: %s", exc)
        return False
    request.client = client
    request.client_id = client.client_id
    return True


def _verified_client(request: Any, assertions: list[str], types: list[str], load_client: Any) -> Any:
    if len(assertions) != 1 or len(types) != 1:
        raise AssertionRefused("client_assertion and client_assertion_type are each required once")
    if types[0] != CLIENT_ASSERTION_TYPE:
        raise AssertionRefused("unsupported client_assertion_type")
    headers = getattr(request, "headers", None) or {}
    if headers.get("Authorization") or _body_values(request, "client_secret"):
        raise AssertionRefused("more than one authentication method")  # RFC 6749 §2.3
    assertion = assertions[0]
    if len(assertion) > MAX_ASSERTION_LENGTH or not _COMPACT_JWS.fullmatch(assertion):
        raise AssertionRefused("not a compact JWS")
    encoded_header, encoded_payload, _signature = assertion.split(".")
    header = _json_segment(encoded_header)
    alg = header.get("alg")
    if alg not in ASSERTION_SIGNING_ALGORITHMS:
        raise AssertionRefused("algorithm not allowed")
    if _FORBIDDEN_HEADERS & header.keys():
        raise AssertionRefused("unsupported header parameter")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > 256):
        raise AssertionRefused("malformed kid")
    claims = _json_segment(encoded_payload)
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CREDENTIAL_LENGTH:
        raise AssertionRefused("missing iss")
    if _CONTROL_RE.search(client_id) or claims.get("sub") != client_id:
        raise AssertionRefused("iss and sub must both be the client id")  # RFC 7523 §3 items 1-2
    named = _body_values(request, "client_id")
    if len(named) > 1 or (named and named[0] != client_id):
        raise AssertionRefused("client_id does not match the assertion")
    if getattr(request, "client_id", None) not in (None, client_id):
        raise AssertionRefused("client_id does not match the assertion")
    client = load_client(client_id, request)
    if client is None:
        raise AssertionRefused("unknown client")
    from cells_oidc.models import policy_for

    policy = policy_for(client)
    if (
        policy.token_endpoint_auth_method != PRIVATE_KEY_JWT
        or client.client_type != client.CLIENT_CONFIDENTIAL
    ):
        raise AssertionRefused("the client does not authenticate with private_key_jwt")
    _verify_signature(assertion, alg, kid, policy)
    _check_claims(claims, request)
    _spend_jti(client_id, claims)
    return client


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = jsontext.loads(raw, jose=True)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise AssertionRefused("malformed JWT") from exc
    if not isinstance(value, dict):
        raise AssertionRefused("malformed JWT")
    return value


def _verify_signature(assertion: str, alg: str, kid: str | None, policy: Any) -> None:
    from jwcrypto import jws
    from jwcrypto.common import JWException

    for refreshed in (False, True):
        candidates = _candidate_keys(policy, alg, kid, refresh=refreshed)
        if candidates is None:
            continue  # not fetched again (inline keys, or refreshed too recently)
        for key in candidates:
            token = jws.JWS()
            token.allowed_algs = [alg]
            try:
                token.deserialize(assertion)
                token.verify(key, alg=alg)
            except (JWException, ValueError, TypeError):
                continue
            return
        if kid is not None and candidates:
            break  # the key named by kid is known and did not verify: no refresh
    raise AssertionRefused("no key of the client verifies the signature")


def _candidate_keys(policy: Any, alg: str, kid: str | None, *, refresh: bool) -> list[Any] | None:
    """The client's keys that may verify ``alg`` (only the one named ``kid``, when given).

    ``refresh``: fetch the ``jwks_uri`` again (an unknown ``kid`` may be a rotation), at most
    once per ``CELLS_OIDC_CLIENT_JWKS_MIN_REFRESH_SECONDS``; ``None`` when nothing was fetched.
    """
    if refresh:
        if not policy.jwks_uri or not _may_refresh(policy):
            return None
        keyset = _fetch_jwks(policy, force=True)
    elif policy.jwks_uri:
        keyset = _fetch_jwks(policy, force=False)
    else:
        keyset = _parse_or_nothing(policy.jwks)
    kty, curves = _KEY_TYPES[alg]
    keys = []
    for key in keyset:
        if kid is not None and key.get("kid") != kid:
            continue
        if key.get("kty") != kty or (curves and key.get("crv") not in curves):
            continue
        if key.get("use", "sig") != "sig" or key.get("alg", alg) != alg:
            continue
        if kty == "RSA" and _rsa_bits(key) < MIN_RSA_BITS:
            continue
        keys.append(key)
    return keys


def _rsa_bits(key: Any) -> int:
    try:
        return int(key.get_op_key("verify").key_size)
    except Exception:  # noqa: BLE001 - a malformed key is no key
        return 0


def parse_jwks(text: str) -> list[Any]:
    """The public keys of a JWK Set (RFC 7517 §5) as jwcrypto keys; ``ValueError`` for a set that is
    not one, holds a private key, or more than :data:`MAX_CLIENT_KEYS` keys."""
    from jwcrypto import jwk
    from jwcrypto.common import JWException

    try:
        data = jsontext.loads(text) if isinstance(text, str) else text
    except (ValueError, RecursionError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWK Set (an object with "keys")')
    if len(data["keys"]) > MAX_CLIENT_KEYS:
        raise ValueError(f"more than {MAX_CLIENT_KEYS} keys")
    keys = []
    for item in data["keys"]:
        if not isinstance(item, dict):
            raise ValueError("a key is not an object")
        try:
            key = jwk.JWK(**item)
        except (JWException, ValueError, TypeError) as exc:
            raise ValueError("a key is not a valid JWK") from exc
        if key.has_private:
            raise ValueError("a private key: publish only the public keys")
        keys.append(key)
    return keys


def load_client(client_id: object) -> Any:
    """The client registered as ``client_id`` with its policy joined (``ClientPolicy`` is read by
    nearly every request that names a client: one statement for both), or ``None`` — also for a
    value no database column can hold (not a string, empty, a NUL character)."""
    if not isinstance(client_id, str) or not client_id or "\x00" in client_id:
        return None
    return _CLIENT.first(client_id)


def _client_by_id(client_id: str) -> Any:
    from oauth2_provider.models import get_application_model

    return get_application_model().objects.select_related("cells_policy").filter(client_id=client_id)


#: Read by nearly every token request: compiled once (cells_oidc.internal.prepared).
_CLIENT = PreparedRead(_client_by_id)


def jwks_uri_error(uri: str) -> str | None:
    """Why ``uri`` may not be a client's ``jwks_uri`` (https, or http on a loopback host), or ``None``:
    the rule of every URL this server calls, :func:`cells_oidc.internal.redirects.server_url_error`."""
    from cells_oidc.internal.redirects import server_url_error

    return server_url_error(uri)


def _cache() -> Any:
    from django.core.cache import caches

    from cells_oidc.conf import app_settings

    return caches[app_settings.THROTTLE_CACHE]


def _cache_call(call: Any) -> Any:
    """A call to the shared cache; an outage is a 503 (``ThrottleUnavailable``), never a pass:
    a replay check that cannot run must not let the replay through."""
    from cells_oidc.internal.throttle import ThrottleUnavailable

    try:
        with isolated(_cache()) as cache:
            return call(cache)
    except ThrottleUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend error (Redis down, missing table …)
        logger.error("The shared cache is unavailable (%s: %s).", type(exc).__name__, exc)
        raise ThrottleUnavailable(str(exc)) from exc


def _jwks_key(policy: Any) -> str:
    from cells_oidc.models import checksum

    return _JWKS_PREFIX + checksum(f"{policy.application.client_id}\n{policy.jwks_uri}")


def _may_refresh(policy: Any) -> bool:
    from cells_oidc.conf import app_settings

    interval = app_settings.CLIENT_JWKS_MIN_REFRESH_SECONDS
    if interval <= 0:
        return True
    return bool(_cache_call(lambda cache: cache.add(_jwks_key(policy) + ":refresh", 1, interval)))


def _fetch_jwks(policy: Any, *, force: bool) -> list[Any]:
    """The keys at the client's ``jwks_uri``: from the shared cache, else fetched (bounded in time
    and size, no redirects) and cached for ``CELLS_OIDC_CLIENT_JWKS_CACHE_SECONDS``. A failed
    fetch or an unusable document leaves the keys cached before (none on a first fetch)."""
    from cells_oidc.conf import app_settings
    from cells_oidc.internal.remote import RemoteError, fetch_json

    key = _jwks_key(policy)
    cached = _cache_call(lambda cache: cache.get(key))
    if cached is not None and not force:
        return _parse_or_nothing(cached)
    if jwks_uri_error(policy.jwks_uri):
        return []
    try:
        document = json.dumps(fetch_json("GET", policy.jwks_uri))
        parse_jwks(document)
    except (RemoteError, ValueError) as exc:
        logger.warning("The keys of client %s could not be fetched: %s", policy.application.client_id, exc)
        return _parse_or_nothing(cached) if cached is not None else []
    timeout = app_settings.CLIENT_JWKS_CACHE_SECONDS
    _cache_call(lambda cache: cache.set(key, document, timeout))
    return parse_jwks(document)


def _parse_or_nothing(text: str) -> list[Any]:
    try:
        return parse_jwks(text)
    except ValueError:
        return []


def _check_claims(claims: dict[str, Any], request: Any) -> None:
    from cells_oidc.conf import app_settings
    from cells_oidc.internal.jws import numeric_date

    now = time.time()
    # RFC 7523 §3 item 3: aud identifies this server; OpenID Connect Core §9: the token endpoint.
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not set(assertion_audiences(request)).intersection(a for a in audiences if isinstance(a, str)):
        raise AssertionRefused("wrong audience")
    # RFC 7523 §3 item 4: exp is required; bounded so that the jti cache stays small and a captured
    # assertion is short-lived.
    exp = numeric_date(claims.get("exp"))
    if exp is None:
        raise AssertionRefused("missing exp")
    if now >= exp + ASSERTION_LEEWAY:
        raise AssertionRefused("expired")
    if exp - now > app_settings.CLIENT_ASSERTION_MAX_AGE + ASSERTION_LEEWAY:
        raise AssertionRefused("exp too far in the future")
    for name in ("nbf", "iat"):
        if name in claims:
            value = numeric_date(claims[name])
            if value is None or value - ASSERTION_LEEWAY > now:
                raise AssertionRefused(f"{name} in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise AssertionRefused("missing jti")  # OpenID Connect Core §9: jti is REQUIRED


def assertion_audiences(request: Any) -> list[str]:
    """What a client assertion's ``aud`` may name: the issuer, the token endpoint, and the
    endpoint being called (revocation, introspection, device authorization)."""
    from django.urls import NoReverseMatch

    from cells_oidc.internal.endpoints import absolute_url, issuer

    values = [issuer(), issuer().rstrip("/")]
    for name in ("token", "revoke", "introspect", "device-authorization"):
        try:
            values.append(absolute_url(name))
        except NoReverseMatch:
            continue
    uri = getattr(request, "uri", None)
    if isinstance(uri, str):
        base = uri.split("?", 1)[0]
        if base in values:
            values.append(base)
    return values


def _spend_jti(client_id: str, claims: dict[str, Any]) -> None:
    """RFC 7523 §3 item 7: a ``jti`` is used once. ``cache.add`` is atomic in every shared
    backend (Redis SET NX, the database's INSERT): of two requests with one assertion, one wins."""
    from cells_oidc.internal.jws import numeric_date
    from cells_oidc.models import checksum

    exp = numeric_date(claims["exp"]) or 0
    timeout = max(1, int(exp - time.time()) + ASSERTION_LEEWAY + 1)
    key = _JTI_PREFIX + checksum(f"{client_id}\n{claims['jti']}")
    if not _cache_call(lambda cache: cache.add(key, 1, timeout)):
        raise AssertionRefused("jti used before")


# ---- the method a client may use -----------------------------------------------------------
def secret_method_allowed(client: Any, method: str) -> bool:
    """Whether ``client`` may authenticate with ``method`` (``client_secret_basic``,
    ``client_secret_post`` or ``none``): its policy's ``token_endpoint_auth_method`` (RFC 7591
    §2) names it, or is empty (any secret method). A ``private_key_jwt`` client has no secret
    method at all."""
    from cells_oidc.models import policy_for

    configured = policy_for(client).token_endpoint_auth_method
    if method == "none":
        return configured != PRIVATE_KEY_JWT
    return configured in ("", method)


def policy_errors(policy: Any) -> dict[str, list[str]]:
    """The problems of a policy's client authentication settings, by field (admin, command)."""
    from django.utils.translation import gettext

    errors: dict[str, list[str]] = {}
    if policy.jwks:
        try:
            parse_jwks(policy.jwks)
        except ValueError as exc:
            errors["jwks"] = [gettext("Not a usable JWK Set: %(reason)s.") % {"reason": exc}]
    if policy.jwks_uri:
        problem = jwks_uri_error(policy.jwks_uri)
        if problem:
            errors["jwks_uri"] = [gettext("Not a usable jwks_uri: %(reason)s.") % {"reason": problem}]
    if policy.jwks and policy.jwks_uri:
        errors.setdefault("jwks_uri", []).append(gettext("Give the keys inline or by URL, not both."))
    if policy.token_endpoint_auth_method == PRIVATE_KEY_JWT:
        if not policy.jwks and not policy.jwks_uri:
            errors.setdefault("jwks", []).append(gettext("private_key_jwt needs the client's public keys."))
        application = getattr(policy, "application", None) if policy.application_id else None
        if application is not None and application.client_type != application.CLIENT_CONFIDENTIAL:
            errors.setdefault("token_endpoint_auth_method", []).append(
                gettext("A public client does not authenticate (RFC 6749 §2.1).")
            )
    return errors
