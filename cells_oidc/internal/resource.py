"""Verification of bearer tokens for APIs: the resource-server half of cells-oidc.

:func:`authenticate_token` turns the string of an ``Authorization: Bearer`` header into a user
and a :class:`TokenInfo`, or raises :class:`InvalidToken`. It serves two set-ups:

- **same site** (default): the API lives in the Django site that hosts the provider; tokens are
  checked against the provider's own keys and issuer, with no network and no database query
  (besides loading the user);
- **remote mode** (``CELLS_OIDC_RESOURCE_ISSUER`` set): the API lives in another site that only
  knows the issuer's URL; the keys come from the issuer's discovery document and JWKS over
  HTTP, cached, and the provider's introspection endpoint can optionally be asked whether a
  token was revoked.

The verification rules (RFC 9068 §4, RFC 8725, RFC 7515, RFC 7519) are in :func:`verify_jwt`; the
DRF and plain-Django front ends are :mod:`cells_oidc.api.authentication` and
:mod:`cells_oidc.decorators`; the revocation deny-list is :mod:`cells_oidc.internal.revocation`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.exceptions import TooManyFieldsSent

from cells_oidc.conf import app_settings

logger = logging.getLogger(__name__)

#: RFC 8725 §3.1: the one algorithm accepted. Never ``none``, never an HMAC (whose "secret" an
#: attacker would pick as our public key), never whatever the token header asks for.
ALLOWED_ALGORITHMS = frozenset({"RS256"})
#: RFC 9068 §4: ``typ`` is ``at+jwt`` or ``application/at+jwt``; media types compare
#: case-insensitively (RFC 7515 §4.1.9).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
#: Header parameters that would make us fetch or trust a key named by the token itself
#: (RFC 8725 §3.10, RFC 7515 §4.1.2–4.1.6), or change what the signature covers (RFC 7797).
FORBIDDEN_HEADER_PARAMETERS = frozenset({"jku", "jwk", "x5u", "x5c", "b64"})
#: Far longer than any token we issue; bounds the work spent on garbage.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class InvalidToken(Exception):
    """A bearer token that must be refused; ``str()`` is a short reason for logs and developers.

    ``error`` is the RFC 6750 §3.1 error code the API answers with.
    """

    error = "invalid_token"


@dataclass(frozen=True)
class TokenInfo:
    """What a verified bearer token grants: ``request.auth`` of the DRF class and decorator."""

    #: ``"jwt"`` for an access token of the provider, ``"pat"`` for a personal access token.
    kind: str
    #: The ``sub`` claim (the adapter's subject of the user, or the client id for a token the
    #: client obtained for itself).
    subject: str
    client_id: str | None
    scopes: frozenset[str]
    #: The JWT claims (for a personal access token: ``sub``, ``scope``, ``exp``, ``iat``).
    claims: dict[str, Any] = field(hash=False)
    #: Expiry, seconds since the epoch.
    expires_at: int
    #: The ``jti`` of a JWT, or the primary key of a personal access token.
    token_id: str | None

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        """Whether every scope of ``scopes`` was granted."""
        return frozenset(scopes) <= self.scopes


class TokenUser:
    """The user of a token when users are not loaded from the database (remote mode).

    Authenticated, active, without staff rights or permissions; ``pk`` and ``username`` are the
    token's subject.
    """

    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False
    is_authenticated = True

    def __init__(self, info: TokenInfo) -> None:
        self.token = info
        self.pk = self.id = info.subject
        self.username = info.subject

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenUser) and other.pk == self.pk

    def __hash__(self) -> int:
        return hash(("TokenUser", self.pk))

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perm_list: Iterable[str], obj: Any = None) -> bool:
        return False

    def has_module_perms(self, module: str) -> bool:
        return False


# ---- the entry point ---------------------------------------------------------------------------
def authenticate_token(token: str) -> tuple[Any, TokenInfo]:
    """Verify a bearer token and return ``(user, info)``; raise :class:`InvalidToken` otherwise.

    A token with the personal-access-token prefix goes to :func:`cells_oidc.internal.pat.authenticate_pat`;
    any other is verified as a JWT access token of the provider (RFC 9068). In remote mode,
    personal access tokens are checked by the provider's introspection endpoint, when configured.
    """
    if not isinstance(token, str) or not token:
        raise InvalidToken("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    if app_settings.RESOURCE_ISSUER is not None:
        return _authenticate_remote(token)
    from cells_oidc.internal.pat import PAT_PREFIX, authenticate_pat

    if token.startswith(PAT_PREFIX):
        return authenticate_pat(token)
    return authenticate_jwt(token)


def authenticate_jwt(token: str) -> tuple[Any, TokenInfo]:
    """Verify an access token issued by the provider of this site (same-site mode)."""
    from cells_oidc.internal.endpoints import issuer

    claims = verify_jwt(
        token,
        key_for=local_key_for,
        issuer=issuer(),
        audiences=app_settings.RESOURCE_AUDIENCE,
        leeway=app_settings.RESOURCE_LEEWAY,
    )
    info = token_info(claims)
    _refuse_if_revoked(token)
    return user_for(info), info


def token_info(claims: dict[str, Any]) -> TokenInfo:
    """The :class:`TokenInfo` of verified access-token claims."""
    scope = claims.get("scope", "")
    return TokenInfo(
        kind="jwt",
        subject=claims["sub"],
        client_id=claims["client_id"],
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        claims=claims,
        expires_at=int(claims["exp"]),
        token_id=claims.get("jti"),
    )


def _refuse_if_revoked(token: str) -> None:
    from cells_oidc.internal import revocation

    try:
        revoked = revocation.is_revoked(token)
    except revocation.RevocationStatusUnavailable:
        raise InvalidToken("revocation status unavailable") from None
    if revoked:
        raise InvalidToken("revoked")


# ---- users -------------------------------------------------------------------------------------
def user_for(info: TokenInfo) -> Any:
    """The user a token acts for.

    - a token a client obtained for itself (``sub`` equals ``client_id``, RFC 9068 §2.2 and §5)
      acts for no user: ``AnonymousUser``;
    - with ``CELLS_OIDC_RESOURCE_LOAD_USER`` off: a :class:`TokenUser` (no database);
    - otherwise the active Django user whose adapter subject is ``sub`` (one query), found by the
      adapter's ``user_for_subject(subject=...)`` hook when it has one, else by primary key
      (the default subject).
    """
    if info.kind == "jwt" and info.client_id is not None and info.subject == info.client_id:
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()
    if not app_settings.RESOURCE_LOAD_USER:
        return TokenUser(info)
    user = _load_user(info.subject)
    if user is None:
        raise InvalidToken("unknown user")
    if not getattr(user, "is_active", False):
        raise InvalidToken("inactive user")
    return user


def _load_user(subject: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    from cells_oidc.adapter import DefaultAdapter, get_adapter

    adapter = get_adapter()
    finder = getattr(adapter, "user_for_subject", None)
    if callable(finder):
        user = finder(subject=subject)
    elif type(adapter).subject is not DefaultAdapter.subject:
        logger.error(
            "The adapter %s overrides subject() but has no user_for_subject(subject=...): "
            "bearer tokens cannot be mapped to users.",
            type(adapter).__name__,
        )
        return None
    else:
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(subject)
        except (ValidationError, ValueError, TypeError):
            return None
        user = model._default_manager.filter(pk=pk).first()
    # Only the user whose subject is exactly ``sub`` ("+1" or " 1" parse as the pk 1 too).
    if user is None or adapter.subject(user) != subject:
        return None
    return user


# ---- JWT verification ----------------------------------------------------------------------------
KeyLookup = Callable[[str], "rsa.RSAPublicKey | None"]


def verify_jwt(
    token: object,
    *,
    key_for: KeyLookup,
    issuer: str,
    audiences: Iterable[str],
    leeway: int = 0,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an RFC 9068 JWT access token and return its claims, or raise :class:`InvalidToken`.

    ``key_for(kid)`` returns the RSA public key the issuer publishes under ``kid`` (or ``None``);
    it is called only for a well-formed ``kid`` of a token whose header passed every check.
    """
    claims = verify_signature(
        token, key_for=key_for, types=ACCESS_TOKEN_TYPES, wrong_type="not an access token"
    )
    _check_claims(claims, issuer=issuer, audiences=audiences, leeway=leeway, now=now)
    return claims


