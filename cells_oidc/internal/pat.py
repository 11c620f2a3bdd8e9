"""Personal access tokens: Cells' ``admin user token``, minted, verified, introspected and revoked.

A personal access token (PAT) is a random secret shown once to whoever mints it; only its
SHA-256 checksum is stored (:class:`~cells_oidc.models.PersonalAccessToken`). It is presented
like an access token, ``Authorization: Bearer cpat_…``, and has two expiry modes as in Cells:

- a fixed expiry (``cells admin user token -e 24h``, here ``--expires 24h``);
- an auto-refresh window (``-a 10m``, here ``--auto-refresh 10m``): every use pushes the expiry
  to *now + window*, never beyond an absolute maximum (``max_expires``). A token left unused for
  longer than its window expires.

Format: ``cpat_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 bits) + 6 base62
characters of a CRC-32 of everything before them. The prefix lets secret scanners find leaked
tokens (regular expression :data:`TOKEN_PATTERN`) and lets the bearer authentication tell a PAT
from a JWT without parsing it; the CRC lets a scanner (and :func:`authenticate_pat`, before any
database query) tell a real token from a string that merely looks like one.
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Q, Value, When
from django.utils import timezone

from cells_oidc import signals
from cells_oidc.adapter import get_adapter
from cells_oidc.conf import ADMIN_SCOPE, app_settings
from cells_oidc.internal.endpoints import issuer
from cells_oidc.internal.events import emit
from cells_oidc.internal.jws import InvalidToken
from cells_oidc.internal.sessions import TOUCH_INTERVAL
from cells_oidc.internal.token_info import TokenInfo
from cells_oidc.models import SIGN_IN_LIVE as SIGN_IN_LIVE  # the account page reads pat.SIGN_IN_LIVE
from cells_oidc.models import PersonalAccessToken, TokenFamily, checksum

PAT_PREFIX = "cpat_"
_SECRET_LENGTH = 43  # len(secrets.token_urlsafe(32))
_CRC_LENGTH = 6
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN_LENGTH = len(PAT_PREFIX) + _SECRET_LENGTH + _CRC_LENGTH
#: What a secret scanner looks for (the last six characters are the CRC-32 of the rest, base62).
TOKEN_PATTERN = r"cpat_[A-Za-z0-9_-]{43}[A-Za-z0-9]{6}"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
#: Characters shown to identify a token in lists (the prefix and the first four of the secret).
HINT_LENGTH = len(PAT_PREFIX) + 4

# "Last used" is written at most once per TOUCH_INTERVAL per token, and an auto-refreshing expiry
# is pushed forward in steps of at most that size: a token used on every request costs one UPDATE
# a minute.
#: The shortest auto-refresh window (a shorter one would expire between two pushes).
MIN_AUTO_REFRESH = timedelta(seconds=60)
#: Scopes that make no sense for a PAT (it is not refreshed by a client; it *is* the long-lived grant).
UNSUPPORTED_SCOPES = frozenset({"offline", "offline_access"})
#: Scopes a PAT never carries: the administrative scope stays with a short-lived access token of a
#: client allowed to ask for it, so that a leaked PAT never acts on other users' tokens.
FORBIDDEN_SCOPES = frozenset({ADMIN_SCOPE})

_DURATION_RE = re.compile(r"(\d{1,9})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PersonalTokenError(ValueError):
    """A request to mint a token that cannot be honoured; ``str()`` is a message for the user."""


# ---- format ---------------------------------------------------------------------------------
def _crc(text: str) -> str:
    value = zlib.crc32(text.encode("ascii"))
    digits = []
    for _ in range(_CRC_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def generate() -> str:
    """A new token: prefix, 256 random bits, CRC."""
    body = PAT_PREFIX + secrets.token_urlsafe(32)
    return body + _crc(body)


def is_well_formed(token: object) -> bool:
    """Whether ``token`` has the shape and CRC of a PAT (no database query)."""
    return (
        isinstance(token, str)
        and len(token) == TOKEN_LENGTH
        and _TOKEN_RE.fullmatch(token) is not None
        and secrets.compare_digest(_crc(token[:-_CRC_LENGTH]), token[-_CRC_LENGTH:])
    )


def parse_duration(text: str) -> timedelta:
    """Parse a Cells/Go style duration: ``90s``, ``10m``, ``24h``, ``30d``, ``2w``, ``1h30m``."""
    value = (text or "").strip().lower()
    if not value or _DURATION_RE.sub("", value):
        raise PersonalTokenError(f"{text!r} is not a duration (examples: 90s, 10m, 24h, 30d, 1h30m).")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _DURATION_RE.findall(value))
    if seconds <= 0:
        raise PersonalTokenError("A duration must be longer than zero.")
    if seconds > 100 * 365 * 86400:
        raise PersonalTokenError(f"{text!r} is too long.")
    return timedelta(seconds=seconds)


def format_duration(seconds: int | float) -> str:
    """``600`` → ``10m``, ``90000`` → ``1d1h``: the inverse of :func:`parse_duration`."""
    remaining = int(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# ---- minting and revoking -----------------------------------------------------------------
@dataclass(frozen=True)
class Minted:
    """A newly minted token: the stored row and the secret, which exists only here."""

    token: PersonalAccessToken
    secret: str


def configured_scopes() -> frozenset[str]:
    """The scopes a PAT may carry: the provider's scopes, less the refresh-token ones."""
    from oauth2_provider.scopes import get_scopes_backend

    return frozenset(get_scopes_backend().get_all_scopes()) - UNSUPPORTED_SCOPES - FORBIDDEN_SCOPES


