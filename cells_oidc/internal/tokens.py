"""Signing and verifying this provider's JWTs (RFC 9068 access tokens, ID tokens).

What a token carries is decided in :mod:`cells_oidc.internal.issuance`; this module signs it
with the active key (:func:`sign`) and verifies tokens this site issued (:func:`verify`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cells_oidc.internal import keycache, keys
from cells_oidc.internal.endpoints import issuer

# The one verifier and its one exception, re-exported: tokens.InvalidToken is jws.InvalidToken.
from cells_oidc.internal.jws import ACCESS_TOKEN_TYP as ACCESS_TOKEN_TYP
from cells_oidc.internal.jws import ID_TOKEN_TYP as ID_TOKEN_TYP
from cells_oidc.internal.jws import InvalidToken as InvalidToken
from cells_oidc.internal.jws import verify as verify_jws

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa


def sign(claims: dict[str, Any], *, typ: str) -> str:
    """Sign ``claims`` with the active key: RS256, ``kid`` and ``typ`` in the protected header
    (:func:`cells_oidc.internal.keycache.sign`: the key object parsed once per process)."""
    return keycache.sign(claims, typ=typ)


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
