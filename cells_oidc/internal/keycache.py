"""Signing keys as ``cryptography`` objects, parsed once per process (docs/performance.md).

:mod:`cells_oidc.internal.keys` says which keys exist (the active one, the inactive ones still
published); this module keeps, per ``kid``, the private key object that signs and the public key
object that verifies, so that no token costs a PEM parse, a JWK export or jwcrypto's deep copy of
the key (RFC 7638: a ``kid`` is the key's thumbprint, so an entry never goes stale; a retired key
is simply never asked for again, since :func:`cells_oidc.internal.keys.key_by_kid` no longer
names it).
"""

from __future__ import annotations

from typing import Any

from cells_oidc.internal import jws, keys

__all__ = ["public_key_for", "sign"]

#: kid -> the key object (a bounded number: one per key a site ever configured in this process).
_private: dict[str, Any] = {}


def _private_key(signing_key: keys.SigningKey) -> Any:
    key = _private.get(signing_key.kid)
    if key is None:
        key = _private[signing_key.kid] = signing_key.key.get_op_key("sign")
    return key


def sign(claims: dict[str, Any], *, typ: str, alg: str = keys.ALGORITHM, use: str = keys.ID_TOKEN) -> str:
    """``claims`` signed with the current key of ``alg`` for ``use`` tokens (:func:`keys.signing_key`):
    ``alg``, ``kid`` and ``typ`` in the protected header."""
    signing_key = keys.signing_key(alg, use)
    header = {"alg": signing_key.algorithm, "kid": signing_key.kid, "typ": typ}
    return jws.sign_compact(header, claims, _private_key(signing_key))


def public_key_for(kid: str) -> jws.PublicKey | None:
    """The public key this site publishes under ``kid``, or ``None`` (:func:`keys.verification_key`:
    parsed once per key set, which follows the shared key-set version)."""
    return keys.verification_key(kid)