def normalise_scope(scope: str | Iterable[str] | None, *, within: Iterable[str] | None = None) -> str:
    """The space-separated scope of a new token (default :attr:`PAT_DEFAULT_SCOPE`).

    Every scope must be one the provider knows; with ``within`` (the scopes of the token of a
    user minting their own), none beyond it: a token never mints a more powerful one. The
    administrative scope (:data:`FORBIDDEN_SCOPES`) is refused when asked for and left out of
    the defaults.
    """
    if scope is None:
        requested = [s for s in app_settings.PAT_DEFAULT_SCOPE.split() if s not in FORBIDDEN_SCOPES]
        if within is not None:
            requested = [s for s in requested if s in set(within)]
    else:
        requested = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
    unique = list(dict.fromkeys(requested))
    forbidden = [s for s in unique if s in FORBIDDEN_SCOPES]
    if forbidden:
        raise PersonalTokenError(
            f"A personal access token cannot carry the administrative scope {' '.join(forbidden)}."
        )
    unknown = [s for s in unique if s not in configured_scopes()]
    if unknown:
        raise PersonalTokenError(f"Unknown or unsupported scope: {' '.join(unknown)}.")
    if within is not None:
        beyond = [s for s in unique if s not in set(within)]
        if beyond:
            raise PersonalTokenError(f"Your token does not have the scope: {' '.join(beyond)}.")
    if not unique:
        raise PersonalTokenError("A personal access token needs at least one scope.")
    return " ".join(unique)


@dataclass(frozen=True)
class Plan:
    """The validated fields of a token about to be minted (see :func:`plan`)."""

    user: Any
    label: str
    scope: str
    expires: datetime
    auto_refresh_seconds: int | None
    max_expires: datetime | None


def plan(
    user: Any,
    *,
    expires_in: timedelta | None = None,
    auto_refresh: timedelta | None = None,
    max_lifetime: timedelta | None = None,
    scope: str | Iterable[str] | None = None,
    label: str = "",
    within_scopes: Iterable[str] | None = None,
) -> Plan:
    """Check a request to mint a token and return what would be stored, without storing anything.

    Exactly one of ``expires_in`` (a fixed expiry) and ``auto_refresh`` (a window) is given;
    ``max_lifetime`` bounds an auto-refreshing token (default and upper bound
    :attr:`PAT_MAX_LIFETIME`). ``within_scopes``: the scopes the new token may not exceed.
    Raises :class:`PersonalTokenError` for an impossible request.
    """
    if (expires_in is None) == (auto_refresh is None):
        raise PersonalTokenError("Give either a fixed expiry or an auto-refresh window (not both).")
    if not getattr(user, "is_active", False):
        raise PersonalTokenError("This account is inactive.")
    limit = timedelta(seconds=app_settings.PAT_MAX_LIFETIME)
    label = (label or "").strip()
    if len(label) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise PersonalTokenError("The label must be at most 100 printable characters.")
    scope_text = normalise_scope(scope, within=within_scopes)
    now = timezone.now()
    if expires_in is not None:
        if max_lifetime is not None:
            raise PersonalTokenError("A maximum lifetime only applies to an auto-refreshing token.")
        if expires_in <= timedelta(0):
            raise PersonalTokenError("The expiry must be in the future.")
        if expires_in > limit:
            raise PersonalTokenError(f"The expiry may be at most {format_duration(limit.total_seconds())}.")
        return Plan(user, label, scope_text, now + expires_in, None, None)
    assert auto_refresh is not None
    lifetime = limit if max_lifetime is None else max_lifetime
    if lifetime > limit:
        raise PersonalTokenError(
            f"The maximum lifetime may be at most {format_duration(limit.total_seconds())}."
        )
    if auto_refresh < MIN_AUTO_REFRESH:
        raise PersonalTokenError("The auto-refresh window must be at least 1m.")
    if auto_refresh > lifetime:
        raise PersonalTokenError("The auto-refresh window is longer than the maximum lifetime.")
    return Plan(
        user, label, scope_text, now + auto_refresh, int(auto_refresh.total_seconds()), now + lifetime
    )


