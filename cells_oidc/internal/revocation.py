"""The revocation deny-list of JWT access tokens.

A JWT access token is verified without the database (:mod:`cells_oidc.internal.resource`), so deleting
its row — which is how DOT revokes an access token — would not stop it by itself. Every path
that revokes one deletes DOT's ``AccessToken`` row, and the ``post_delete`` receiver below then
puts the SHA-256 checksum of the token (the only form DOT stores, RFC 9700 §4) on a deny-list in
Django's cache until the token expires. Verification asks the cache, never the database.

Paths covered, because each ends in a deletion of the row, which sends ``post_delete`` (Django
sends it for every row of a queryset ``delete()`` too when a receiver is connected):

- ``POST oauth2/revoke`` (RFC 7009) and the admin's revoke action and delete;
- refresh-token rotation (the previous access token goes), reuse of a rotated refresh token and
  replay of an authorization code (``RefreshToken.revoke_family`` / ``TokenFamily.revoke``);
- RP-initiated logout, deletion of the user or of the client.

Guarantee: the revocation is seen at once by every process that shares the cache named by
``CELLS_OIDC_RESOURCE_REVOCATION_CACHE`` (Redis, Memcached, the database cache). With a
per-process cache (``LocMemCache``, Django's default) only the process that revoked the token
sees it; the others accept the token until it expires (at most ``ACCESS_TOKEN_EXPIRE_SECONDS``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from cells_oidc import models
from cells_oidc.conf import app_settings
from cells_oidc.internal.cache import fence, isolated

logger = logging.getLogger(__name__)

KEY_PREFIX = "cells_oidc:revoked:"
#: Kept this much longer than the token's expiry plus the verification leeway.
MARGIN_SECONDS = 60


def revocation_cache() -> Any:
    from django.core.cache import caches

    return caches[app_settings.RESOURCE_REVOCATION_CACHE]


def deny_checksum(checksum: str, expires_at: float) -> None:
    """Refuse the token whose checksum is ``checksum`` until it expires (``expires_at``, epoch)."""
    timeout = math.ceil(expires_at + app_settings.RESOURCE_LEEWAY + MARGIN_SECONDS - time.time())
    if not checksum or timeout <= 0:
        return
    with isolated(revocation_cache()) as cache:
        cache.set(KEY_PREFIX + checksum, 1, timeout)
        fence(cache)


#: The entries read with the deny-list that a process may keep in its copy under
#: ``CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS``, by prefix, as registered by their modules
#: (profiles.py: the profile rows and generations of ``GET /a/user/me``).
_tracked: list[str] = []


def track_prefixes(*prefixes: str) -> None:
    """Let the entries under ``prefixes``, read with the deny-list, be kept in the process's copy."""
    _tracked.extend(prefix for prefix in prefixes if prefix not in _tracked)


def tracked_prefixes() -> tuple[str, ...]:
    """What :func:`status` reads, by prefix: the deny-list, the key-set version, and the entries
    registered with :func:`track_prefixes`."""
    from cells_oidc.internal import keys

    return (KEY_PREFIX, keys.VERSION_CACHE_KEY, *_tracked)


def deny(token: str, expires_at: float) -> None:
    """Refuse ``token`` until it expires."""
    deny_checksum(models.checksum(token), expires_at)


class RevocationStatusUnavailable(Exception):
    """The deny-list could not be read: the token must be refused."""


def status(token: str, also: Sequence[str] = ()) -> tuple[bool, dict[str, Any]]:
    """Whether ``token`` is on the deny-list (one cache read, no database query), and the entries
    ``also`` names of the same cache, read in the same round trip (a missing one is absent).

    Raises :class:`RevocationStatusUnavailable` when the cache cannot be read (the error is
    logged): an API must not accept a token it cannot check.
    """
    from cells_oidc.internal import keys

    key = KEY_PREFIX + models.checksum(token)
    try:
        with isolated(revocation_cache()) as cache:
            # The key-set version lives in the same cache: read with the entry, it spares the
            # verification of the same request its own round trip (docs/performance.md); so may
            # what the view will read (the profile of GET /a/user/me).
            names = [key, keys.VERSION_CACHE_KEY, *also]
            seconds = app_settings.RESOURCE_CLIENT_CACHE_SECONDS
            if seconds > 0 and hasattr(cache, "get_many_tracked"):
                # This process's copy, kept exact by Redis (cells_oidc.caches, docs/performance.md).
                values = cache.get_many_tracked(names, prefixes=tracked_prefixes(), max_age=seconds)
            else:
                values = cache.get_many(names)
    except Exception as exc:  # noqa: BLE001 - any backend error
        logger.exception("The revocation cache is unavailable; refusing the token.")
        raise RevocationStatusUnavailable from exc
    keys.note_shared_version(values.get(keys.VERSION_CACHE_KEY))
    return values.get(key) is not None, {name: values[name] for name in also if name in values}


#: When (epoch seconds) this process last failed to write the deny-list, for ``/readyz``.
last_write_failure: float | None = None


def _deny_logged(checksum: str, expires_at: float) -> None:
    global last_write_failure
    try:
        deny_checksum(checksum, expires_at)
    except Exception:  # noqa: BLE001 - any backend error
        last_write_failure = time.time()
        logger.exception("Could not deny-list a revoked access token (checksum %s…).", checksum[:8])


def on_access_token_deleted(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    """``post_delete`` of DOT's ``AccessToken``: deny-list the token until it expires.

    The cache is written after the deletion commits, never inside its transaction: a cache
    failure (Redis down, a database cache whose table is missing) must neither undo nor block
    the revocation in the database. It is logged and reported by ``/readyz``; a deletion that is
    rolled back denies nothing.
    """
    checksum = getattr(instance, "token_checksum", "") or ""
    expires = getattr(instance, "expires", None)
    if not checksum or not isinstance(expires, datetime):
        return
    if timezone.is_naive(expires):
        expires = timezone.make_aware(expires)
    expires_at = expires.timestamp()
    transaction.on_commit(lambda: _deny_logged(checksum, expires_at), using=using)
