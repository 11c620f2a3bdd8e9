"""A Redis cache backend for the provider's hot paths: Django's ``RedisCache``, made cheap per call.

Use it where Django's would go (docs/deploy.md, docs/performance.md)::

    CACHES = {"default": {"BACKEND": "cells_oidc.caches.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"}}

It is Django's :class:`django.core.cache.backends.redis.RedisCache` (same options, same stored
values: a site can switch either way without flushing), with two differences:

- **one client per connection pool.** Django builds a new ``redis.Redis`` client for every cache
  call; redis-py's constructor copies its table of ~170 response callbacks into a fresh
  case-insensitive dictionary, which costs more CPU than the command's round trip (about 0.15 ms
  here; the bearer path makes two cache calls per request, a token request up to nine). A redis-py
  client is safe to share between threads (it takes a connection from the pool for each command
  and returns it) and its pool reconnects after a fork, so one client per pool is kept.
- **counters in one round trip** (:meth:`RedisCache.incr_counters`): the throttles count an event
  on several fixed-window counters per request (cells_oidc.internal.throttle). Through Django's
  API each costs ``add`` then ``incr``, and Django's ``incr`` is itself ``EXISTS`` then ``INCR``:
  three round trips a counter. Here every counter of the request is ``SET key 0 EX window NX`` and
  ``INCR key`` in a single ``MULTI``/``EXEC``: atomic, one round trip for all of them.

Why hand-written: redis-py and Django's backend are used as they are; only the client's lifetime
and the pipelined counter are ours (Django's backend has no hook for either). Nothing else of
Django's backend is changed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

__all__ = ["RedisCache"]


class _ReusingClient(RedisCacheClient):
    """Django's Redis client factory, keeping one ``redis.Redis`` per connection pool."""

    def __init__(self, servers: Any, **options: Any) -> None:
        super().__init__(servers, **options)
        self._clients: dict[int, Any] = {}
        self._clients_lock = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            with self._clients_lock:
                client = self._clients.get(id(pool))
                if client is None:
                    # Pools live as long as this object, so their ids are stable keys.
                    client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def incr_counters(self, entries: Sequence[tuple[str, int]]) -> list[int]:
        client = self.get_client(write=True)
        pipe = client.pipeline(transaction=True)
        for key, timeout in entries:
            # Stored as Django stores an int (RedisSerializer keeps ints raw): cache.get reads it.
            pipe.set(key, 0, ex=max(1, int(timeout)), nx=True)
            pipe.incr(key)
        results = pipe.execute()
        return [int(value) for value in results[1::2]]


class RedisCache(DjangoRedisCache):
    """Django's ``RedisCache`` with one client per pool and one-round-trip counters (see the module)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient

    def incr_counters(self, entries: Sequence[tuple[str, int]], version: int | None = None) -> list[int]:
        """Count one event on each ``(key, timeout)`` counter and return their new values.

        A missing counter is created with ``timeout`` seconds to live (then incremented: 1); an
        existing one keeps its expiry. All counters are counted in one atomic round trip.
        """
        keys = [(self.make_and_validate_key(key, version=version), timeout) for key, timeout in entries]
        return self._cache.incr_counters(keys)
