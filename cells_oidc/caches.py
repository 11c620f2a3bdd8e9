"""Cache backends for the provider's hot paths: Django's ``RedisCache`` and ``DatabaseCache``, each
with the throttles' counters counted in one go.

Use them where Django's would go (docs/deploy.md, docs/performance.md)::

    CACHES = {"default": {"BACKEND": "cells_oidc.caches.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"}}
    CACHES = {"default": {"BACKEND": "cells_oidc.caches.DatabaseCache", "LOCATION": "cells_oidc_cache",
                          "OPTIONS": {"MAX_ENTRIES": 1_000_000}}}

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
  ``INCRBY key 1`` in a single ``MULTI``/``EXEC``: atomic, one round trip for all of them (``-1``
  takes an event back: a sign-in attempt counted before its password was checked that was no
  failure).

:class:`DatabaseCache` is Django's database cache (same table, same stored values) whose
:meth:`DatabaseCache.incr_counters` counts every counter of a request in **one transaction**: one
``SELECT`` of the counters (locked with ``FOR UPDATE`` where the database has it; SQLite's
transactions take the write lock), one ``INSERT`` or ``UPDATE`` per counter, and Django's size
check (``COUNT(*)``, and its cull past ``MAX_ENTRIES``) once when a counter was created. Through
Django's API a counter costs ``add`` (size check, read, write) then ``incr`` — a read, then ``set``
(size check, read, write) — six statements, and two requests counting at once could both read 5
and both write 6. Here the count is exact under concurrency: two transactions cannot both read the
same value before writing it.

Why hand-written: redis-py and Django's backends are used as they are; only the client's lifetime
and the counters are ours (Django's backends have no hook for either). Nothing else of Django's
backends is changed.
"""

from __future__ import annotations

import base64
import pickle
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.db import IntegrityError, OperationalError, connections, models, router, transaction
from django.utils.timezone import now as tz_now

__all__ = ["DatabaseCache", "RedisCache"]


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

    def incr_counters(self, entries: Sequence[tuple[str, int]], delta: int = 1) -> list[int]:
        client = self.get_client(write=True)
        pipe = client.pipeline(transaction=True)
        for key, timeout in entries:
            # Stored as Django stores an int (RedisSerializer keeps ints raw): cache.get reads it.
            pipe.set(key, 0, ex=max(1, int(timeout)), nx=True)
            pipe.incrby(key, delta)
        results = pipe.execute()
        return [int(value) for value in results[1::2]]


