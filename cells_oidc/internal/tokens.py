"""Signing and verifying this provider's JWTs (RFC 9068 access tokens, ID tokens).

What a token carries is decided in :mod:`cells_oidc.internal.issuance`; this module signs it
with the current key of an algorithm (:func:`sign`) and verifies tokens this site issued (:func:`verify`).
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
    from cells_oidc.internal.jws import PublicKey


def sign(claims: dict[str, Any], *, typ: str, alg: str = keys.ALGORITHM) -> str:
    """Sign ``claims`` with the current key of ``alg`` for tokens of type ``typ``: ``alg``, ``kid``
    and ``typ`` in the protected header (RFC 7515 §4.1, RFC 9068 §2.1;
    :func:`cells_oidc.internal.keycache.sign`: the key object parsed once per process).

    Raises :class:`cells_oidc.internal.keys.KeyUnavailable` when no current key of ``alg`` signs
    tokens of that type."""
    use = keys.ACCESS_TOKEN if typ == ACCESS_TOKEN_TYP else keys.ID_TOKEN
    return keycache.sign(claims, typ=typ, alg=alg, use=use)


def local_key_for(kid: str) -> PublicKey | None:
    """The public key this site's provider publishes under ``kid`` (current, next, or retired
    within its window), or ``None``: :func:`cells_oidc.internal.keys.verification_key`, whose key
    set every process keeps in step with the shared key-set version (revoked: gone at once)."""
    return keys.verification_key(kid)


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
    (an algorithm in use, a known ``kid``, the expected ``typ``, no ``crit``/``jku``/``x5u``/``jwk``), the
    signature, ``iss``, ``aud`` when given, and with ``check_time`` ``exp``/``nbf``/``iat``
    (RFC 7519 §4.1, RFC 9068 §4). Raises :class:`~cells_oidc.internal.jws.InvalidToken`.
    """
    return verify_jws(
        token,
        key_for=local_key_for,
        typ=typ,
        issuer=issuer(),
        algorithms=keys.algorithms_in_use(),
        audiences=audience,
        check_time=check_time,
        leeway=leeway,
    )
