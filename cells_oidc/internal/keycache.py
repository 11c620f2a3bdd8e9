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

from cryptography.hazmat.primitives.asymmetric import rsa

from cells_oidc.internal import jws, keys

__all__ = ["public_key_for", "sign"]

#: kid -> the key object (a bounded number: one per key a site ever configured in this process).
_private: dict[str, rsa.RSAPrivateKey] = {}
_public: dict[str, rsa.RSAPublicKey] = {}


def _private_key(signing_key: keys.SigningKey) -> rsa.RSAPrivateKey:
    key = _private.get(signing_key.kid)
    if key is None:
        key = signing_key.key.get_op_key("sign")
        if not isinstance(key, rsa.RSAPrivateKey):  # keys.py accepts RSA private keys only
            raise ValueError("the signing key must be an RSA private key")
        _private[signing_key.kid] = key
    return key


def sign(claims: dict[str, Any], *, typ: str) -> str:
    """``claims`` signed with the active key: RS256, ``kid`` and ``typ`` in the protected header."""
    signing_key = keys.active_key()
    header = {"alg": keys.ALGORITHM, "kid": signing_key.kid, "typ": typ}
    return jws.sign_compact(header, claims, _private_key(signing_key))


def public_key_for(kid: str) -> rsa.RSAPublicKey | None:
    """The public key of this site's key named ``kid`` (active or inactive), or ``None``.

    Whether ``kid`` is still one of the site's keys is asked of :mod:`.keys` every time.
    """
    signing_key = keys.key_by_kid(kid)
    if signing_key is None:
        return None
    public = _public.get(kid)
    if public is None:
        public = _public[kid] = _private_key(signing_key).public_key()
    return public