class RedisCache(DjangoRedisCache):
    """Django's ``RedisCache`` with one client per pool and one-round-trip counters (see the module)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient

    def incr_counters(
        self, entries: Sequence[tuple[str, int]], version: int | None = None, delta: int = 1
    ) -> list[int]:
        """Add ``delta`` (one event; -1 takes one back) to each ``(key, timeout)`` counter and
        return their new values.

        A missing counter is created with ``timeout`` seconds to live (then incremented: 1); an
        existing one keeps its expiry. All counters are counted in one atomic round trip.
        """
        keys = [(self.make_and_validate_key(key, version=version), timeout) for key, timeout in entries]
        return self._cache.incr_counters(keys, delta)


class DatabaseCache(DjangoDatabaseCache):
    """Django's ``DatabaseCache`` with exact counters in one transaction (see the module)."""

    #: A transaction that lost a race (two requests inserting the same new counter on PostgreSQL,
    #: SQLite's "database is locked" when the site's transactions are not IMMEDIATE) is run again.
    ATTEMPTS = 5

    def incr_counters(
        self, entries: Sequence[tuple[str, int]], version: int | None = None, delta: int = 1
    ) -> list[int]:
        """Add ``delta`` (one event; -1 takes one back) to each ``(key, timeout)`` counter and
        return their new values.

        A missing or expired counter starts at ``delta`` and lives ``timeout`` seconds; a live one
        keeps its expiry. The values are stored as :meth:`set` stores an int, so :meth:`get` reads
        them.
        """
        keys = [(self.make_and_validate_key(key, version=version), timeout) for key, timeout in entries]
        if not keys:
            return []
        db = router.db_for_write(self.cache_model_class)
        sqlite = connections[db].vendor == "sqlite"
        for attempt in range(self.ATTEMPTS):
            try:
                with transaction.atomic(using=db):
                    return self._count(db, keys, delta)
            except IntegrityError:
                # PostgreSQL: a concurrent transaction inserted one of the new counters first; it
                # has committed (the unique index made this one wait): counted as a live row now.
                if attempt == self.ATTEMPTS - 1:
                    raise
            except OperationalError:
                # SQLite outside IMMEDIATE transactions: another writer committed after this
                # transaction's first read; a new transaction reads its count.
                if not sqlite or attempt == self.ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _sql(self, connection: Any, keys: int) -> dict[str, str]:
        """The counters' statements on ``connection``. Built as Django's database cache builds its
        own: the identifiers are the cache table's (``LOCATION``) quoted by the backend; every value
        is a parameter."""
        q = connection.ops.quote_name
        table, key, value, expires = q(self._table), q("cache_key"), q("value"), q("expires")
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        marks = ", ".join(["%s"] * keys)
        return {
            "write_lock": f"UPDATE {table} SET {key} = {key} WHERE 1 = 0",  # noqa: S608
            "read": f"SELECT {key}, {value}, {expires} FROM {table} WHERE {key} IN ({marks}) "  # noqa: S608
            f"ORDER BY {key}{lock}",
            "count": f"UPDATE {table} SET {value} = %s WHERE {key} = %s",  # noqa: S608
            "restart": f"UPDATE {table} SET {value} = %s, {expires} = %s WHERE {key} = %s",  # noqa: S608
            "start": f"INSERT INTO {table} ({key}, {value}, {expires}) VALUES (%s, %s, %s)",  # noqa: S608
            "size": f"SELECT COUNT(*) FROM {table}",  # noqa: S608
        }

    def _count(self, db: str, keys: list[tuple[str, int]], delta: int) -> list[int]:
        connection = connections[db]
        expression = models.Expression(output_field=models.DateTimeField())
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        tz = timezone.utc if settings.USE_TZ else None
        distinct = sorted({key for key, _timeout in keys})
        sql = self._sql(connection, len(distinct))
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite" and getattr(connection, "transaction_mode", None) not in (
                "IMMEDIATE",
                "EXCLUSIVE",
            ):
                # A deferred SQLite transaction would read first and then fail to write if another
                # writer committed in between ("database is locked"): a write statement first takes
                # the write lock (waiting its turn, as IMMEDIATE does) before the counters are read.
                cursor.execute(sql["write_lock"])
            cursor.execute(sql["read"], distinct)
            now = tz_now()
            live: dict[str, int] = {}  # counter -> its value, for the rows that are still live
            stored: set[str] = set()  # counters that have a row, live or expired
            for key, value, expires in cursor.fetchall():
                for converter in converters:
                    expires = converter(expires, expression, connection)
                stored.add(key)
                if expires >= now:
                    live[key] = self._counter_value(connection.ops.process_clob(value))
            counts, final, timeouts = [], {}, {}
            for key, timeout in keys:
                final[key] = final.get(key, live.get(key, 0)) + delta
                timeouts.setdefault(key, timeout)
                counts.append(final[key])
            # Written in the order of their keys (as they were locked): two requests that create
            # the same new counters wait for each other in one order, never in a cycle.
            inserted = False
            for key in sorted(final):
                encoded = base64.b64encode(pickle.dumps(final[key], self.pickle_protocol)).decode("latin1")
                if key in live:  # a live counter keeps its expiry
                    cursor.execute(sql["count"], [encoded, key])
                    continue
                # A new window: Django's expiry for the timeout (whole seconds).
                expires_at = datetime.fromtimestamp(self.get_backend_timeout(timeouts[key]), tz=tz)
                expires_at = connection.ops.adapt_datetimefield_value(expires_at.replace(microsecond=0))
                if key in stored:
                    cursor.execute(sql["restart"], [encoded, expires_at, key])
                else:
                    cursor.execute(sql["start"], [key, encoded, expires_at])
                    inserted = True
            if inserted:
                # Django's bound on the table (its set() checks before every write): only an
                # INSERT grows it, so once per call that added a row.
                cursor.execute(sql["size"])
                entries = cursor.fetchone()[0]
                if entries > self._max_entries:
                    self._cull(db, cursor, now.replace(microsecond=0), entries)
        return counts

    @staticmethod
    def _counter_value(value: str) -> int:
        """The int a counter's row holds; a row that is not one (another writer's key) restarts it."""
        try:
            # Django's own encoding of the row (DatabaseCache.get unpickles it the same way).
            count = pickle.loads(base64.b64decode(value.encode()))  # noqa: S301
        except Exception:  # noqa: BLE001 - whatever the row holds, it is not our counter
            return 0
        return count if isinstance(count, int) and not isinstance(count, bool) else 0
