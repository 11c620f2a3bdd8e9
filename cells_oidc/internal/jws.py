"""Verification of signed JWTs (RFC 7515, RFC 7519, RFC 8725, RFC 9068): the one verifier.

Pure functions without Django: the key is looked up through a ``key_for(kid)`` callable and the
issuer, audiences and clock are arguments. The provider checks its own tokens with it
(:func:`cells_oidc.internal.tokens.verify`: ID token hints, introspection) and the resource
server checks bearer tokens with it (:mod:`cells_oidc.internal.resource`, same site or remote).

Every refusal is an :class:`InvalidToken` whose ``reason`` says which rule failed.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwcrypto import jwk
from jwcrypto.common import JWException

from cells_oidc.internal import jsontext

__all__ = [
    "ACCESS_TOKEN_CLAIMS",
    "ACCESS_TOKEN_TYP",
    "ALLOWED_ALGORITHMS",
    "ID_TOKEN_TYP",
    "MAX_KID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "InvalidToken",
    "KeyLookup",
    "PublicKey",
    "algorithm_for_key",
    "check_claims",
    "numeric_date",
    "public_key_from_jwk",
    "sign_compact",
    "verify",
    "verify_signature",
]

#: RFC 9068 §2.1: the ``typ`` of an access token.
ACCESS_TOKEN_TYP = "at+jwt"
#: OpenID Connect Core §2 leaves ``typ`` open; the provider marks its ID tokens ``JWT``.
ID_TOKEN_TYP = "JWT"
#: RFC 8725 §3.1: the algorithms cells-oidc can verify: RS256, ES256 (RFC 7518 §3.4) and EdDSA with
#: Ed25519 (RFC 8037 §3.1). Never ``none``, never an HMAC (whose "secret" an attacker would pick as
#: our public key), never whatever the token header asks for: a caller passes the algorithms in use
#: (``algorithms``), and each key verifies only with the one algorithm of its type.
ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
#: Header parameters that would make us fetch or trust a key named by the token itself
#: (RFC 8725 §3.10, RFC 7515 §4.1.2–4.1.6), or change what the signature covers (RFC 7797).
FORBIDDEN_HEADER_PARAMETERS = frozenset({"jku", "jwk", "x5u", "x5c", "b64"})
#: RFC 9068 §2.2: claims every access token carries (``exp`` is required by every check of time).
ACCESS_TOKEN_CLAIMS = ("iat", "sub", "client_id", "jti")
#: Far longer than any token we issue; bounds the work spent on garbage.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

#: A public key of a supported type.
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: ``key_for(kid)``: the public key the issuer publishes under ``kid``, or ``None``.
KeyLookup = Callable[[str], "PublicKey | None"]
#: ES256 signatures are R || S, 32 bytes each (RFC 7518 §3.4).
_ES256_HALF = 32


class InvalidToken(Exception):
    """A token that must be refused.

    ``reason`` (also ``str()``) is a short phrase for logs and developers, e.g. ``"expired"``;
    ``error`` is the RFC 6750 §3.1 error code an API answers with.
    """

    error = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify(
    token: object,
    *,
    key_for: KeyLookup,
    typ: str,
    issuer: str,
    algorithms: Collection[str] | None = None,
    **rules: Any,
) -> dict[str, Any]:
    """Verify a compact JWS of type ``typ`` and return its claims, or raise :class:`InvalidToken`.

    :func:`verify_signature` (form, header with ``alg`` among ``algorithms``, signature), then
    :func:`check_claims` with ``issuer`` and ``rules``, its other keyword arguments (``audiences``,
    ``required``, ``check_time``, ``leeway``, ``now``).
    """
    claims = verify_signature(token, key_for=key_for, typ=typ, algorithms=algorithms)
    check_claims(claims, issuer=issuer, **rules)
    return claims


def verify_signature(
    token: object, *, key_for: KeyLookup, typ: str, algorithms: Collection[str] | None = None
) -> dict[str, Any]:
    """Check the form, the protected header and the signature of a JWT; return its (unchecked) claims.

    ``typ`` is the expected type: the header's ``typ`` must be it or ``application/<typ>``,
    compared case-insensitively (RFC 7515 §4.1.9). ``key_for`` is called only for a well-formed
    ``kid`` of a token whose header passed every check. ``algorithms`` are the algorithms in use
    (default: every supported one); the header's ``alg`` must be one of them and the one of the key.
    """
    allowed = ALLOWED_ALGORITHMS if algorithms is None else ALLOWED_ALGORITHMS.intersection(algorithms)
    # A token whose signature this process verified is parsed once (see _verified below): the
    # same string has the same header and payload; every rule below is still applied to them.
    remembered = _verified.get(token) if isinstance(token, str) else None
    if remembered is not None:
        header = remembered[1]
    else:
        # RFC 7515 §7.1: the compact serialisation, three base64url parts; nothing else (no JWE,
        # no JSON serialisation, no unsigned token).
        if isinstance(token, str) and len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        if not isinstance(token, str) or not _COMPACT_JWS.fullmatch(token):
            raise InvalidToken("not a compact JWS")
        encoded_header, encoded_payload, encoded_signature = token.split(".")
        if not encoded_signature:
            raise InvalidToken("unsigned token")
        header = _json_object(encoded_header)
    # RFC 8725 §3.1, §2.1: the algorithm comes from our allow-list, not from the token.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise InvalidToken("algorithm not allowed")
    # RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps ID tokens (typ JWT) out of APIs and
    # access tokens out of ID token hints.
    expected = typ.lower()
    header_typ = header.get("typ")
    if not isinstance(header_typ, str) or header_typ.lower() not in (expected, f"application/{expected}"):
        raise InvalidToken("not an access token" if expected == ACCESS_TOKEN_TYP else "unexpected token type")
    # RFC 7515 §4.1.11: we understand no extension, so any "crit" must be refused.
    if "crit" in header:
        raise InvalidToken("unsupported critical header")
    if FORBIDDEN_HEADER_PARAMETERS & header.keys():
        raise InvalidToken("unsupported header parameter")
    kid = header.get("kid")
    # RFC 7515 §4.1.4: kid is only a hint to pick among the issuer's published keys; it is looked
    # up in a dict, never used as a path, URL or query.
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise InvalidToken("missing key id")
    public_key = key_for(kid)
    if public_key is None:
        raise InvalidToken("unknown key")
    # RFC 8725 §3.1: the key decides the algorithm; a token naming another one for this key (an
    # ES256 header on an RSA kid, say) is refused before any cryptography.
    if algorithm_for_key(public_key) != alg:
        raise InvalidToken("algorithm not allowed")
    # A signature this key verified once stays good as long as the key does: the same token with
    # the same key object (a new key set makes new objects, a removed key is not found above)
    # skips the cryptography and the parsing. Only what passed is remembered; the claims are
    # checked again on every use, on a copy of the remembered payload (a caller may change its copy).
    if remembered is not None:
        if remembered[0] is public_key:
            return _copy_claims(remembered[2])
        # Verified by another key object (a new key set): verified again, as the first time.
        encoded_header, encoded_payload, encoded_signature = token.split(".")  # type: ignore[union-attr]
    signature = _b64decode(encoded_signature)
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    try:
        _verify(public_key, alg, signature, signing_input)
    except InvalidSignature as exc:
        raise InvalidToken("bad signature") from exc
    payload = _json_object(encoded_payload)
    if len(_verified) >= MAX_VERIFIED:
        _verified.clear()
    _verified[token] = (public_key, header, payload)
    return _copy_claims(payload)


#: The tokens whose signature this process has verified: token -> (the key object that verified it,
#: its header, its payload). Neither dictionary is handed out (callers get copies). Bounded: at
#: MAX_VERIFIED (about 3 KB each: ~13 MB) it starts again (docs/performance.md, "The bearer path").
MAX_VERIFIED = 4096
_verified: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {}


def _copy_claims(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of a remembered payload that shares nothing mutable with it (JSON's arrays and objects
    copied; strings and numbers are immutable)."""
    claims = dict(payload)
    for name, value in claims.items():
        if isinstance(value, (dict, list)):
            claims[name] = copy.deepcopy(value)
    return claims


