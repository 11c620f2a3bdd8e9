"""Cache calls that cannot poison the current database transaction.

Django's database cache runs SQL on the site's own connection. On PostgreSQL a failed statement (a
cache table that was never created, say) aborts the whole transaction around it — a token request's
or a revocation's — and every later statement fails. Inside a transaction, a database-cache call
therefore runs in a savepoint of its own: a failure rolls back the savepoint only, and the caller's
error handling (fail closed, fall back) works as it does for Redis. Other backends pay nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.cache.backends.db import DatabaseCache
from django.db import router

from cells_oidc.internal.transactions import isolated_write


@contextlib.contextmanager
def isolated(cache: Any) -> Iterator[Any]:
    """Run the cache calls of the block in a savepoint when ``cache`` is a database cache and a
    transaction is open on its database; yields ``cache``."""
    if isinstance(cache, DatabaseCache):
        with isolated_write(router.db_for_write(cache.cache_model_class)):
            yield cache
        return
    yield cache


def fence(cache: Any) -> None:
    """After a write other processes must see at once (a revocation, a new key set, a changed
    user): return when every process keeping a copy of the bearer path's entries
    (``CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS``) has the write's invalidation in its socket
    (:meth:`cells_oidc.caches.RedisCache.fence`). Nothing to wait for when no process keeps copies."""
    from cells_oidc.conf import app_settings

    if app_settings.RESOURCE_CLIENT_CACHE_SECONDS > 0 and hasattr(cache, "fence"):
        cache.fence()