def verify_signature(
    token: object, *, key_for: KeyLookup, types: Iterable[str], wrong_type: str = "unexpected token type"
) -> dict[str, Any]:
    """Check the form, the protected header and the signature of a JWT; return its claims.

    The shared half of every JWT verification (access tokens here, ID tokens in
    :mod:`cells_oidc.internal.tokens`): ``types`` are the accepted ``typ`` values, lower case. The claims
    are not checked.
    """
    # RFC 7515 §7.1: the compact serialisation, three base64url parts; nothing else (no JWE,
    # no JSON serialisation, no unsigned token).
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
        raise InvalidToken("not a compact JWS")
    encoded_header, encoded_payload, encoded_signature = token.split(".")
    if not encoded_signature:
        raise InvalidToken("unsigned token")
    header = _json_object(encoded_header)
    # RFC 8725 §3.1, §2.1: the algorithm comes from our allow-list, not from the token.
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise InvalidToken("algorithm not allowed")
    # RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps ID tokens (typ JWT) and other JWTs out.
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in frozenset(types):
        raise InvalidToken(wrong_type)
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
    signature = _b64decode(encoded_signature)
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    try:
        public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise InvalidToken("bad signature") from exc
    return _json_object(encoded_payload)


def _check_claims(
    claims: dict[str, Any], *, issuer: str, audiences: Iterable[str], leeway: int, now: float | None
) -> None:
    # RFC 9068 §4: iss must be exactly the issuer (OpenID Connect Discovery §4.3: byte for byte).
    if claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    expected = {value for value in audiences if value}
    if not expected:
        raise InvalidToken("no audience configured")
    aud = claims.get("aud")
    token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    # RFC 9068 §4, RFC 7519 §4.1.3: aud must contain an identifier of this resource server.
    if not expected.intersection(value for value in token_audiences if isinstance(value, str)):
        raise InvalidToken("wrong audience")
    current = time.time() if now is None else now
    # RFC 9068 §2.2: exp and iat are required; RFC 7519 §4.1.4–4.1.6 with a small leeway.
    exp = _numeric_date(claims.get("exp"))
    if exp is None:
        raise InvalidToken("missing expiry")
    if current >= exp + leeway:
        raise InvalidToken("expired")
    iat = _numeric_date(claims.get("iat"))
    if iat is None:
        raise InvalidToken("missing issue time")
    if iat - leeway > current:
        raise InvalidToken("issued in the future")
    if "nbf" in claims:
        nbf = _numeric_date(claims["nbf"])
        if nbf is None or nbf - leeway > current:
            raise InvalidToken("not yet valid")
    # RFC 9068 §2.2: sub and client_id are required strings; jti too (it names the token).
    for name in ("sub", "client_id", "jti"):
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidToken(f"missing {name}")
    if "scope" in claims and not isinstance(claims["scope"], str):
        raise InvalidToken("malformed scope")


