"""Authentication of bearer tokens for APIs: the resource-server half of cells-oidc.

:func:`authenticate_token` turns the string of an ``Authorization: Bearer`` header into a user
and a :class:`~cells_oidc.internal.token_info.TokenInfo`, or raises
:class:`~cells_oidc.internal.jws.InvalidToken`. It dispatches on the set-up and the token:

- **same site** (default): the API lives in the Django site that hosts the provider; a JWT is
  checked against the provider's own keys and issuer, with no network and no database query
  (besides loading the user); a personal access token goes to :mod:`cells_oidc.internal.pat`;
- **remote mode** (``CELLS_OIDC_RESOURCE_ISSUER`` set): the API lives in another site that only
  knows the issuer's URL; the keys come from the issuer over HTTP
  (:mod:`cells_oidc.internal.remote`), and the provider's introspection endpoint can be asked
  whether a token was revoked (and is the only judge of a personal access token).

The rules of a JWT are :mod:`cells_oidc.internal.jws`; the RFC 6750 request and answer are
:mod:`cells_oidc.internal.bearer`; the revocation deny-list is :mod:`cells_oidc.internal.revocation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.functional import SimpleLazyObject

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import revocation
from cells_oidc.internal.bearer import bearer_token
from cells_oidc.internal.endpoints import issuer
from cells_oidc.internal.jws import (
    ACCESS_TOKEN_CLAIMS,
    ACCESS_TOKEN_TYP,
    MAX_TOKEN_LENGTH,
    InvalidToken,
    numeric_date,
    unverified_subject,
)
from cells_oidc.internal.jws import verify as verify_jws
from cells_oidc.internal.pat import PAT_PREFIX, authenticate_pat
from cells_oidc.internal.remote import (
    RemoteProvider,
    clear_remote_cache,
    introspect,
    introspection_configured,
    remote_provider,
)
from cells_oidc.internal.token_info import TokenInfo
from cells_oidc.internal.tokens import local_key_for

__all__ = [
    "InvalidToken",
    "TokenInfo",
    "LazyUser",
    "TokenUser",
    "authenticate_token",
    "user_for",
    # Re-exported for importers outside the resource server (apps.py, api_views.py).
    "bearer_token",
    "clear_remote_cache",
]


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


@dataclass
class Prefetch:
    """Cache entries a view will read, read with the deny-list in the same round trip.

    ``keys_for(subject)`` names them for the subject the token's payload names; the bearer path
    fills ``keys`` (what it read) and ``values`` (what it found: a missing entry is absent).
    """

    keys_for: Callable[[str], Sequence[str]]
    keys: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)


# ---- the entry point ---------------------------------------------------------------------------
def authenticate_token(
    token: str,
    *,
    lazy_user: bool = False,
    refuse: Refuse | None = None,
    prefetch: Prefetch | None = None,
) -> tuple[Any, TokenInfo]:
    """Verify a bearer token and return ``(user, info)``; raise :class:`InvalidToken` otherwise.

    A token with the personal-access-token prefix goes to :func:`cells_oidc.internal.pat.authenticate_pat`;
    any other is verified as a JWT access token of the provider (RFC 9068). In remote mode,
    personal access tokens are checked by the provider's introspection endpoint, when configured.

    ``prefetch``: cache entries the view will read, read with the deny-list in one round trip
    (:class:`Prefetch`; ``GET /a/user/me`` names its user's cached profile).
    """
    if not isinstance(token, str) or not token:
        raise InvalidToken("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    if app_settings.RESOURCE_ISSUER is not None:
        return _authenticate_remote(token, app_settings.RESOURCE_ISSUER)
    if token.startswith(PAT_PREFIX):
        return authenticate_pat(token)
    info = _verify_access_token(token, key_for=local_key_for, expected_issuer=issuer(), prefetch=prefetch)
    return (lazy_user_for(info, refuse=refuse) if lazy_user else user_for(info)), info


def _verify_access_token(
    token: str, *, key_for: Any, expected_issuer: str, prefetch: Prefetch | None = None
) -> TokenInfo:
    """An RFC 9068 §4 access token for this resource server, not revoked."""
    # The deny-list first: its read also brings the key-set version the verification needs, and
    # the entries the view wants of the subject the payload names. That name is not verified yet:
    # it only chooses which entries to read (their reader checks them against the verified one).
    subject = unverified_subject(token) if prefetch is not None else None
    also = tuple(prefetch.keys_for(subject)) if prefetch is not None and subject is not None else ()
    try:
        revoked, extra = revocation.status(token, also)
    except revocation.RevocationStatusUnavailable:
        revoked, extra = None, {}
    if prefetch is not None:
        prefetch.keys, prefetch.values = also, extra
    claims = verify_jws(
        token,
        key_for=key_for,
        typ=ACCESS_TOKEN_TYP,
        issuer=expected_issuer,
        audiences=app_settings.RESOURCE_AUDIENCE,
        required=ACCESS_TOKEN_CLAIMS,
        leeway=app_settings.RESOURCE_LEEWAY,
    )
    if revoked is None:
        raise InvalidToken("revocation status unavailable")
    if revoked:
        raise InvalidToken("revoked")
    return TokenInfo.of_access_token(claims)


# ---- users -------------------------------------------------------------------------------------
def user_for(info: TokenInfo) -> Any:
    """The user a token acts for.

    - a token a client obtained for itself (``sub`` equals ``client_id``, RFC 9068 §2.2 and §5)
      acts for no user: ``AnonymousUser``;
    - with ``CELLS_OIDC_RESOURCE_LOAD_USER`` off: a :class:`TokenUser` (no database);
    - otherwise the active user the adapter's ``user_for_subject(subject=...)`` finds, if its
      ``subject(user)`` is exactly ``sub`` (``"+1"`` or ``" 1"`` parse as the pk 1 too).
    """
    if info.for_client:
        return AnonymousUser()
    if not app_settings.RESOURCE_LOAD_USER:
        return TokenUser(info)
    adapter = get_adapter()
    user = adapter.user_for_subject(subject=info.subject)
    if user is None or adapter.subject(user) != info.subject:
        raise InvalidToken("unknown user")
    if not getattr(user, "is_active", False):
        raise InvalidToken("inactive user")
    return user


class LazyUser(SimpleLazyObject):
    """The user of a bearer token, loaded when the view first reads one of its fields.

    A view that needs only the token (``request.auth``: claims, scopes) costs no query. Reading
    ``is_authenticated``/``is_anonymous`` loads nothing (the token authenticated the request, as
    DRF's ``IsAuthenticated`` asks); anything else runs :func:`user_for`, which refuses an unknown
    or inactive user by raising :class:`InvalidToken` then (the DRF class and
    ``@bearer_token_required`` answer it 401, RFC 6750 §3.1).
    """

    is_authenticated = True
    is_anonymous = False


#: Turns the refusal of a lazily loaded user into the exception the caller's framework answers.
Refuse = Callable[[InvalidToken], Exception]


def lazy_user_for(info: TokenInfo, *, refuse: Refuse | None = None) -> Any:
    """:func:`user_for`, deferred to the first use when it would read the database; a refusal
    then raises ``refuse(error)`` (default: the :class:`InvalidToken` itself)."""
    if info.for_client or not app_settings.RESOURCE_LOAD_USER:
        return user_for(info)  # no query to defer

    def load() -> Any:
        try:
            return user_for(info)
        except InvalidToken as exc:
            if refuse is None:
                raise
            raise refuse(exc) from None

    return LazyUser(load)


# ---- remote mode ---------------------------------------------------------------------------------
def _authenticate_remote(token: str, expected_issuer: str) -> tuple[Any, TokenInfo]:
    provider = remote_provider(expected_issuer)
    if token.count(".") != 2:
        # Not a JWT: a personal access token, which only the provider can check.
        return _authenticate_opaque_remote(token, provider)
    info = _verify_access_token(token, key_for=provider.key_for, expected_issuer=expected_issuer)
    if introspection_configured() and introspect(token, provider, expires_at=info.expires_at) is None:
        raise InvalidToken("revoked")
    return user_for(info), info


def _authenticate_opaque_remote(token: str, provider: RemoteProvider) -> tuple[Any, TokenInfo]:
    if not introspection_configured():
        raise InvalidToken("not a JWT")
    data = introspect(token, provider, expires_at=None)
    if data is None:
        raise InvalidToken("inactive token")
    exp = numeric_date(data.get("exp"))
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
    iat = numeric_date(data.get("iat"))
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
