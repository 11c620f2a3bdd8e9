"""The one place that issues tokens: what an access token, an ID token and a refresh token carry.

oauthlib drives a token request and calls, in this order, the access-token generator
(:func:`generate_access_token`, DOT's ``ACCESS_TOKEN_GENERATOR``), the refresh-token generator
(:func:`generate_refresh_token`), the validator's ID-token hooks (:func:`id_token_claims`,
:func:`finalize_id_token`) and the validator's ``_save_bearer_token``, which asks
:func:`issue_refresh_token` whether the refresh token it was handed is issued at all. The
validator's methods are one-line calls into this module; the decisions a site may make
differently are the adapter's hooks (:mod:`cells_oidc.adapter`); signing is
:func:`cells_oidc.internal.tokens.sign`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import UNICODE_ASCII_CHARACTER_SET

from cells_oidc.adapter import REGISTERED_CLAIMS, get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal.context import sign_in_context
from cells_oidc.internal.dpop import request_jkt
from cells_oidc.internal.endpoints import issuer
from cells_oidc.internal.tokens import ACCESS_TOKEN_TYP, ID_TOKEN_TYP, sign

__all__ = [
    "access_token_claims",
    "finalize_id_token",
    "generate_access_token",
    "generate_refresh_token",
    "id_token_claims",
    "issue_refresh_token",
    "released_claims",
    "requested_resources",
    "user_claims",
]

REFRESH_GRANT = "refresh_token"


# ---- access tokens (RFC 9068) ------------------------------------------------------------
def generate_access_token(request: Any, refresh_token: bool = False) -> str:
    """DOT's ``ACCESS_TOKEN_GENERATOR``: a signed RFC 9068 JWT.

    The JWT is what the client receives and what DOT stores (as a SHA-256 checksum, RFC 9700 §4).
    """
    # RFC 9068 §2.1: RS256 unless the site chose ES256 or EdDSA (CELLS_OIDC_ACCESS_TOKEN_ALGORITHM).
    return sign(access_token_claims(request), typ=ACCESS_TOKEN_TYP, alg=app_settings.ACCESS_TOKEN_ALGORITHM)


def access_token_claims(request: Any, *, now: int | None = None) -> dict[str, Any]:
    """The RFC 9068 §2.2 claims of an access token for the oauthlib ``request`` being answered,
    with the adapter's :meth:`~cells_oidc.adapter.DefaultAdapter.extra_access_token_claims`."""
    now = int(time.time()) if now is None else now
    scopes = list(getattr(request, "scopes", None) or [])
    user = getattr(request, "user", None)
    client = request.client
    client_id = client.client_id
    adapter = get_adapter()
    claims: dict[str, Any] = {
        "iss": issuer(),
        # RFC 9068 §2.2: the client's own id when no user is involved (client credentials).
        "sub": adapter.subject(user, client=client) if user is not None else client_id,
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
    jkt = request_jkt(request)
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1: sender-constrained to the proof's key
    extra = adapter.extra_access_token_claims(
        user=user, client=client, scopes=scopes, grant_type=getattr(request, "grant_type", None)
    )
    return {**_unregistered(extra), **claims}


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


# ---- refresh tokens ------------------------------------------------------------------------
#: oauthlib's alphabet of tokens (ASCII letters and digits): 40 characters carry 238 bits.
_REFRESH_ALPHABET = UNICODE_ASCII_CHARACTER_SET
_REFRESH_LENGTH = 40
#: The largest multiple of the alphabet's size a byte can be below: bytes from it up are dropped,
#: so that every character is equally likely (rejection sampling; ``byte % 62`` alone is biased).
_REFRESH_BOUND = 256 - 256 % len(_REFRESH_ALPHABET)


def generate_refresh_token(request: Any) -> str:
    """DOT's ``REFRESH_TOKEN_GENERATOR``: an opaque 40-character random string of ASCII letters and
    digits, as oauthlib's ``generate_token(40)`` makes, from one read of the system's CSPRNG
    (``secrets.token_bytes``) where oauthlib's ``SystemRandom.choice`` reads it once per character
    (docs/performance.md)."""
    chosen: list[str] = []
    while len(chosen) < _REFRESH_LENGTH:
        for byte in secrets.token_bytes(_REFRESH_LENGTH + 8):
            if byte < _REFRESH_BOUND:
                chosen.append(_REFRESH_ALPHABET[byte % len(_REFRESH_ALPHABET)])
    return "".join(chosen[:_REFRESH_LENGTH])


def issue_refresh_token(request: Any) -> bool:
    """Whether the refresh token oauthlib generated for ``request`` is issued.

    Decided when a sign-in's first tokens are issued (code exchange, device code), by the
    adapter's :meth:`~cells_oidc.adapter.DefaultAdapter.issue_refresh_token` (by default only for
    offline access, OpenID Connect Core §11). A refresh token exists only when that was granted,
    and RFC 6749 §6 + RFC 9700 §4.14.2 rotation then always issues a successor, even when the
    refresh narrows the scope (as Hydra does: the offline check is on the original grant).
    """
    grant_type = getattr(request, "grant_type", None)
    if grant_type == REFRESH_GRANT:
        return True
    return bool(
        get_adapter().issue_refresh_token(
            client=request.client,
            scopes=list(getattr(request, "scopes", None) or []),
            grant_type=grant_type,
            user=getattr(request, "user", None),
        )
    )


# ---- user claims (ID token and userinfo) ---------------------------------------------------
def user_claims(request: Any) -> dict[str, Any]:
    """``sub`` and the adapter's claims of the request's user, before filtering by scope."""
    adapter = get_adapter()
    claims = {"sub": adapter.subject(request.user, client=getattr(request, "client", None))}
    claims.update(adapter.claims(user=request.user))
    return claims


def released_claims(claims: Mapping[str, Any], scopes: Iterable[str] | None) -> dict[str, Any]:
    """The ``claims`` the granted ``scopes`` release (OpenID Connect Core §5.4); a claim the
    adapter's ``claim_scopes`` does not list is released with ``openid``."""
    granted = set(scopes or [])
    claim_scopes = get_adapter().claim_scopes
    return {name: value for name, value in claims.items() if claim_scopes.get(name, "openid") in granted}


# ---- ID tokens (OpenID Connect Core §2) ----------------------------------------------------
def id_token_claims(request: Any, claims: Mapping[str, Any]) -> tuple[dict[str, Any], datetime]:
    """The claims this provider adds to oauthlib's ID token (which holds ``aud``, ``iat``,
    ``nonce``, ``at_hash``/``c_hash``) and the expiry DOT stores for it.

    ``claims`` are the user's released claims (``sub`` included); the adapter's
    :meth:`~cells_oidc.adapter.DefaultAdapter.extra_id_token_claims` come next, never replacing
    a registered claim.
    """
    expires = timezone.now() + timedelta(seconds=int(oauth2_settings.ID_TOKEN_EXPIRE_SECONDS))
    adapter = get_adapter()
    extra = adapter.extra_id_token_claims(
        user=request.user,
        client=request.client,
        scopes=list(getattr(request, "scopes", None) or []),
        grant_type=getattr(request, "grant_type", None),
    )
    result: dict[str, Any] = {**dict(claims), **_unregistered(extra)}
    context = sign_in_context(request)
    result.update(
        iss=issuer(),
        exp=int(expires.timestamp()),
        # OpenID Connect Core §12.2: a refreshed ID token keeps the original auth_time.
        auth_time=context.auth_time if context.auth_time is not None else _last_login(request.user),
        jti=str(uuid.uuid4()),
    )
    if context.sid:
        result["sid"] = context.sid  # OpenID Connect Front-Channel Logout §3
    if getattr(request, "grant_type", None) == REFRESH_GRANT:
        result.pop("nonce", None)  # OpenID Connect Core §12.2
    return result, expires


def finalize_id_token(
    id_token: dict[str, Any],
    request: Any,
    claims: Mapping[str, Any],
    expires: datetime,
    *,
    save: Callable[[str, Any, datetime], Any],
) -> str:
    """Complete oauthlib's ``id_token`` with ``claims``, sign it, and ``save`` its record (DOT's
    ``IDToken``, which becomes ``request.id_token``); the signed JWT."""
    id_token.update(claims)
    if isinstance(id_token.get("iat"), int):
        # OpenID Connect Core §2: exp from the same instant as oauthlib's iat, so that
        # exp - iat is exactly ID_TOKEN_EXPIRE_SECONDS (DOT reads the clock a second time).
        id_token["exp"] = id_token["iat"] + int(oauth2_settings.ID_TOKEN_EXPIRE_SECONDS)
    if request.grant_type == REFRESH_GRANT:
        id_token.pop("nonce", None)  # OpenID Connect Core §12.2
    elif "nonce" not in id_token and request.nonce:
        id_token["nonce"] = request.nonce  # oauthlib #746: the code's nonce
    serialized = sign(id_token, typ=ID_TOKEN_TYP, alg=id_token_algorithm(request.client))
    saved = save(id_token["jti"], request, expires)
    request.access_token = saved
    request.id_token = saved
    return serialized


def id_token_algorithm(client: Any) -> str:
    """The algorithm of ``client``'s ID tokens: its policy's (OpenID Connect Registration §2,
    ``id_token_signed_response_alg``), RS256 by default (OpenID Connect Core §15.1)."""
    from cells_oidc.models import policy_for

    return policy_for(client).id_token_algorithm or "RS256"


def _last_login(user: Any) -> int:
    """DOT's fallback ``auth_time`` for a token of no recorded sign-in: the user's last login."""
    value = getattr(user, "last_login", None) or timezone.now()
    if timezone.is_naive(value):
        value = (
            value.replace(tzinfo=dt_timezone.utc)
            if settings.USE_TZ
            else timezone.make_aware(value, timezone.get_default_timezone())
        )
    return int(value.timestamp())


def _unregistered(extra: Any) -> dict[str, Any]:
    """The adapter's extra claims without the registered ones, which this provider alone sets."""
    if not extra:
        return {}
    if not isinstance(extra, Mapping):
        raise TypeError("An adapter's extra claims must be a dict.")
    return {
        name: value
        for name, value in extra.items()
        if isinstance(name, str) and name not in REGISTERED_CLAIMS
    }
