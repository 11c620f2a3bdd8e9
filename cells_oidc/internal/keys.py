"""Signing keys.

cells-oidc signs ID tokens and JWT access tokens with RS256 and the RSA key of DOT's
``OIDC_RSA_PRIVATE_KEY`` setting; the keys of ``OIDC_RSA_PRIVATE_KEYS_INACTIVE`` are still
published in the JWKS (and accepted when verifying) so that a rotation does not invalidate tokens
in flight. The ``kid`` of a key is its RFC 7638 thumbprint, as in DOT.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk
from oauth2_provider.settings import oauth2_settings

ALGORITHM = "RS256"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: jwk.JWK

    def public_jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.key.export_public())
        data.update({"kid": self.kid, "alg": ALGORITHM, "use": "sig"})
        return data


@functools.lru_cache(maxsize=16)
def _load(pem: str) -> SigningKey:
    # Parsing a PEM and hashing the thumbprint cost more than signing; do it once per key.
    key = jwk.JWK.from_pem(pem.encode("utf-8"))
    if key.get("kty") != "RSA" or not key.has_private:
        raise ValueError("the signing key must be an RSA private key")
    return SigningKey(kid=key.thumbprint(), key=key)


def active_key() -> SigningKey:
    """The key that signs new tokens (DOT's ``OIDC_RSA_PRIVATE_KEY``)."""
    return _load(oauth2_settings.OIDC_RSA_PRIVATE_KEY)


def all_keys() -> list[SigningKey]:
    """The active key first, then the inactive ones still accepted and published."""
    keys = [active_key()]
    seen = {keys[0].kid}
    for pem in oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE or ():
        key = _load(pem)
        if key.kid not in seen:  # RFC 7517 §4.5: kids of one JWK Set must be distinct
            seen.add(key.kid)
            keys.append(key)
    return keys


def key_by_kid(kid: object) -> SigningKey | None:
    if not isinstance(kid, str):
        return None
    for key in all_keys():
        if key.kid == kid:
            return key
    return None


def jwks() -> dict[str, list[dict[str, Any]]]:
    """The public JWK Set (RFC 7517 §5) of every key in :func:`all_keys`."""
    return {"keys": [key.public_jwk() for key in all_keys()]}


def generate_private_key_pem(bits: int = 2048) -> str:
    """A new RSA private key as PKCS#8 PEM (used by ``manage.py cells_oidc_keygen``)."""
    key = jwk.JWK.generate(kty="RSA", size=bits)
    return key.export_to_pem(private_key=True, password=None).decode("ascii")