def mint(
    user: Any, *, created_by: Any = None, token_family: TokenFamily | None = None, **request: Any
) -> Minted:
    """Mint a token for ``user`` (the arguments of :func:`plan`); the secret is only in the result.

    ``token_family``: the sign-in whose access token asked for this token (the bearer API); the
    new token is refused from the moment that sign-in is revoked. ``None`` for a token minted on
    the account page, in the admin or by the command.
    """
    checked = plan(user, **request)
    secret = generate()
    token = PersonalAccessToken.objects.create(
        user=checked.user,
        label=checked.label,
        token_checksum=checksum(secret),
        hint=secret[:HINT_LENGTH],
        scope=checked.scope,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        expires=checked.expires,
        auto_refresh_seconds=checked.auto_refresh_seconds,
        max_expires=checked.max_expires,
        token_family=token_family,
    )
    emit(
        signals.pat_created,
        user=token.user,
        token_id=token.pk,
        created_by=token.created_by,
        scope=token.scope,
    )
    return Minted(token=token, secret=secret)


def revoke(token: PersonalAccessToken, *, revoked_by: Any = None) -> bool:
    """Revoke ``token``; ``False`` when it already was (idempotent, race-free). ``revoked_by``:
    who did (for the ``pat_revoked`` signal), ``None`` for a command."""
    now = timezone.now()
    done = PersonalAccessToken.objects.filter(pk=token.pk, revoked__isnull=True).update(revoked=now) == 1
    if done:
        token.revoked = now
        emit(signals.pat_revoked, user=token.user, token_id=token.pk, revoked_by=revoked_by)
    return done


def revoked_at(token: PersonalAccessToken) -> datetime | None:
    """When ``token`` was revoked, itself or by the revocation of the sign-in that minted it.

    Load the token with ``select_related("token_family")`` (as :func:`live` and
    :func:`authenticate_pat` do) to spare a query.
    """
    if token.revoked is not None:
        return token.revoked
    if token.token_family_id is not None:
        return token.token_family.revoked
    return None


def status(token: PersonalAccessToken, now: datetime | None = None) -> str:
    """``"active"``, ``"expired"`` or ``"revoked"`` (also when the sign-in that minted it was)."""
    now = now or timezone.now()
    if revoked_at(token) is not None:
        return "revoked"
    if token.expires <= now or (token.max_expires is not None and token.max_expires <= now):
        return "expired"
    return "active"


def live(queryset: Any = None) -> Any:
    """The tokens of ``queryset`` (default all) that are neither revoked nor expired, nor minted
    by a sign-in since revoked (:meth:`PersonalAccessTokenQuerySet.live`)."""
    return (PersonalAccessToken.objects.all() if queryset is None else queryset).live()


