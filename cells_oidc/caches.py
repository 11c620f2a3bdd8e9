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

**Reads kept in the process** (:meth:`RedisCache.get_many_tracked`, off unless
``CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS`` turns it on for the bearer path): Redis's
server-assisted client-side caching. One connection per process speaks RESP3 and asks Redis for
``CLIENT TRACKING ON BCAST`` on the key prefixes the caller names; Redis then sends that
connection an invalidation message for every write of a key under them, in order with the
connection's own replies. A read found in the process's copy (less than ``max_age`` seconds old,
with no invalidation for it in the socket) costs no round trip. See :class:`_Tracker` for the
rules that keep the copy exact, and docs/performance.md for what it saves and what it costs.

:meth:`DatabaseCache.get_many` is Django's (the same statement, the same values) without rebuilding
on every call what does not change (the statement, the expiry column's expression: a model field);
the bearer path reads through it on every request when the site has no Redis. On a SQLite database
file, :meth:`DatabaseCache.get_many_tracked` answers the bearer path from a copy per connection that
SQLite's own write counters keep exact (``PRAGMA data_version``, ``total_changes``).

Why hand-written: redis-py and Django's backends are used as they are; only the client's lifetime,
the counters, the tracked reads and that read are ours (Django's backends have no hook for them;
redis-py's own client-side cache refuses servers older than 7.4 and Debian ships 7.0). Nothing else
of Django's backends is changed.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import pickle
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import MEMCACHE_MAX_KEY_LENGTH, memcached_error_chars_re
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient, RedisSerializer
from django.db import IntegrityError, OperationalError, connections, models, router, transaction
from django.utils.timezone import now as tz_now

__all__ = ["DatabaseCache", "RedisCache"]

logger = logging.getLogger(__name__)


def _loads(value: bytes) -> Any:
    """What Django's ``RedisSerializer.loads`` returns: an int is stored as its digits, anything else
    pickled. Django tries ``int()`` first, so every pickled value (the key-set version, a profile)
    raised and caught a ValueError on every read; a pickle of protocol 2 or later starts with the
    byte 0x80, never part of an int's digits, and is unpickled at once."""
    if value[:1] == b"\x80":
        return pickle.loads(value)  # noqa: S301 - the cache's own values, as Django reads them
    return _SERIALIZER.loads(value)


_SERIALIZER = RedisSerializer()


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


class _TrackingUnavailable(Exception):
    """The tracked connection cannot answer now: the caller reads Redis the usual way."""


class _Tracker:
    """This process's copy of the entries under some key prefixes of one Redis server.

    What keeps the copy exact:

    - **One RESP3 connection** reads and receives the invalidations: Redis writes the message for
      a write after the replies of the reads that preceded it, so a value stored from a reply
      is never older than an invalidation already handled (the race of a separate
      invalidation connection cannot happen).
    - **BCAST on prefixes**: every write of a key under them is announced, whether this process
      read it or not, and Redis keeps no table of what each client read.
    - **Before every answer from the copy**, the invalidations waiting in the socket are read
      (a non-blocking poll). A writer that must be seen at once (a revocation) sends one more
      command after its write and waits for the reply (:meth:`RedisCache.fence`): Redis answers
      it only after the event-loop pass that wrote the invalidations to every tracking socket.
    - **At most** ``max_age`` seconds an entry is served without asking Redis: a partition that
      would hold the messages back, or a lost connection nobody noticed, lasts no longer.
    - **Anything unusual empties the copy**: a connection error, a fork, ``FLUSHDB`` (a
      ``null`` invalidation), a drain that read :attr:`FLUSH_AFTER` keys or more (Redis may
      still hold more for this socket), more than :attr:`MAX_ENTRIES` entries.
    """

    MAX_ENTRIES = 10_000
    FLUSH_AFTER = 256
    #: After a failure, the usual reads for this long before the connection is tried again.
    RETRY_SECONDS = 1.0

    def __init__(self, client: RedisCacheClient, prefixes: tuple[str, ...], asked: Any) -> None:
        self._client = client
        self.prefixes = prefixes  # as stored (made by the cache's key function)
        self.prefixes_asked = asked  # (prefixes, version) as the caller named them
        self._encoded = tuple(prefix.encode() for prefix in prefixes)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._entries: dict[bytes, tuple[float, bytes | None]] = {}
        self._drained = 0
        self._busy = False  # a thread is reading the socket (under the lock)
        self._retry_at = 0.0
        self.unsupported = False

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def get_many(self, keys: Sequence[str], max_age: float) -> list[bytes | None]:
        """The raw values of ``keys`` (``None``: missing), from the copy when every one is
        there and fresh, else in one ``MGET`` that refreshes the copy. Raises
        :class:`_TrackingUnavailable` when the caller should read Redis the usual way."""
        encoded = [key.encode() for key in keys]
        # Without the lock when no thread is reading the socket: nothing waiting in it (checked
        # before ``_busy``: a thread that took bytes out of the socket is busy until it has
        # handled them), every entry there and fresh.
        conn = self._conn
        if conn is not None and not self._busy and self._pid == os.getpid():
            try:
                waiting = conn.can_read(timeout=0)
            except Exception:  # noqa: BLE001 - a closed connection: the locked path handles it
                waiting = True
            if not waiting and not self._busy:
                found = self._fresh(encoded, max_age)
                if found is not None:
                    return found
        # Another thread reading the socket (a miss's round trip, a connection being opened): the
        # usual read, in parallel, rather than a queue behind one connection.
        if not self._lock.acquire(blocking=False):
            raise _TrackingUnavailable
        try:
            return self._read(encoded, max_age)
        finally:
            self._lock.release()

    def _fresh(self, encoded: list[bytes], max_age: float) -> list[bytes | None] | None:
        """The values of ``encoded`` from the copy if every one is there and younger than ``max_age``."""
        now = time.monotonic()
        found = [self._entries.get(key) for key in encoded]
        if all(entry is not None and now - entry[0] < max_age for entry in found):
            return [entry[1] for entry in found]  # type: ignore[index]
        return None

    def _read(self, encoded: list[bytes], max_age: float) -> list[bytes | None]:
        """Under the lock: drain the socket, then answer from the copy or read and keep."""
        if time.monotonic() < self._retry_at:
            raise _TrackingUnavailable
        self._busy = True
        try:
            conn = self._connection()
            self._drain(conn)
            found = self._fresh(encoded, max_age)
            if found is not None:
                return found
            started = time.monotonic()  # an entry's age counts from before the read
            conn.send_command("MGET", *encoded)
            values = conn.read_response()  # invalidations read on the way are handled
            if len(self._entries) + len(encoded) > self.MAX_ENTRIES:
                self._entries.clear()
            for key, value in zip(encoded, values, strict=True):
                self._entries[key] = (started, value)
            return list(values)
        except _TrackingUnavailable:
            self._reset(retry=True)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: forget, and let the caller read
            logger.warning("Tracked Redis reads stopped (%s); reading Redis on every request.", exc)
            self._reset(retry=True)
            raise _TrackingUnavailable from exc
        finally:
            self._busy = False

    def _connection(self) -> Any:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._reset(retry=False)  # a fork: the parent's socket is not ours
        options = {**self._client._pool_options, "protocol": 3}
        pool = self._client._pool_class.from_url(self._client._servers[0], **options)
        conn = pool.make_connection()
        conn.connect()
        parser = getattr(conn, "_parser", None)
        if not hasattr(parser, "set_invalidation_push_handler"):
            conn.disconnect()
            self.unsupported = True
            logger.warning("This redis-py cannot receive invalidations: tracked reads are off.")
            raise _TrackingUnavailable
        command = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix in self._encoded:
            command += ["PREFIX", prefix]
        conn.send_command(*command)
        conn.read_response()
        parser.set_invalidation_push_handler(self._invalidated)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _drain(self, conn: Any) -> None:
        self._drained = 0
        while conn.can_read(timeout=0):
            conn.read_response(push_request=True)
        if self._drained >= self.FLUSH_AFTER:
            self._entries.clear()

    def _invalidated(self, message: Any) -> None:
        # RESP3 push: ["invalidate", [key, ...]], or ["invalidate", null] after FLUSHDB/FLUSHALL.
        keys = message[1] if len(message) > 1 else None
        if keys is None:
            self._entries.clear()
            self._drained += self.FLUSH_AFTER
            return
        for key in keys:
            self._entries.pop(key if isinstance(key, bytes) else str(key).encode(), None)
        self._drained += len(keys)

    def _reset(self, *, retry: bool) -> None:
        self._entries.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()  # redis-py shuts the socket down only in the process that opened it
        if retry:
            self._retry_at = time.monotonic() + self.RETRY_SECONDS


_trackers: dict[tuple[str, str, tuple[str, ...]], _Tracker] = {}
_trackers_lock = threading.Lock()


class RedisCache(DjangoRedisCache):
    """Django's ``RedisCache`` with one client per pool, one-round-trip counters and tracked reads
    (see the module)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient
        self._tracker: _Tracker | None = None

    def get_many_tracked(
        self, keys: Sequence[str], *, prefixes: Sequence[str], max_age: float, version: int | None = None
    ) -> dict[str, Any]:
        """:meth:`get_many`, answered from this process's copy when it can be (see the module).

        ``prefixes``: the (unmade) key prefixes to track; every key must start with one of them.
        Falls back to :meth:`get_many` when the copy cannot serve: more than one server (reads
        would go to replicas), a key under no prefix, a custom key function that does not keep
        prefixes, a redis-py without invalidation handlers, a connection failure (retried after
        a second).
        """
        tracker = self._tracker_for(tuple(prefixes), version)
        # make_key: validate_key only warns of keys memcached would refuse, which Redis takes.
        made = {self.make_key(key, version=version): key for key in keys}
        if tracker is None or not all(tracker.covers(key) for key in made):
            return self.get_many(keys, version=version)
        try:
            values = tracker.get_many(list(made), max_age)
        except _TrackingUnavailable:
            return self.get_many(keys, version=version)
        serializer = self._cache._serializer
        loads = _loads if type(serializer) is RedisSerializer else serializer.loads
        pairs = zip(made.values(), values, strict=True)
        return {key: loads(value) for key, value in pairs if value is not None}

    def fence(self) -> None:
        """Return once every tracking process has this process's earlier writes' invalidations
        in its socket: one round trip after them (Redis writes the invalidations of a command in
        the event-loop pass that answers it, before it reads the next command)."""
        self._cache.get_client(write=True).ping()

    def keeps_copies(self) -> bool:
        """Whether :meth:`get_many_tracked` can answer from a copy: one server (with several, reads
        would go to replicas). Check W008 asks the same."""
        return len(self._servers) == 1

    def _tracker_for(self, prefixes: tuple[str, ...], version: int | None) -> _Tracker | None:
        tracker = self._tracker
        if tracker is not None and tracker.prefixes_asked == (prefixes, version):
            return None if tracker.unsupported else tracker
        if not self.keeps_copies():
            return None
        made = []
        for prefix in prefixes:
            stem = self.make_key(prefix, version=version)
            if self.make_key(prefix + "probe", version=version) != stem + "probe":
                return None  # a key function that does not keep prefixes: nothing to track by
            made.append(stem)
        # One copy per process and server, whatever the thread: Django gives every thread its own
        # cache object, and a copy per thread would warm eight times and hold eight connections.
        identity = (self._servers[0], repr(sorted(self._options.items())), tuple(made))
        with _trackers_lock:
            tracker = _trackers.get(identity)
            if tracker is None:
                tracker = _trackers[identity] = _Tracker(self._cache, tuple(made), (prefixes, version))
        self._tracker = tracker
        return None if tracker.unsupported else tracker

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


#: DatabaseCache.get_many's statement by (vendor, table, number of keys).
_SELECT_MANY: dict[tuple[str, str, int], str] = {}


#: At most this many keys in a connection's copy (DatabaseCache.get_many_tracked): the deny-list's
#: absent entries, one per token seen, must not grow it without end; a full copy takes no more rows
#: until a write or its age (``max_age``) starts a new one.
_COPY_MAX_ROWS = 4096


#: A cache row as read: its value's pickle and its expiry in epoch seconds.
_Row = tuple[bytes, float]


class _RowCopy:
    """A connection's copy of cache rows (``DatabaseCache.get_many_tracked``): each made key's
    ``(pickle, expires as epoch seconds)``, or ``None`` for a key the table did not have."""

    __slots__ = ("rows", "since", "stamp")

    def __init__(self, stamp: tuple[Any, int, int], since: float) -> None:
        self.stamp = stamp  # (the sqlite3 connection, its data_version, its total_changes)
        self.since = since
        self.rows: dict[str, _Row | None] = {}


@functools.cache
def _expires_expression() -> Any:
    """The expression Django converts the cache table's ``expires`` with (built once: a model field)."""
    return models.Expression(output_field=models.DateTimeField())


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

    def validate_key(self, key: str) -> None:
        # Django's check (a warning for keys memcached would refuse) runs a generator and its regex per
        # key on every read; a key that cannot warn skips it (the same rules: at most 250
        # characters, no control character, space or DEL).
        if len(key) > MEMCACHE_MAX_KEY_LENGTH or memcached_error_chars_re.search(key):
            super().validate_key(key)

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        """Django's ``get_many`` (the same statement, the same values), without rebuilding per call
        what does not change: the statement for that many keys, the expiry column's expression (a
        model field, costly to construct) and the current time per row. The bearer path reads the
        deny-list, the key-set version and a profile through it on every request
        (docs/performance.md)."""
        if not keys:
            return {}
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        connection = connections[router.db_for_read(self.cache_model_class)]
        live, expired = self._read_rows(connection, key_map)
        if expired:
            self._base_delete_many(expired)
        return {key_map[key]: pickle.loads(value) for key, (value, _expires) in live.items()}  # noqa: S301

    def _read_rows(self, connection: Any, key_map: dict[str, Any]) -> tuple[dict[str, _Row], list[str]]:
        """The rows of ``key_map``'s (made) keys: the live ones as ``{key: (pickle, expires as epoch
        seconds)}``, and the keys of the expired ones (Django deletes those: ``expires < now``)."""
        statement = (connection.vendor, self._table, len(key_map))
        sql = _SELECT_MANY.get(statement)
        if sql is None:
            q = connection.ops.quote_name
            marks = ", ".join(["%s"] * len(key_map))
            sql = f"SELECT {q('cache_key')}, {q('value')}, {q('expires')} FROM {q(self._table)} "  # noqa: S608
            sql += f"WHERE {q('cache_key')} IN ({marks})"
            if len(_SELECT_MANY) < 1000:
                _SELECT_MANY[statement] = sql
        with connection.cursor() as cursor:
            cursor.execute(sql, list(key_map))
            rows = cursor.fetchall()
        live: dict[str, _Row] = {}
        expired: list[str] = []
        if not rows:
            return live, expired
        expression = _expires_expression()
        converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        now = tz_now()
        for key, value, expires in rows:
            for converter in converters:
                expires = converter(expires, expression, connection)
            if expires < now:
                expired.append(key)
            elif key in key_map:
                value = connection.ops.process_clob(value)
                live[key] = (base64.b64decode(value.encode(), validate=True), expires.timestamp())
        return live, expired

    def keeps_copies(self) -> bool:
        """Whether :meth:`get_many_tracked` can answer from a copy (check W008 asks the same)."""
        return self._copies_on(connections[router.db_for_read(self.cache_model_class)])

    @staticmethod
    def _copies_on(connection: Any) -> bool:
        """The cache table is in a SQLite database file (an in-memory one has no other connection
        to tell a write by)."""
        return connection.vendor == "sqlite" and not connection.is_in_memory_db()

    def get_many_tracked(
        self, keys: Sequence[str], *, prefixes: Sequence[str] = (), max_age: float, version: int | None = None
    ) -> dict[str, Any]:
        """:meth:`get_many`, answered from this connection's copy when SQLite says nothing was
        written since it was read.

        SQLite keeps two counters of its own: ``PRAGMA data_version`` changes when any other
        connection — another thread, another process — has committed a write to the database
        file since this connection last asked, and the connection's ``total_changes`` counts the
        rows its own statements changed. The copy keeps the two values read **before** the rows
        were read; it answers only while both are still the same (nothing anywhere wrote to the
        database since, so the rows are what a read would return), none of its rows has expired,
        and it is less than ``max_age`` seconds old. Any write to the database, to any table,
        empties it: a site busy writing reads the table as before, for the cost of one PRAGMA
        more (docs/performance.md). ``prefixes`` is the Redis copy's (any key is covered here).

        Falls back to :meth:`get_many` on any other database, an in-memory SQLite database, and
        inside a transaction (a transaction sees its own snapshot; its rows are not the copy's).
        """
        connection = connections[router.db_for_read(self.cache_model_class)]
        if connection.in_atomic_block or not self._copies_on(connection):
            return self.get_many(keys, version=version)
        made = self._made
        key_map = {}
        for key in keys:
            made_key = made.get((key, version))
            if made_key is None:
                made_key = self.make_and_validate_key(key, version=version)
                if len(made) >= _COPY_MAX_ROWS:
                    made.clear()
                made[key, version] = made_key
            key_map[made_key] = key
        if not key_map:
            return {}
        raw = connection.connection
        if raw is None:
            connection.ensure_connection()
            raw = connection.connection
        # On the sqlite3 connection itself (3 µs; through Django's cursor and its wrappers, 9): a
        # counter, no table is read. Django's query log does not show it.
        (data_version,) = raw.execute("PRAGMA data_version").fetchone()
        stamp = (raw, data_version, raw.total_changes)
        copy = self._copy
        now = time.monotonic()
        if copy is None or copy.stamp != stamp or now - copy.since >= max_age:
            copy = self._copy = _RowCopy(stamp, now)
        rows = copy.rows
        if all(key in rows for key in key_map):
            at = time.time()
            if all(row is None or row[1] >= at for row in (rows[key] for key in key_map)):
                served = ((key_map[key], rows[key]) for key in key_map)
                return {key: pickle.loads(row[0]) for key, row in served if row is not None}  # noqa: S301
        live, expired = self._read_rows(connection, key_map)
        if expired:
            self._base_delete_many(expired)  # a write of this connection: the copy starts again
        elif len(rows) + len(key_map) <= _COPY_MAX_ROWS:
            for key in key_map:
                rows[key] = live.get(key)
        return {key_map[key]: pickle.loads(value) for key, (value, _expires) in live.items()}  # noqa: S301

    _copy: _RowCopy | None = None

    @functools.cached_property
    def _made(self) -> dict[tuple[str, int | None], str]:
        """:meth:`get_many_tracked`'s made keys by ``(key, version)``: the same token's deny-list
        key, the key-set version's and a profile's are made once (a key memcached would refuse
        warns once, as Python's default warning filter shows it)."""
        return {}

    @staticmethod
    def _counter_value(value: str) -> int:
        """The int a counter's row holds; a row that is not one (another writer's key) restarts it."""
        try:
            # Django's own encoding of the row (DatabaseCache.get unpickles it the same way).
            count = pickle.loads(base64.b64decode(value.encode()))  # noqa: S301
        except Exception:  # noqa: BLE001 - whatever the row holds, it is not our counter
            return 0
        return count if isinstance(count, int) and not isinstance(count, bool) else 0