def _numeric_date(value: object) -> float | None:
    # RFC 7519 §2: NumericDate is a JSON number; booleans are not numbers here.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed token") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # RFC 7515 §4, RFC 7519 §4: names are unique; a duplicate invites parser differentials.
            raise InvalidToken("duplicate member")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise InvalidToken("malformed token")


def _json_object(segment: str) -> dict[str, Any]:
    raw = _b64decode(segment)
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value


def public_key_from_jwk(data: object) -> rsa.RSAPublicKey | None:
    """The RSA public key of a JWK usable for RS256 signatures, or ``None`` (RFC 7517 §4, §6.3)."""
    from jwcrypto import jwk
    from jwcrypto.common import JWException

    if not isinstance(data, dict) or data.get("kty") != "RSA":
        return None
    if data.get("use", "sig") != "sig" or data.get("alg", "RS256") not in ALLOWED_ALGORITHMS:
        return None
    public = {name: data[name] for name in ("kty", "n", "e") if name in data}
    try:
        key = jwk.JWK(**public).get_op_key("verify")
    except (JWException, ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        return None
    return key


_local_public_keys: dict[str, rsa.RSAPublicKey] = {}


def local_key_for(kid: str) -> rsa.RSAPublicKey | None:
    """The public key of the provider of this site named ``kid`` (active or inactive, from settings).

    The kid is the RFC 7638 thumbprint of the key, so the public key derived once per kid stays
    right; whether the kid is still published is asked of :mod:`cells_oidc.internal.keys` every time.
    """
    from cells_oidc.internal import keys

    signing_key = keys.key_by_kid(kid)
    if signing_key is None:
        return None
    public = _local_public_keys.get(kid)
    if public is None:
        public = signing_key.key.get_op_key("verify")
        _local_public_keys[kid] = public
    return public


# ---- remote mode ---------------------------------------------------------------------------------
class RemoteError(Exception):
    """A remote provider could not be reached or answered something unusable."""


def _session() -> Any:
    import requests

    session = requests.Session()
    session.headers.update(
        {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "cells-oidc-resource"}
    )
    return session


def _check_url(url: object, *, issuer: str) -> str:
    """An endpoint URL from discovery: absolute http(s), and https unless the issuer itself is http."""
    if not isinstance(url, str) or len(url) > 2048:
        raise RemoteError("endpoint URL missing")
    parts = urlsplit(url)
    issuer_scheme = urlsplit(issuer).scheme
    allowed = {"https"} if issuer_scheme == "https" else {"https", "http"}
    if parts.scheme not in allowed or not parts.netloc or parts.username or parts.password:
        raise RemoteError("endpoint URL not allowed")
    return url


def fetch_json(
    method: str, url: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One bounded HTTP call to a remote provider: a deadline, a size limit, no redirects."""
    import requests

    timeout = app_settings.RESOURCE_HTTP_TIMEOUT
    limit = app_settings.RESOURCE_HTTP_MAX_BYTES
    deadline = time.monotonic() + timeout
    try:
        with (
            _session() as session,
            session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            if response.status_code != 200:
                raise RemoteError(f"{url} answered {response.status_code}")
            # We ask for an uncompressed body: a compressed one could inflate far beyond the limit.
            if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", ""):
                raise RemoteError(f"{url}: compressed response")
            declared = response.headers.get("Content-Length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise RemoteError(f"{url}: response too large")
            body = bytearray()
            for chunk in response.iter_content(8192):
                body += chunk
                if len(body) > limit:
                    raise RemoteError(f"{url}: response too large")
                if time.monotonic() > deadline:
                    raise RemoteError(f"{url}: too slow")
    except requests.RequestException as exc:
        raise RemoteError(f"{url}: {type(exc).__name__}") from exc
    try:
        value = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteError(f"{url}: not JSON") from exc
    if not isinstance(value, dict):
        raise RemoteError(f"{url}: not a JSON object")
    return value


class RemoteProvider:
    """Discovery metadata and signing keys of one remote issuer, cached in this process.

    The keys are used for ``CELLS_OIDC_RESOURCE_JWKS_CACHE_SECONDS``; a ``kid`` that is not among
    them (a rotation) fetches them again, but never more than once per
    ``CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS``, so that tokens with made-up ``kid`` values
    cannot make this process hammer the provider. When a fetch fails, the keys fetched before
    stay in use.
    """

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._lock = threading.Lock()
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._metadata: dict[str, Any] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        #: Number of fetches of the key set (for monitoring).
        self.fetches = 0

    def key_for(self, kid: str) -> rsa.RSAPublicKey | None:
        keys = self._keys
        if kid in keys and time.monotonic() - self._fetched_at < app_settings.RESOURCE_JWKS_CACHE_SECONDS:
            return keys[kid]
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= app_settings.RESOURCE_JWKS_CACHE_SECONDS
            may_fetch = now - self._attempted_at >= app_settings.RESOURCE_JWKS_MIN_REFRESH_SECONDS
            if (stale or kid not in self._keys) and may_fetch:
                self._refresh(now)
            return self._keys.get(kid)

    def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched with the keys when never fetched yet)."""
        if not self._metadata:
            with self._lock:
                now = time.monotonic()
                if (
                    not self._metadata
                    and now - self._attempted_at >= app_settings.RESOURCE_JWKS_MIN_REFRESH_SECONDS
                ):
                    self._refresh(now)
        return self._metadata

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            metadata = self._discover()
            jwks_uri = _check_url(metadata.get("jwks_uri"), issuer=self.issuer)
            self.fetches += 1
            key_set = fetch_json("GET", jwks_uri)
        except RemoteError as exc:
            logger.warning("Could not refresh the keys of %s: %s", self.issuer, exc)
            return
        keys: dict[str, rsa.RSAPublicKey] = {}
        entries = key_set.get("keys")
        for entry in entries[:64] if isinstance(entries, list) else []:
            kid = entry.get("kid") if isinstance(entry, dict) else None
            public = public_key_from_jwk(entry)
            if isinstance(kid, str) and kid and len(kid) <= MAX_KID_LENGTH and public is not None:
                keys[kid] = public
        if not keys:
            logger.warning("The JWKS of %s has no usable RS256 key.", self.issuer)
            return
        self._metadata = metadata
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _discover(self) -> dict[str, Any]:
        # OpenID Connect Discovery §4.1: the issuer without its trailing slash, plus the path.
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = fetch_json("GET", url)
        # OpenID Connect Discovery §4.3: the issuer in the document MUST be identical to the one
        # used to find it, or an attacker-controlled document could name another issuer.
        if metadata.get("issuer") != self.issuer:
            raise RemoteError(f"{url} names another issuer")
        return metadata


_remote_providers: dict[str, RemoteProvider] = {}
_remote_lock = threading.Lock()


def remote_provider(issuer: str) -> RemoteProvider:
    """The process-wide :class:`RemoteProvider` of ``issuer``."""
    with _remote_lock:
        provider = _remote_providers.get(issuer)
        if provider is None:
            if urlsplit(issuer).scheme not in ("https", "http"):
                raise InvalidToken("issuer misconfigured")
            provider = _remote_providers[issuer] = RemoteProvider(issuer)
        return provider


def clear_remote_cache(**kwargs: Any) -> None:
    """Forget every remote provider's metadata and keys (``setting_changed`` receiver, tests)."""
    setting = kwargs.get("setting")
    if setting is None or str(setting).startswith("CELLS_OIDC_RESOURCE_"):
        with _remote_lock:
            _remote_providers.clear()


def _authenticate_remote(token: str) -> tuple[Any, TokenInfo]:
    issuer = app_settings.RESOURCE_ISSUER
    assert issuer is not None
    provider = remote_provider(issuer)
    if token.count(".") != 2:
        # Not a JWT: a personal access token, which only the provider can check.
        return _authenticate_opaque_remote(token, provider)
    claims = verify_jwt(
        token,
        key_for=provider.key_for,
        issuer=issuer,
        audiences=app_settings.RESOURCE_AUDIENCE,
        leeway=app_settings.RESOURCE_LEEWAY,
    )
    info = token_info(claims)
    _refuse_if_revoked(token)
    if _introspection_configured():
        active = _introspect(token, provider, expires_at=info.expires_at)
        if active is None:
            raise InvalidToken("revoked")
    return user_for(info), info


def _introspection_configured() -> bool:
    return bool(
        app_settings.RESOURCE_INTROSPECTION_CLIENT_ID and app_settings.RESOURCE_INTROSPECTION_CLIENT_SECRET
    )


def _authenticate_opaque_remote(token: str, provider: RemoteProvider) -> tuple[Any, TokenInfo]:
    if not _introspection_configured():
        raise InvalidToken("not a JWT")
    data = _introspect(token, provider, expires_at=None)
    if data is None:
        raise InvalidToken("inactive token")
    exp = _numeric_date(data.get("exp"))
    sub = data.get("sub")
    scope = data.get("scope", "")
    if exp is None or time.time() >= exp or not isinstance(sub, str) or not sub or not isinstance(scope, str):
        raise InvalidToken("inactive token")
    if data.get("iss", provider.issuer) != provider.issuer:
        raise InvalidToken("wrong issuer")
    if "aud" in data:
        # RFC 7662 §4: a token the provider says is for another resource server is not for us.
        aud = data["aud"]
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(app_settings.RESOURCE_AUDIENCE).intersection(a for a in audiences if isinstance(a, str)):
            raise InvalidToken("wrong audience")
    client_id = data.get("client_id")
    claims = {"sub": sub, "scope": scope, "exp": int(exp)}
    iat = _numeric_date(data.get("iat"))
    if iat is not None:
        claims["iat"] = int(iat)
    info = TokenInfo(
        kind="pat",
        subject=sub,
        client_id=client_id if isinstance(client_id, str) else None,
        scopes=frozenset(scope.split()),
        claims=claims,
        expires_at=int(exp),
        token_id=None,
    )
    return user_for(info), info


def _introspect(token: str, provider: RemoteProvider, *, expires_at: int | None) -> dict[str, Any] | None:
    """The RFC 7662 answer for ``token`` when it is active, else ``None``; cached briefly.

    An "active" answer is reused for ``CELLS_OIDC_RESOURCE_INTROSPECTION_CACHE_SECONDS`` (the
    bound on how late a revocation is noticed, RFC 7662 §4); an inactive JWT goes on the
    deny-list until it expires. When the provider cannot be asked, the token is refused.
    """
    from cells_oidc.internal import revocation

    cache = revocation.revocation_cache()
    key = f"cells_oidc:introspection:{revocation.token_checksum(token)}"
    try:
        cached = cache.get(key)
    except Exception:  # noqa: BLE001 - a cache outage must refuse, not crash
        logger.exception("The introspection cache is unavailable.")
        raise InvalidToken("revocation status unavailable") from None
    if isinstance(cached, dict):
        return cached
    endpoint = provider.metadata().get("introspection_endpoint")
    try:
        url = _check_url(endpoint, issuer=provider.issuer)
        client_id = app_settings.RESOURCE_INTROSPECTION_CLIENT_ID or ""
        secret = app_settings.RESOURCE_INTROSPECTION_CLIENT_SECRET or ""
        # RFC 6749 §2.3.1: both are form-urlencoded before they are joined and base64-encoded.
        credentials = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
        answer = fetch_json(
            "POST",
            url,
            data={"token": token, "token_type_hint": "access_token"},
            headers={"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")},
        )
    except RemoteError as exc:
        logger.warning("Introspection at %s failed: %s", provider.issuer, exc)
        raise InvalidToken("revocation status unavailable") from None
    if answer.get("active") is not True:
        if expires_at is not None:
            revocation.deny(token, expires_at)
        return None
    ttl = app_settings.RESOURCE_INTROSPECTION_CACHE_SECONDS
    exp = _numeric_date(answer.get("exp"))
    if exp is not None:
        ttl = min(ttl, int(exp - time.time()))
    if ttl > 0:
        try:
            cache.set(key, answer, ttl)
        except Exception:  # noqa: BLE001
            logger.exception("The introspection cache is unavailable.")
    return answer


# ---- the HTTP side (RFC 6750) ------------------------------------------------------------------
#: RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: RFC 6749 §3.3 / RFC 6750 §3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_QUERY_PARAMETER = "access_token"


class BearerRequestError(Exception):
    """A request that presents a bearer token the wrong way (RFC 6750 §3.1 ``invalid_request``)."""

    error = "invalid_request"


def bearer_token(request: Any) -> str | None:
    """The bearer token of a Django ``request``, or ``None`` when it presents none.

    RFC 6750 §2.1: ``Authorization: Bearer <b64token>``, the scheme compared case-insensitively
    (RFC 9110 §11.1), exactly one token68 after it. Another scheme is not ours: ``None``. The
    ``access_token`` query parameter (§2.3) is refused unless ``CELLS_OIDC_RESOURCE_ALLOW_QUERY_TOKEN``
    is on, and a request may not use both (§2). Raises :class:`BearerRequestError`.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    token: str | None = None
    header = header.strip(" \t")  # RFC 9110 §5.5: optional whitespace around a field value
    if header:
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer":
            credentials = rest.lstrip(" ")
            if not credentials:
                raise BearerRequestError("The Bearer scheme needs a token.")
            if not credentials.isascii() or not _B64TOKEN.fullmatch(credentials):
                raise BearerRequestError("The Authorization header must hold exactly one bearer token.")
            token = credentials
    try:
        query_values = request.GET.getlist(_QUERY_PARAMETER) if hasattr(request, "GET") else []
    except TooManyFieldsSent:
        # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS: an invalid_request (RFC 6750 §3.1), not the
        # site's HTML 400 page.
        raise BearerRequestError("The query string has too many parameters.") from None
    if query_values:
        if not app_settings.RESOURCE_ALLOW_QUERY_TOKEN:
            raise BearerRequestError("Send the access token in the Authorization header, not in the URL.")
        if token is not None or len(query_values) > 1:
            raise BearerRequestError("Send one access token, one way.")
        value = query_values[0]
        if not value.isascii() or not _B64TOKEN.fullmatch(value):
            raise BearerRequestError("Malformed access_token parameter.")
        token = value
    if token is not None and len(token) > MAX_TOKEN_LENGTH:
        raise BearerRequestError("The token is too long.")
    return token


def _quoted(value: str) -> str:
    # RFC 9110 §5.6.4 quoted-string: escape backslash and double quote, drop control characters.
    cleaned = "".join(ch for ch in value if ch == "\t" or (" " <= ch <= "~"))
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(
    error: str | None = None, description: str | None = None, *, scope: Iterable[str] | None = None
) -> str:
    """An RFC 6750 §3 ``WWW-Authenticate`` challenge.

    Without credentials in the request there is no error code (§3.1); ``scope`` names the scopes
    needed on ``insufficient_scope``.
    """
    parts = [f"realm={_quoted(app_settings.RESOURCE_REALM)}"]
    if error:
        parts.append(f"error={_quoted(error)}")
    if error and description:
        parts.append(f"error_description={_quoted(description)}")
    if scope:
        parts.append(f"scope={_quoted(' '.join(sorted(scope)))}")
    return "Bearer " + ", ".join(parts)


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` as a frozenset, each checked against the RFC 6749 §3.3 syntax (ValueError)."""
    if isinstance(scopes, str):
        scopes = scopes.split()
    result = frozenset(scopes)
    for scope in result:
        if not isinstance(scope, str) or not SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"not a scope token: {scope!r}")
    return result