# ---- use ------------------------------------------------------------------------------------
def authenticate_pat(token: str) -> tuple[Any, TokenInfo]:
    """Verify a presented PAT and return its user and :class:`~cells_oidc.internal.token_info.TokenInfo`.

    One SELECT per call (the token, its user and the sign-in that minted it); an UPDATE only
    when "last used" is older than :data:`TOUCH_INTERVAL` or an auto-refreshing expiry is due to
    move forward by at least one step. Raises
    :class:`cells_oidc.internal.jws.InvalidToken` for a malformed, unknown, revoked or expired token,
    one minted by a sign-in since revoked, or an inactive user.
    """
    if not is_well_formed(token):
        raise InvalidToken("malformed personal access token")
    pat = (
        PersonalAccessToken.objects.select_related("user", "token_family")
        .filter(token_checksum=checksum(token))
        .first()
    )
    if pat is None:
        raise InvalidToken("unknown personal access token")
    now = timezone.now()
    if pat.revoked is not None:
        raise InvalidToken("revoked personal access token")
    if pat.token_family is not None and pat.token_family.revoked is not None:
        raise InvalidToken("revoked personal access token (its sign-in was revoked)")
    if pat.expires <= now or (pat.max_expires is not None and pat.max_expires <= now):
        raise InvalidToken("expired personal access token")
    if not pat.user.is_active:
        raise InvalidToken("inactive user")
    _touch(pat, now)
    return pat.user, _token_info(pat)


def _touch(pat: PersonalAccessToken, now: datetime) -> None:
    """Record the use (and push an auto-refreshing expiry) with at most one conditional UPDATE."""
    due = Q(last_used__isnull=True) | Q(last_used__lt=now - TOUCH_INTERVAL)
    needed = pat.last_used is None or pat.last_used < now - TOUCH_INTERVAL
    updates: dict[str, Any] = {"last_used": now}
    target: datetime | None = None
    if pat.auto_refresh_seconds:
        window = timedelta(seconds=pat.auto_refresh_seconds)
        target = now + window
        if pat.max_expires is not None:
            target = min(target, pat.max_expires)
        # Steps of at most a tenth of the window, so a short window never lapses between pushes.
        step = min(TOUCH_INTERVAL, window / 10)
        if target - pat.expires >= step:
            needed = True
            due |= Q(expires__lt=target - step)
        # Never moves backwards, even when a concurrent request pushed it further already.
        updates["expires"] = Case(When(expires__lt=target, then=Value(target)), default="expires")
    if not needed:
        return
    # The WHERE clause re-checks the conditions, so concurrent requests write at most once, and
    # never resurrect a token revoked meanwhile.
    written = (
        PersonalAccessToken.objects.filter(pk=pat.pk, revoked__isnull=True).filter(due).update(**updates)
    )
    if written:
        if pat.last_used is None or _day(pat.last_used) != _day(now):
            # The first use of the day is the first write of the day (writes are at most one a
            # TOUCH_INTERVAL): pat_used costs no query of its own.
            emit(signals.pat_used, user=pat.user, token_id=pat.pk)
        pat.last_used = now
        if target is not None and target > pat.expires:
            pat.expires = target


def _day(value: datetime) -> Any:
    return timezone.localdate(value) if timezone.is_aware(value) else value.date()


def _token_info(pat: PersonalAccessToken) -> TokenInfo:
    subject = get_adapter().subject(pat.user)
    expires_at = int(pat.expires.timestamp())
    # Never the administrative scope, even in a row written by other means than mint().
    scopes = [s for s in pat.scope.split() if s not in FORBIDDEN_SCOPES]
    claims = {
        "iss": issuer(),
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": int(pat.created.timestamp()),
        "exp": expires_at,
        "username": pat.user.get_username(),
    }
    return TokenInfo(
        kind="pat",
        subject=subject,
        client_id=None,
        scopes=frozenset(scopes),
        claims=claims,
        expires_at=expires_at,
        token_id=str(pat.pk),
    )


def introspect(token: str) -> dict[str, Any] | None:
    """The RFC 7662 §2.2 answer for ``token`` if it has the PAT prefix, else ``None``.

    An introspection by a resource server is a use of the token: it refreshes "last used" and an
    auto-refresh window like any other request.
    """
    if not isinstance(token, str) or not token.startswith(PAT_PREFIX):
        return None
    try:
        user, info = authenticate_pat(token)
    except InvalidToken:
        return {"active": False}
    return {
        "active": True,
        "token_type": "Bearer",
        # As the access tokens' answers say (Hydra's convention): presented like an access token.
        "token_use": "access_token",
        "scope": info.claims["scope"],
        "sub": info.subject,
        "username": user.get_username(),
        "exp": info.expires_at,
        "iat": info.claims["iat"],
        "iss": info.claims["iss"],
        "aud": app_settings.ACCESS_TOKEN_AUDIENCE,
    }