def algorithm_for_key(key: object) -> str | None:
    """The one JWS algorithm ``key`` verifies: RS256 for RSA (2048 bits or more), ES256 for P-256,
    EdDSA for Ed25519; ``None`` for anything else."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256" if key.key_size >= MIN_RSA_BITS else None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256" if isinstance(key.curve, ec.SECP256R1) else None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    return None


def _verify(key: Any, alg: str, signature: bytes, signing_input: bytes) -> None:
    if alg == "RS256":
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        # RFC 7518 §3.4: exactly 64 bytes, R then S; anything else is not an ES256 signature.
        if len(signature) != 2 * _ES256_HALF:
            raise InvalidSignature
        r = int.from_bytes(signature[:_ES256_HALF], "big")
        s = int.from_bytes(signature[_ES256_HALF:], "big")
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg == "EdDSA":
        key.verify(signature, signing_input)  # RFC 8037 §3.1
    else:  # pragma: no cover - the allow-list and the key binding exclude it
        raise InvalidSignature


def check_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    audiences: Iterable[str] | None = None,
    required: Collection[str] = (),
    check_time: bool = True,
    leeway: int = 0,
    now: float | None = None,
) -> None:
    """The claim rules of RFC 7519 §4.1 and RFC 9068 §4; raise :class:`InvalidToken`.

    - ``iss`` is exactly ``issuer``;
    - with ``audiences`` (``None``: not checked), ``aud`` names one of them;
    - with ``check_time``: ``exp`` is required and in the future, ``iat`` and ``nbf`` (when
      present) are not in the future, each with ``leeway`` seconds;
    - every claim of ``required`` is present: ``iat`` a NumericDate, the others non-empty strings.
    """
    # RFC 9068 §4: iss must be exactly the issuer (OpenID Connect Discovery §4.3: byte for byte).
    if claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    if audiences is not None:
        expected = {value for value in audiences if value}
        if not expected:
            raise InvalidToken("no audience configured")
        aud = claims.get("aud")
        token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        # RFC 9068 §4, RFC 7519 §4.1.3: aud must contain an identifier of this resource server.
        if not expected.intersection(value for value in token_audiences if isinstance(value, str)):
            raise InvalidToken("wrong audience")
    if "iat" in required and numeric_date(claims.get("iat")) is None:
        raise InvalidToken("missing issue time")
    if check_time:
        _check_time(claims, leeway=leeway, now=time.time() if now is None else now)
    # RFC 9068 §2.2: sub and client_id are required strings; jti too (it names the token).
    for name in required:
        value = claims.get(name)
        if name != "iat" and (not isinstance(value, str) or not value):
            raise InvalidToken(f"missing {name}")
    if "scope" in claims and not isinstance(claims["scope"], str):
        raise InvalidToken("malformed scope")


def _check_time(claims: dict[str, Any], *, leeway: int, now: float) -> None:
    # RFC 7519 §4.1.4–4.1.6, with a small leeway for clock skew.
    exp = numeric_date(claims.get("exp"))
    if exp is None:
        raise InvalidToken("missing expiry")
    if now >= exp + leeway:
        raise InvalidToken("expired")
    if "iat" in claims:
        iat = numeric_date(claims["iat"])
        if iat is None or iat - leeway > now:
            raise InvalidToken("issued in the future")
    if "nbf" in claims:
        nbf = numeric_date(claims["nbf"])
        if nbf is None or nbf - leeway > now:
            raise InvalidToken("not yet valid")


def numeric_date(value: object) -> float | None:
    """``value`` as an RFC 7519 §2 NumericDate (a finite JSON number, never a boolean), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


