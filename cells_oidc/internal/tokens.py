"""JWT access tokens (RFC 9068) and the signing/verification helpers shared with ID tokens.

DOT calls :func:`generate_access_token` (its ``ACCESS_TOKEN_GENERATOR``) while oauthlib builds a
token response; the JWT is what the client receives and what DOT stores (as a SHA-256 checksum,
RFC 9700 §4). Refresh tokens stay opaque random strings (:func:`generate_refresh_token`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from jwcrypto import jwt
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import generate_token

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import keys
from cells_oidc.internal.context import sign_in_context
from cells_oidc.internal.endpoints import issuer

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
ID_TOKEN_TYP = "JWT"


class InvalidToken(Exception):
    """A JWT that does not verify; ``str()`` says why (never shown to an attacker verbatim)."""


def sign(claims: dict[str, Any], *, typ: str) -> str:
    """Sign ``claims`` with the active key: RS256, ``kid`` and ``typ`` in the protected header."""
    key = keys.active_key()
    header = {"alg": keys.ALGORITHM, "kid": key.kid, "typ": typ}
    token = jwt.JWT(header=header, claims=json.dumps(claims, separators=(",", ":"), default=str))
    token.make_signed_token(key.key)
    return token.serialize()


def access_token_claims(request: Any, *, now: int | None = None) -> dict[str, Any]:
    """The RFC 9068 §2.2 claims of an access token for the oauthlib ``request`` being answered."""
    now = int(time.time()) if now is None else now
    scopes = list(getattr(request, "scopes", None) or [])
    user = getattr(request, "user", None)
    client_id = request.client.client_id
    claims: dict[str, Any] = {
        "iss": issuer(),
        "sub": get_adapter().subject(user) if user is not None else client_id,
        # RFC 8707 §2, RFC 9068 §3: the resources the request named (the validator checked them
        # against the client's policy and the grant), else the site's own API.
        "aud": _audience(requested_resources(request) or app_settings.ACCESS_TOKEN_AUDIENCE),
        "client_id": client_id,
        "scope": " ".join(scopes),
        "jti": str(uuid.uuid4()),
        "iat": now,
        # oauthlib sets request.expires_in (the response's expires_in, from which DOT computes the
        # stored expiry) just before calling the generator: the three must agree.
        "exp": now + _lifetime(request),
    }
    context = sign_in_context(request)
    if context.auth_time is not None:
        claims["auth_time"] = int(context.auth_time)
    if context.sid:
        claims["sid"] = context.sid
    return claims


def _lifetime(request: Any) -> int:
    expires_in = getattr(request, "expires_in", None)
    if isinstance(expires_in, int) and not isinstance(expires_in, bool):
        return expires_in
    return int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)


def requested_resources(request: Any) -> list[str]:
    """The RFC 8707 resource indicators of the oauthlib ``request``, in order, without repeats.

    The validator settles ``request.resource`` to a list (the token request's, or the grant's);
    oauthlib alone keeps only the last ``resource`` of the body (a string): then they are read
    from the body, where RFC 8707 §2 lets the parameter repeat.
    """
    resource = getattr(request, "resource", None)
    if isinstance(resource, (list, tuple)):
        values = list(resource)
    elif isinstance(resource, str) and resource:
        body = getattr(request, "decoded_body", None) or []
        values = [value for key, value in body if key == "resource"] or [resource]
    else:
        values = []
    return [value for value in dict.fromkeys(values) if isinstance(value, str) and value]


def _audience(values: list[str]) -> str | list[str]:
    # RFC 7519 §4.1.3: a single audience may be a string; several are an array.
    return values[0] if len(values) == 1 else list(values)


def generate_access_token(request: Any, refresh_token: bool = False) -> str:
    """DOT's ``ACCESS_TOKEN_GENERATOR``: a signed RFC 9068 JWT."""
    return sign(access_token_claims(request), typ=ACCESS_TOKEN_TYP)


def generate_refresh_token(request: Any) -> str:
    """DOT's ``REFRESH_TOKEN_GENERATOR``: an opaque 40-character random string."""
    return generate_token(40)


def verify(
    token: object,
    *,
    typ: str,
    audience: Iterable[str] | None = None,
    check_time: bool = True,
    leeway: int = 0,
) -> dict[str, Any]:
    """Verify a JWT signed by this provider and return its claims.

    Checks the compact serialisation, the protected header (``alg`` must be RS256 — never
    ``none`` or HMAC —, a known ``kid``, the expected ``typ``, no ``crit``, ``jku``, ``x5u`` or
    embedded ``jwk`` honoured), the signature, ``iss`` and, when given, ``aud``; with
    ``check_time`` also ``exp``/``nbf``/``iat`` (RFC 7519 §4.1, RFC 9068 §4).
    """
    # The form, header and signature rules are the resource server's (one verifier for all JWTs).
    from cells_oidc.internal import resource

    expected = typ.lower()
    try:
        claims = resource.verify_signature(
            token, key_for=resource.local_key_for, types={expected, f"application/{expected}"}
        )
    except resource.InvalidToken as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("iss") != issuer():
        raise InvalidToken("wrong issuer")
    if audience is not None:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(auds) & set(audience):
            raise InvalidToken("wrong audience")
    if check_time:
        now = time.time()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp + leeway <= now:
            raise InvalidToken("expired")
        if nbf is not None and (not isinstance(nbf, int) or nbf - leeway > now):
            raise InvalidToken("not yet valid")
        if iat is not None and (not isinstance(iat, int) or iat - leeway > now):
            raise InvalidToken("issued in the future")
    return claims
