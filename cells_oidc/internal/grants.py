"""What a user holds: the sign-ins (token families) that can still produce or use tokens.

One rule for every place that lists or ends them — the account page
(:mod:`cells_oidc.internal.views.account`) and the bearer API (``GET``/``DELETE /a/tokens``):

- a sign-in is *held* while its :class:`~cells_oidc.models.TokenFamily` is not revoked and it
  has either a live refresh token (not revoked, younger than ``REFRESH_TOKEN_EXPIRE_SECONDS``)
  or, for a sign-in that got no refresh token, a live access token
  (:attr:`TokenFamily.access_token` not expired). Live refresh tokens of a DOT token family
  without a ``TokenFamily`` row (issued before cells-oidc was installed) are a sign-in too;
- ending one (:func:`revoke`) revokes every refresh and access token of the family and every
  personal access token minted through it (RFC 7009 §2.1: revoking a grant revokes its tokens).

:func:`family_of_access_token` finds the sign-in of a presented access token, so that a personal
access token minted through it records (and dies with) that sign-in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from cells_oidc.models import TokenFamily, checksum

__all__ = ["Held", "family_of_access_token", "held_by", "revoke"]


@dataclass(frozen=True)
class Held:
    """One sign-in a user holds."""

    #: The sign-in's id: ``RefreshToken.token_family``, the primary key of its ``TokenFamily``.
    id: uuid.UUID
    #: ``None`` for refresh tokens issued before cells-oidc was installed.
    family: TokenFamily | None
    #: The client (DOT application) signed in to.
    application: Any
    #: The scope granted at sign-in (the family's), else that of its latest access token.
    scope: str
    #: When the user authenticated for this sign-in (``auth_time``; ``None`` when unknown).
    authenticated: datetime | None
    #: When the sign-in was made (the authorization code or device approval was issued).
    created: datetime
    #: When the client last obtained tokens with it (its latest refresh or access token).
    last_used: datetime


def _live_refresh_tokens(user: Any) -> Any:
    from oauth2_provider.models import get_refresh_token_model
    from oauth2_provider.settings import oauth2_settings

    live = get_refresh_token_model().objects.filter(
        user=user, revoked__isnull=True, token_family__isnull=False
    )
    lifetime = oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS
    if lifetime:
        live = live.filter(created__gt=timezone.now() - timedelta(seconds=int(lifetime)))
    return live


def held_by(user: Any) -> list[Held]:
    """The sign-ins ``user`` holds (see the module docstring), most recently used first."""
    latest: dict[Any, Any] = {}
    first: dict[Any, datetime] = {}
    refresh_tokens = _live_refresh_tokens(user).select_related("application", "access_token")
    for token in refresh_tokens.order_by("-created"):
        latest.setdefault(token.token_family, token)
        first[token.token_family] = token.created
    now = timezone.now()
    families = (
        TokenFamily.objects.of_user(user)
        .filter(Q(pk__in=list(latest)) | Q(revoked__isnull=True, access_token__expires__gt=now))
        .select_related("application", "access_token")
    )
    held = []
    with_row = set()
    for family in families:
        with_row.add(family.pk)
        if family.revoked is not None:
            continue
        refresh = latest.get(family.pk)
        access = refresh.access_token if refresh is not None else family.access_token
        if refresh is not None:
            last_used = refresh.created
        else:
            last_used = family.access_token.created
        held.append(
            Held(
                id=family.pk,
                family=family,
                application=family.application,
                scope=family.scope or (access.scope if access is not None else ""),
                authenticated=family.auth_time,
                created=family.created,
                last_used=last_used,
            )
        )
    for family_id, refresh in latest.items():
        if family_id not in with_row:  # refresh tokens issued before cells-oidc was installed
            access = refresh.access_token
            held.append(
                Held(
                    id=family_id,
                    family=None,
                    application=refresh.application,
                    scope=access.scope if access is not None else "",
                    authenticated=None,
                    created=first[family_id],
                    last_used=refresh.created,
                )
            )
    held.sort(key=lambda h: h.last_used, reverse=True)
    return held


def revoke(user: Any, family_id: Any, *, reason: str = "account_page") -> bool:
    """End the sign-in ``family_id`` of ``user`` (never another user's); whether it was held.

    Every refresh and access token of the family is revoked, and with it every personal access
    token minted through it. A sign-in already revoked, someone else's, or an id that is not a
    UUID: ``False``, nothing changes. ``reason`` (``"account_page"``, ``"api"``) goes with the
    ``token_revoked`` signal.
    """
    try:
        family_id = family_id if isinstance(family_id, uuid.UUID) else uuid.UUID(str(family_id))
    except ValueError:
        return False
    family = TokenFamily.objects.filter(pk=family_id).first()
    if family is not None:
        if family.user_id != user.pk or family.revoked is not None:
            return False
        family.revoke()
        _revoked(user, family.application, family.pk, reason)
        from cells_oidc.internal import backchannel

        backchannel.sign_in_ended(family)  # Back-Channel Logout §2.5
        return True
    # A family without a row (tokens issued before cells-oidc): held while a refresh token lives.
    from oauth2_provider.models import get_refresh_token_model

    if not _live_refresh_tokens(user).filter(token_family=family_id).exists():
        return False
    application = _live_refresh_tokens(user).filter(token_family=family_id).first().application
    get_refresh_token_model().revoke_family(family_id)
    _revoked(user, application, family_id, reason)
    return True


def _revoked(user: Any, application: Any, family_id: Any, reason: str) -> None:
    from cells_oidc import signals
    from cells_oidc.internal.events import emit

    emit(
        signals.token_revoked,
        user=user,
        client=application,
        kind="sign_in",
        family_id=family_id,
        reason=reason,
    )


def family_of_access_token(token: str) -> TokenFamily | None:
    """The live sign-in whose access token ``token`` is (one query), or ``None``.

    DOT stores the SHA-256 of the JWT as ``AccessToken.token_checksum``; the family is reached
    through the refresh token issued with it, or through :attr:`TokenFamily.access_token` for a
    sign-in without a refresh token.
    """
    from oauth2_provider.models import get_refresh_token_model

    digest = checksum(token)
    through_refresh = (
        get_refresh_token_model()
        .objects.filter(access_token__token_checksum=digest)
        .exclude(token_family=None)
        .values("token_family")
    )
    return (
        TokenFamily.objects.live()
        .filter(Q(access_token__token_checksum=digest) | Q(pk__in=through_refresh))
        .first()
    )