#: The public members of each key type (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2).
_PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y"), "OKP": ("kty", "crv", "x")}


def public_key_from_jwk(data: object) -> PublicKey | None:
    """The public key of a JWK usable for signatures with a supported algorithm, or ``None``
    (RFC 7517 §4, §6.3; RFC 8037 §2). A JWK naming an ``alg`` must name its key's algorithm."""
    if not isinstance(data, dict) or data.get("kty") not in _PUBLIC_MEMBERS:
        return None
    if data.get("use", "sig") != "sig":
        return None
    public = {name: data[name] for name in _PUBLIC_MEMBERS[data["kty"]] if name in data}
    try:
        key = jwk.JWK(**public).get_op_key("verify")
    except (JWException, ValueError, TypeError, KeyError, NotImplementedError):
        return None
    alg = algorithm_for_key(key)
    if alg is None or data.get("alg", alg) != alg:
        return None
    return key


def sign_compact(header: dict[str, Any], claims: dict[str, Any], private_key: Any) -> str:
    """The compact JWS (RFC 7515 §7.1) of ``claims`` under ``header``, signed with ``private_key``
    by the header's ``alg``, which must be the key's (RS256, ES256 or EdDSA).

    ``cryptography`` directly: no key copy per call (docs/performance.md). JSON without spaces;
    a value JSON cannot hold (a datetime) is written as its ``str()``.
    """
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS or algorithm_for_key(private_key.public_key()) != alg:
        raise ValueError(f"the key cannot sign {alg!r}")
    signing_input = _b64encode_json(header) + b"." + _b64encode_json(claims)
    if alg == "RS256":
        signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        # RFC 7518 §3.4: R || S, each 32 bytes big-endian (not the DER cryptography returns).
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(_ES256_HALF, "big") + s.to_bytes(_ES256_HALF, "big")
    else:
        signature = private_key.sign(signing_input)  # RFC 8037 §3.1: Ed25519
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii")


def unverified_subject(token: str) -> str | None:
    """The ``sub`` a compact JWS's payload names, **not verified**: only to know which cache entries
    to read with the deny-list before the signature is checked (never to decide anything), or
    ``None``."""
    remembered = _verified.get(token)
    if remembered is not None:
        subject = remembered[2].get("sub")
        return subject if isinstance(subject, str) else None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        subject = _json_object(parts[1]).get("sub")
    except InvalidToken:
        return None
    return subject if isinstance(subject, str) else None


def _b64encode_json(value: dict[str, Any]) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed token") from exc


def _json_object(segment: str) -> dict[str, Any]:
    raw = _b64decode(segment)
    try:
        value = jsontext.loads(raw, jose=True)
    except jsontext.DuplicateMember as exc:
        raise InvalidToken("duplicate member") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value
