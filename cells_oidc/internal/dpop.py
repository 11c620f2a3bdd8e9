"""DPoP (RFC 9449): the one place a proof of possession is checked.

The proof rules (:func:`verify_proof`) are pure functions without Django: the caller passes the
method and URI of the request, the access token (at a resource server), the clock, the accepted
nonces and a ``first_use(jti)`` callable. :func:`check_request` is the Django glue used by the
token endpoint and the resource-server kit: it reads the ``DPoP`` header, the settings and the
shared cache (the ``jti`` replay cache, RFC 9449 §11.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from cells_oidc.internal import jsontext
from cells_oidc.internal.cache import isolated
from cells_oidc.internal.jws import InvalidToken

__all__ = [
    "ALGORITHMS",
    "DPOP_TYP",
    "DPoPError",
    "Proof",
    "ResourceRefusal",
    "access_token_hash",
    "authorization_scheme",
    "bind_issued_tokens",
    "check_request",
    "check_resource_request",
    "current_nonce",
    "normalise_htu",
    "refresh_allowed",
    "request_jkt",
    "thumbprint",
    "verify_proof",
]

#: RFC 9449 §4.2: ``typ`` of a proof.
DPOP_TYP = "dpop+jwt"
#: RFC 9449 §4.3, RFC 8725 §3.1: asymmetric algorithms only (never ``none``, never an HMAC);
#: discovery's ``dpop_signing_alg_values_supported``.
ALGORITHMS = ("ES256", "RS256", "EdDSA")
#: A proof is a small JWT; anything longer is garbage.
MAX_PROOF_LENGTH = 8192
MIN_RSA_BITS = 2048
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_KEY_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y"), "OKP": ("kty", "crv", "x")}
_CURVES = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519"), "RS256": ("RSA", None)}
# The META key under which the token endpoint hands the proof's thumbprint to oauthlib's request
# (DOT copies META into its headers); not an HTTP header, so no client can set it.
JKT_META_KEY = "cells_oidc.dpop_jkt"


class DPoPError(Exception):
    """A refused proof: ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce`` (RFC 9449 §7.1, §8)."""

    def __init__(self, reason: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class Proof:
    """A verified proof: the RFC 7638 thumbprint of its key, its ``jti`` and claims."""

    jkt: str
    jti: str
    claims: dict[str, Any]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_part(part: str) -> dict[str, Any]:
    try:
        value = jsontext.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)), jose=True)
    except (binascii.Error, ValueError, RecursionError):
        raise DPoPError("malformed proof") from None
    if not isinstance(value, dict):
        raise DPoPError("malformed proof")
    return value


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url SHA-256 of the ASCII access token."""
    return _b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (the required members only), base64url."""
    members = _KEY_MEMBERS.get(public_jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise DPoPError("unsupported key type")
    canonical = {name: public_jwk[name] for name in sorted(members) if name in public_jwk}
    if len(canonical) != len(members) or not all(isinstance(v, str) for v in canonical.values()):
        raise DPoPError("malformed jwk")
    encoded = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64url(hashlib.sha256(encoded).digest())


def normalise_htu(uri: str) -> str | None:
    """RFC 9449 §4.3: the URI without query and fragment, scheme and host lowercased, the default
    port dropped (RFC 3986 §6.2.2-6.2.3); ``None`` when it is not an absolute http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


