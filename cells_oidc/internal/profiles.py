"""The profile ``GET /a/user/me`` answers, from one cached row per user (docs/performance.md).

The API's hottest call read the user and then its groups: two statements per request. Now the
profile (login, names, email, group names, and that the user is active) is kept in the shared
cache — the revocation cache, which every process shares (check ``cells_oidc.E013``) — for
``CELLS_OIDC_PROFILE_CACHE_SECONDS`` (default 60; 0: the database on every request).

**Exact for every change Django sees.** Each user has a *generation* in the cache beside the row;
a row counts only while its generation is the current one. Saving or deleting a user, adding or
removing them from a group (either side of the relation), renaming or deleting a group writes a
new generation for every user concerned — at once and again after the transaction commits — so
the next request of any process loads the row again from the database. A row is filled with the
generation read *before* its database read: a change committed after that read writes a newer
generation and the row is never served (a request racing a deactivation cannot cache the old row).

**Bounded otherwise.** A change Django sends no signal for (``QuerySet.update()``, raw SQL, another
program writing the tables) shows within ``CELLS_OIDC_PROFILE_CACHE_SECONDS``; a cache that cannot
be written when a user changes, likewise (the failure is logged).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from cells_oidc.conf import app_settings
from cells_oidc.internal.cache import fence, isolated
from cells_oidc.internal.revocation import revocation_cache, track_prefixes
from cells_oidc.internal.token_info import TokenInfo

__all__ = ["build", "cache_keys", "connect", "invalidate", "profile"]

logger = logging.getLogger(__name__)

ROW_PREFIX = "cells_oidc:profile:"
GENERATION_PREFIX = "cells_oidc:profile-generation:"
# Read with the deny-list (resource.Prefetch): kept in the process's copy with it.
track_prefixes(ROW_PREFIX, GENERATION_PREFIX)
#: A generation outlives every row filled under it (rows live at most 60 s; a day is plenty).
GENERATION_SECONDS = 86_400
#: Fields of a user Django saves without changing the profile (a login writes ``last_login``).
_NOT_IN_PROFILE = frozenset({"last_login", "password"})


def _keys(subject: str) -> tuple[str, str]:
    # A subject is the adapter's (any text): hashed, the key is short and safe for every backend.
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return ROW_PREFIX + digest, GENERATION_PREFIX + digest


def cache_keys(subject: str) -> tuple[str, ...]:
    """The cache entries :func:`profile` reads for ``subject`` (none when the cache is off): the
    bearer path reads them with the deny-list, in the same round trip
    (:class:`cells_oidc.internal.resource.Prefetch`)."""
    return _keys(subject) if app_settings.PROFILE_CACHE_SECONDS > 0 else ()


def build(user: Any, subject: str) -> dict[str, Any]:
    """The profile of ``user`` as ``GET /a/user/me`` shows it (``email`` whatever the scopes)."""
    full_name = (user.get_full_name() if hasattr(user, "get_full_name") else "").strip()
    groups = user.groups.values_list("name", flat=True) if hasattr(user, "groups") else []
    return {
        "subject": subject,
        "login": user.get_username(),
        "name": full_name or user.get_username(),
        "given_name": getattr(user, "first_name", "") or "",
        "family_name": getattr(user, "last_name", "") or "",
        "email": getattr(user, "email", "") or "",
        "groups": sorted(groups),
    }


def profile(info: TokenInfo, prefetched: Any = None) -> dict[str, Any]:
    """The profile of the active user ``info`` acts for: from the cache, else from the database
    through :func:`cells_oidc.internal.resource.user_for` (which raises
    :class:`~cells_oidc.internal.jws.InvalidToken` for an unknown or inactive user) and cached.

    ``prefetched``: what the bearer path read with the deny-list (a
    :class:`~cells_oidc.internal.resource.Prefetch` of :func:`cache_keys`), used when it read
    this user's entries.
    """
    from cells_oidc.internal.resource import user_for

    seconds = app_settings.PROFILE_CACHE_SECONDS
    row_key, generation_key = _keys(info.subject)
    generation = None
    if seconds > 0:
        try:
            with isolated(revocation_cache()) as cache:
                if prefetched is not None and prefetched.keys == (row_key, generation_key):
                    found = prefetched.values  # read with the deny-list, this request
                else:
                    found = cache.get_many([row_key, generation_key])
                generation = found.get(generation_key)
                row = found.get(row_key)
                if (
                    generation is not None
                    and isinstance(row, dict)
                    and row.get("generation") == generation
                    and row.get("subject") == info.subject
                ):
                    return row
                if generation is None:
                    cache.add(generation_key, uuid.uuid4().hex, GENERATION_SECONDS)
                    generation = cache.get(generation_key)
        except Exception:  # noqa: BLE001 - the database answers when the cache cannot
            logger.warning("The profile cache cannot be read; reading the database.", exc_info=True)
            generation = None
    # Read after the generation: a change committed from now on writes a newer one.
    fresh = build(user_for(info), info.subject)
    if generation is not None:
        try:
            with isolated(revocation_cache()) as cache:
                cache.set(row_key, {**fresh, "generation": generation}, seconds)
        except Exception:  # noqa: BLE001
            logger.warning("The profile cache cannot be written.", exc_info=True)
    return fresh


def invalidate(users: Any) -> None:
    """Every process reads these users' profiles from the database again: now, and once the
    transaction commits (a process reading before the commit would cache the old row)."""
    from cells_oidc.adapter import get_adapter

    adapter = get_adapter()
    keys = []
    for user in users:
        try:
            keys.append(_keys(adapter.subject(user))[1])
        except Exception:  # noqa: BLE001 - a user the adapter cannot name has no profile cached
            logger.warning("No subject for user %r: its profile is not invalidated.", user.pk, exc_info=True)
    if not keys:
        return

    def write() -> None:
        try:
            with isolated(revocation_cache()) as cache:
                cache.set_many({key: uuid.uuid4().hex for key in keys}, GENERATION_SECONDS)
                fence(cache)  # a deactivated user is refused by every process from now on
        except Exception:  # noqa: BLE001 - a user's save must not fail for the cache
            logger.error(
                "The profile cache could not be invalidated: the change shows within "
                "CELLS_OIDC_PROFILE_CACHE_SECONDS.",
                exc_info=True,
            )

    write()
    transaction.on_commit(write)


# ---- receivers (connected in apps.py) -------------------------------------------------------------
def _user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields and set(update_fields) <= _NOT_IN_PROFILE:
        return  # a login's last_login, a password change: nothing the profile shows
    invalidate([instance])


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    invalidate([instance])


def _members(group: Any) -> list[Any]:
    return list(get_user_model().objects.filter(groups=group)) if group.pk is not None else []


def _group_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created:
        invalidate(_members(instance))  # a renamed group


def _group_deleting(sender: Any, instance: Any, **kwargs: Any) -> None:
    invalidate(_members(instance))


def _membership_changed(
    sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, **kwargs: Any
) -> None:
    if action == "pre_clear" and reverse:
        invalidate(_members(instance))  # group.user_set.clear(): the members are known only before
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        invalidate([instance])  # user.groups.add/remove/clear
    elif pk_set:
        invalidate(list(model.objects.filter(pk__in=pk_set)))  # group.user_set.add/remove


def connect() -> None:
    """Connect the receivers that keep the cached profiles exact (apps.py)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="cells_oidc.profiles.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="cells_oidc.profiles.user_deleted")
    groups = getattr(user_model, "groups", None)
    field = getattr(groups, "field", None)
    if field is None or not getattr(field, "many_to_many", False):
        return  # a user model without groups: the profile lists none
    group_model = field.related_model
    m2m_changed.connect(
        _membership_changed, sender=groups.through, dispatch_uid="cells_oidc.profiles.membership"
    )
    post_save.connect(_group_saved, sender=group_model, dispatch_uid="cells_oidc.profiles.group_saved")
    pre_delete.connect(_group_deleting, sender=group_model, dispatch_uid="cells_oidc.profiles.group_deleting")
