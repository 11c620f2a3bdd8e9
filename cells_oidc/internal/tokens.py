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
from typing import TYPE_CHECKING, Any

from jwcrypto import jwt
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import generate_token

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import keys
from cells_oidc.internal.context import sign_in_context
from cells_oidc.internal.endpoints import issuer

# The one verifier and its one exception, re-exported: tokens.InvalidToken is jws.InvalidToken.
from cells_oidc.internal.jws import ACCESS_TOKEN_TYP as ACCESS_TOKEN_TYP
from cells_oidc.internal.jws import ID_TOKEN_TYP as ID_TOKEN_TYP
from cells_oidc.internal.jws import InvalidToken as InvalidToken
from cells_oidc.internal.jws import verify as verify_jws

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa


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


_local_public_keys: dict[str, rsa.RSAPublicKey] = {}


def local_key_for(kid: str) -> rsa.RSAPublicKey | None:
    """The public key of this site's provider named ``kid`` (active or inactive, from settings).

    The kid is the RFC 7638 thumbprint of the key, so the public key derived once per kid stays
    right; whether the kid is still published is asked of :mod:`cells_oidc.internal.keys` every time.
    """
    signing_key = keys.key_by_kid(kid)
    if signing_key is None:
        return None
    public = _local_public_keys.get(kid)
    if public is None:
        public = signing_key.key.get_op_key("verify")
        _local_public_keys[kid] = public
    return public


def verify(
    token: object,
    *,
    typ: str,
    audience: Iterable[str] | None = None,
    check_time: bool = True,
    leeway: int = 0,
) -> dict[str, Any]:
    """Verify a JWT signed by this provider (ID token hints, introspection) and return its claims.

    :func:`cells_oidc.internal.jws.verify` with this site's keys and issuer: the form, the header
    (RS256 only, a known ``kid``, the expected ``typ``, no ``crit``/``jku``/``x5u``/``jwk``), the
    signature, ``iss``, ``aud`` when given, and with ``check_time`` ``exp``/``nbf``/``iat``
    (RFC 7519 §4.1, RFC 9068 §4). Raises :class:`~cells_oidc.internal.jws.InvalidToken`.
    """
    return verify_jws(
        token,
        key_for=local_key_for,
        typ=typ,
        issuer=issuer(),
        audiences=audience,
        check_time=check_time,
        leeway=leeway,
    )