def verify_proof(
    proof: object,
    *,
    htm: str,
    htu: str,
    now: float,
    iat_window: int,
    first_use: Callable[[str], bool],
    access_token: str | None = None,
    nonces: Collection[str] | None = None,
) -> Proof:
    """Check a DPoP proof JWT (RFC 9449 §4.3) and return it; raise :class:`DPoPError`.

    ``nonces``: the server nonces accepted (``None``: no nonce required); ``first_use(jti)`` is
    asked last, once everything else holds, and must answer ``False`` for a ``jti`` seen before.
    """
    # §4.3 (1-2): one well-formed JWT.
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_LENGTH or not _COMPACT.fullmatch(proof):
        raise DPoPError("malformed proof")
    encoded_header, encoded_claims, _signature = proof.split(".")
    header = _json_part(encoded_header)
    claims = _json_part(encoded_claims)
    # §4.3 (4-5): typ dpop+jwt, an asymmetric algorithm of the allow-list.
    if header.get("typ") != DPOP_TYP:
        raise DPoPError("typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise DPoPError("algorithm not allowed")
    if "crit" in header:
        raise DPoPError("unsupported critical header")  # RFC 7515 §4.1.11
    # §4.3 (6-7): the jwk header is a public key of the algorithm's type, and verifies the signature.
    public = header.get("jwk")
    if not isinstance(public, dict) or any(name in public for name in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise DPoPError("jwk must be a public key")
    kty, curve = _CURVES[alg]
    if public.get("kty") != kty or (curve is not None and public.get("crv") != curve):
        raise DPoPError("jwk does not match alg")
    jkt = thumbprint(public)
    try:
        key = jwk.JWK(**{name: public[name] for name in _KEY_MEMBERS[kty]})
        if kty == "RSA" and key.get_op_key("verify").key_size < MIN_RSA_BITS:
            raise DPoPError("RSA key too short")
        token = jws.JWS()
        token.deserialize(proof)
        token.allowed_algs = [alg]
        token.verify(key)
    except DPoPError:
        raise
    except (JWException, ValueError, TypeError, KeyError):
        raise DPoPError("bad signature") from None
    # §4.3 (8-9): htm and htu of this request.
    if claims.get("htm") != htm:
        raise DPoPError("htm does not match the request")
    claimed_htu = claims.get("htu")
    if not isinstance(claimed_htu, str) or normalise_htu(claimed_htu) != normalise_htu(htu):
        raise DPoPError("htu does not match the request")
    # §4.3 (10-11): a nonce when the server asks for one; iat within the window.
    if nonces is not None and claims.get("nonce") not in nonces:
        raise DPoPError("a DPoP nonce is required", error="use_dpop_nonce")
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool) or abs(now - iat) > iat_window:
        raise DPoPError("iat is outside the acceptable window")
    # §4.3 (12): ath of the presented access token.
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise DPoPError("ath does not match the access token")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise DPoPError("jti is missing")
    # §11.1: a proof is used once (asked last, so a refused proof does not burn its jti).
    if not first_use(jti):
        raise DPoPError("the proof was used before")
    return Proof(jkt=jkt, jti=jti, claims=claims)


# ---- Django -------------------------------------------------------------------------------------
NONCE_PERIOD = 300


def _nonce_for(period: int) -> str:
    from django.conf import settings

    digest = hmac.new(
        settings.SECRET_KEY.encode("utf-8"), f"cells_oidc.dpop-nonce:{period}".encode(), hashlib.sha256
    ).digest()
    return _b64url(digest[:18])


def current_nonce(now: float | None = None) -> str:
    """RFC 9449 §8: the server nonce to hand out now (derived from ``SECRET_KEY`` and a 5-minute
    period, so every process agrees without shared state)."""
    return _nonce_for(int((time.time() if now is None else now) // NONCE_PERIOD))


def _accepted_nonces(now: float) -> tuple[str, ...]:
    period = int(now // NONCE_PERIOD)
    return (_nonce_for(period), _nonce_for(period - 1))


def check_request(
    request: Any, *, htu: str, access_token: str | None = None, nonce: bool = False
) -> Proof | None:
    """The verified proof of a Django ``request`` (its ``DPoP`` header), or ``None`` without one.

    ``htu`` is the URI the request was addressed to (without query); ``nonce``: require a
    server nonce. Raises :class:`DPoPError`. RFC 9449 §4.3 (1): one ``DPoP`` header at most.
    """
    from django.core.cache import caches

    from cells_oidc.conf import app_settings

    value = request.META.get("HTTP_DPOP")
    if value is None:
        return None
    if "," in value:  # WSGI joins repeated header fields with a comma
        raise DPoPError("one DPoP header")
    window = app_settings.DPOP_IAT_WINDOW
    cache = caches[app_settings.DPOP_CACHE]
    now = time.time()

    def first_use(jti: str) -> bool:
        digest = hashlib.sha256(jti.encode("utf-8")).hexdigest()
        # add() is atomic across processes in every shared cache backend.
        with isolated(cache):
            return bool(cache.add(f"cells_oidc:dpop-jti:{digest}", 1, timeout=2 * window + 5))

    return verify_proof(
        value.strip(),
        htm=request.method,
        htu=htu,
        now=now,
        iat_window=window,
        first_use=first_use,
        access_token=access_token,
        nonces=_accepted_nonces(now) if nonce else None,
    )


def request_jkt(oauthlib_request: Any) -> str | None:
    """The thumbprint of the verified proof of the token request ``oauthlib_request`` (set by the
    token view), or ``None`` when it carried none."""
    headers = getattr(oauthlib_request, "headers", None) or {}
    value = headers.get(JKT_META_KEY)
    return value if isinstance(value, str) and value else None


def bind_issued_tokens(token: dict[str, Any], request: Any, family: Any) -> None:
    """RFC 9449 §5: tokens issued to a request with a proof are DPoP tokens (``token_type``); a
    public client's refresh tokens are bound to the proof's key from then on (the sign-in's
    :class:`~cells_oidc.models.TokenFamily` keeps the thumbprint). The ``cnf`` claim of the access
    token is :func:`cells_oidc.internal.issuance.access_token_claims`'."""
    jkt = request_jkt(request)
    if jkt is None:
        return
    token["token_type"] = "DPoP"
    client = getattr(request, "client", None)
    if family is None or client is None or client.client_type != client.CLIENT_PUBLIC or family.dpop_jkt:
        return
    from cells_oidc.models import TokenFamily

    TokenFamily.objects.filter(pk=family.pk, dpop_jkt="").update(dpop_jkt=jkt)
    family.dpop_jkt = jkt


def refresh_allowed(family: Any, request: Any) -> bool:
    """RFC 9449 §5: a refresh token bound to a key is refreshed only with a proof of that key."""
    bound = getattr(family, "dpop_jkt", "")
    return not bound or request_jkt(request) == bound


# ---- resource servers (RFC 9449 §7) ---------------------------------------------------------------
class ResourceRefusal(InvalidToken):
    """A request refused for DPoP's sake at a resource server: answered 401 with a ``DPoP``
    challenge besides the ``Bearer`` one (RFC 9449 §7.1)."""

    dpop = True

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.error = error


def authorization_scheme(request: Any) -> str | None:
    """The lowercased scheme of the ``Authorization`` header of a Django request, if any."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme = header.strip(" \t").partition(" ")[0]
    return scheme.lower() or None


def check_resource_request(request: Any, token: str, claims: dict[str, Any]) -> None:
    """RFC 9449 §7: the DPoP rules of a resource request whose ``token`` has ``claims``.

    - ``Authorization: DPoP``: the token is DPoP-bound (``cnf.jkt``) and the ``DPoP`` header is a
      proof for this method and URI, of this token (``ath``), by the key the token is bound to;
    - any other way (``Bearer``, a form field): the token must not be DPoP-bound (§7.2).

    Raises :class:`ResourceRefusal`.
    """
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if authorization_scheme(request) != "dpop":
        if jkt is not None:
            raise ResourceRefusal("DPoP-bound token presented without the DPoP scheme and a proof")
        return
    if not isinstance(jkt, str):
        raise ResourceRefusal("not a DPoP-bound token")
    try:
        proof = check_request(request, htu=request.build_absolute_uri(request.path), access_token=token)
    except DPoPError as exc:
        raise ResourceRefusal(exc.reason, exc.error) from None
    if proof is None:
        raise ResourceRefusal("a DPoP proof is required", "invalid_dpop_proof")
    if not hmac.compare_digest(proof.jkt, jkt):
        raise ResourceRefusal("the proof's key is not the key the token is bound to", "invalid_dpop_proof")
