"""cells_oidc.caches.RedisCache and DatabaseCache (docs/deploy.md "The shared cache",
docs/performance.md) and the key-set version read once per request (cells_oidc.internal.keys).

The Redis tests need a Redis server (``REDIS_URL``: `make test-postgres`, CI); they use a key prefix
of their own on it.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from cells_oidc.internal import keys, throttle

requires_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (make test-postgres)"
)


@pytest.fixture
def redis_cache() -> Any:
    from cells_oidc.caches import RedisCache

    cache = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "cells-oidc-caches-" + uuid.uuid4().hex})
    yield cache
    cache.clear()


@requires_redis
def test_one_client_per_pool_shared_by_threads(redis_cache: Any) -> None:
    clients: list[Any] = []
    redis_cache.set("k", "v", 30)

    def use() -> None:
        assert redis_cache.get("k") == "v"
        clients.append(redis_cache._cache.get_client())

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 4 and all(client is clients[0] for client in clients)


@requires_redis
def test_counters_count_atomically_and_keep_their_window(redis_cache: Any) -> None:
    assert redis_cache.incr_counters([("a", 30), ("b", 30)]) == [1, 1]
    assert redis_cache.incr_counters([("a", 30), ("b", 30)]) == [2, 2]
    # Django's API reads them as the ints they are.
    assert redis_cache.get("a") == 2
    assert redis_cache.incr("a") == 3
    # An event taken back (a sign-in attempt that was no failure).
    assert redis_cache.incr_counters([("a", 30)], delta=-1) == [2]
    assert redis_cache.incr("a") == 3
    # An existing counter keeps the expiry of its window; a new one gets its own.
    client = redis_cache._cache.get_client()
    redis_cache.incr_counters([("a", 1000)])
    assert 0 < client.ttl(redis_cache.make_and_validate_key("a")) <= 30

    # Counts from many threads are all counted.
    def hammer() -> None:
        for _ in range(50):
            redis_cache.incr_counters([("c", 30)])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis_cache.get("c") == 200


def throttle_counts_every_rule_and_refuses_past_the_limit(cache: Any) -> None:
    """The throttle on ``cache``: every rule of a request counted at once, the first over its limit
    refusing (with the seconds left in its window)."""
    rules = [throttle.Rule("one", 3, 60), throttle.Rule("two", 5, 60)]
    with mock.patch.object(throttle, "_cache", return_value=cache):
        for _ in range(3):
            throttle.consume_many([(rules[0], "ip"), (rules[1], "client")])
        with pytest.raises(throttle.Throttled) as refused:
            throttle.consume_many([(rules[0], "ip"), (rules[1], "client")])
        assert refused.value.rule.name == "one" and 1 <= refused.value.retry_after <= 61
        assert throttle.count(rules[1], "client")[0] == 4
        assert throttle.hit(rules[1], "other") == 1


@requires_redis
def test_the_throttle_counts_every_rule_of_a_request_and_refuses_past_the_limit(redis_cache: Any) -> None:
    throttle_counts_every_rule_and_refuses_past_the_limit(redis_cache)


# ---- the key-set version, read once per request ---------------------------------------------
@pytest.mark.django_db
def test_the_key_set_version_is_read_once_per_request() -> None:
    reads = mock.Mock(wraps=keys._read_shared_version)
    with mock.patch.object(keys, "_read_shared_version", reads):
        keys.on_request_started()  # Django's request_started receiver (apps.py)
        try:
            keys.key_set()
            keys.signing_key()
            keys.algorithms_in_use()
            assert reads.call_count == 1
            # A change made by this request is seen by the rest of it.
            before = keys.key_set().version
            keys.bump_version()
            assert keys.key_set().version != before
            assert reads.call_count == 2
        finally:
            keys.on_request_finished()
        # Outside a request (a command, a task) every look-up reads the shared version.
        keys.key_set()
        keys.key_set()
        assert reads.call_count == 4


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (Debian's redis-server)")
def test_the_reused_client_reconnects_after_a_redis_restart(tmp_path: Any) -> None:
    """One client per pool must not mean one dead connection for ever: after Redis restarts, the
    pool's connection is replaced and the cache works again (the outage itself is the throttles'
    and the deny-list's to answer, docs/security.md)."""
    pytest.importorskip("redis")  # installed with the postgres extra (make test-postgres, CI)
    from cells_oidc.caches import RedisCache
    from tests.live_server import free_port

    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return server
            time.sleep(0.05)
        server.kill()
        raise AssertionError("redis-server did not start")

    server = start()
    try:
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", {})
        cache.set("k", "before", 30)
        assert cache.get("k") == "before"
        assert cache.incr_counters([("n", 30)]) == [1]
        server.terminate()
        server.wait(timeout=10)
        server = start()
        answers = []
        for _ in range(3):  # the first call may still meet the dead connection
            try:
                answers.append(cache.get("k", "gone"))
                break
            except Exception as exc:  # noqa: BLE001 - what the callers see during the outage
                answers.append(type(exc).__name__)
        assert answers[-1] == "gone", answers  # a fresh server: the value is gone, the cache works
        cache.set("k", "after", 30)
        assert cache.get("k") == "after"
        assert cache.incr_counters([("n", 30)]) == [1]
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---- cells_oidc.caches.DatabaseCache --------------------------------------------------------------
@pytest.fixture
def database_cache(db: Any) -> Any:
    from django.core.management import call_command

    from cells_oidc.caches import DatabaseCache

    table = "cells_oidc_counters_" + uuid.uuid4().hex[:8]
    call_command("createcachetable", table, verbosity=0)
    return DatabaseCache(table, {"OPTIONS": {"MAX_ENTRIES": 1_000_000}})


def _statements(captured: Any) -> list[str]:
    """The statements of a capture, without the transaction's own (BEGIN, SAVEPOINT, RELEASE)."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if not query["sql"].upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"))
    ]


def test_database_counters_count_in_one_transaction_and_keep_their_window(database_cache: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert database_cache.incr_counters([("a", 30), ("b", 30)]) == [1, 1]
    # One key counted twice in one call (two rules of a request on one identity) counts twice.
    assert database_cache.incr_counters([("a", 30), ("b", 30), ("a", 30)]) == [2, 2, 3]
    # Django's API reads them as the ints they are (the stored form is Django's).
    assert database_cache.get("a") == 3 and database_cache.get("b") == 2
    assert database_cache.incr("a") == 4
    # An event taken back (a sign-in attempt that was no failure).
    assert database_cache.incr_counters([("a", 30)], delta=-1) == [3]
    assert database_cache.incr("a") == 4

    # A live counter keeps the expiry of its window, whatever timeout the next event names.
    window_end = _row(database_cache, "b")[1]
    assert 25 <= (window_end - timezone.now()).total_seconds() <= 30
    database_cache.incr_counters([("b", 1000)])
    assert _row(database_cache, "b")[1] == window_end and database_cache.get("b") == 3
    # An expired one starts a new window at 1, with the expiry of the timeout it names.
    _expire(database_cache, "b")
    assert database_cache.incr_counters([("b", 100)]) == [1]
    assert 95 <= (_row(database_cache, "b")[1] - timezone.now()).total_seconds() <= 100

    # Three counters, one of them new: their read, three writes and the table's size check (the
    # INSERT grew it). Django's add and incr cost six statements a counter (18 here).
    immediate = connection.vendor != "sqlite" or getattr(connection, "transaction_mode", None) in (
        "IMMEDIATE",
        "EXCLUSIVE",
    )
    with CaptureQueriesContext(connection) as captured:
        assert database_cache.incr_counters([("a", 30), ("b", 30), ("c", 30)]) == [5, 2, 1]
    assert len(_statements(captured)) == 5 + (0 if immediate else 1), _statements(captured)
    # Live counters only: no row added, no size check.
    with CaptureQueriesContext(connection) as captured:
        assert database_cache.incr_counters([("a", 30), ("c", 30)]) == [6, 2]
    assert len(_statements(captured)) == 3 + (0 if immediate else 1), _statements(captured)


def test_database_counters_keep_the_table_bounded(database_cache: Any) -> None:
    """New counters are the only rows they add: the table is culled as Django's set() culls it."""
    from django.db import connection

    database_cache._max_entries, database_cache._cull_frequency = 5, 2
    table = connection.ops.quote_name(database_cache._table)
    for number in range(30):
        database_cache.incr_counters([(f"n{number}", 30)])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - the test's own table
            assert cursor.fetchone()[0] <= 6


def _row(cache: Any, key: str) -> tuple[Any, Any]:
    """The stored ``(value, expires)`` of ``key``, read past Django's API (which hides expired rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT value, expires FROM {connection.ops.quote_name(cache._table)} WHERE cache_key = %s",
            [cache.make_and_validate_key(key)],
        )
        value, expires = cursor.fetchone()
    if isinstance(expires, str):  # SQLite
        from django.utils.dateparse import parse_datetime

        expires = parse_datetime(expires)
    if timezone.is_naive(expires):
        expires = timezone.make_aware(expires, datetime.timezone.utc)
    return value, expires


def _expire(cache: Any, key: str) -> None:
    from django.db import connection

    past = connection.ops.adapt_datetimefield_value(
        timezone.now().replace(microsecond=0) - datetime.timedelta(seconds=5)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(cache._table)} SET expires = %s WHERE cache_key = %s",
            [past, cache.make_and_validate_key(key)],
        )


def test_database_reads_answer_what_djangos_own_answer(database_cache: Any) -> None:
    """get_many is rewritten for the bearer path (one statement built once, the expiry's expression
    built once): it must read exactly what Django's DatabaseCache reads, versions and expiry included."""
    import warnings

    from django.core.cache.backends.base import CacheKeyWarning
    from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    values = {"int": 7, "text": "a" * 40, "profile": {"login": "alice", "groups": ["g"]}, "none": None}
    database_cache.set_many(values, 60)
    database_cache.set("other-version", "v2", 60, version=2)
    for names, version in (([*values, "gone", "missing"], None), (["other-version", "int"], 2), ([], None)):
        database_cache.set("gone", "old", 60)
        _expire(database_cache, "gone")
        theirs = DjangoDatabaseCache.get_many(database_cache, names, version=version)
        database_cache.set("gone", "old", 60)
        _expire(database_cache, "gone")
        with CaptureQueriesContext(connection) as captured:
            ours = database_cache.get_many(names, version=version)
        assert ours == theirs
        # One SELECT (and Django's DELETE of the expired row when one was read).
        assert len(_statements(captured)) == (1 if names else 0) + ("gone" in names)
    assert database_cache.get_many(["gone"]) == {}
    # The expired row is gone from the table, as after Django's read.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {connection.ops.quote_name(database_cache._table)} WHERE cache_key = %s",  # noqa: S608
            [database_cache.make_and_validate_key("gone")],
        )
        assert cursor.fetchone()[0] == 0
    # Keys memcached would refuse still warn as Django warns; others do not.
    for bad in ("with space", "x" * 251, "tab\there"):
        with pytest.warns(CacheKeyWarning):
            database_cache.get_many([bad])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        database_cache.get_many(["cells_oidc:deny:0123abcd", "é-ünïcode"])


def test_the_throttle_on_the_database_cache_refuses_past_the_limit(database_cache: Any) -> None:
    throttle_counts_every_rule_and_refuses_past_the_limit(database_cache)


def _databases(tmp_path: Any) -> list[tuple[str, dict[str, Any]]]:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "cache.sqlite3")}
    found = [
        # Django's defaults (deferred transactions, rollback journal), as a site may mount us ...
        ("sqlite-defaults", {**sqlite, "OPTIONS": {}}),
        # ... and the demo's (docs/deploy.md).
        (
            "sqlite-immediate-wal",
            {
                **sqlite,
                "NAME": str(tmp_path / "wal.sqlite3"),
                "OPTIONS": {
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL",
                },
            },
        ),
    ]
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import dj_database_url

        found.append(("postgresql", dict(dj_database_url.parse(url))))
    return found


def test_database_counters_are_exact_across_processes(tmp_path: Any) -> None:
    """Four processes count at once on one database cache: no event is lost (Django's add and incr
    are a read and a write: two processes could both read 5 and both write 6)."""
    import json
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("database_cache_counter.py")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    calls, processes = 60, 4
    for name, database in _databases(tmp_path):
        table = "cells_oidc_counters_" + uuid.uuid4().hex[:8]

        def run(mode: str, database: dict[str, Any] = database, table: str = table) -> Any:
            return subprocess.Popen(
                [sys.executable, str(script), mode, json.dumps(database), table, str(calls)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        def finish(process: Any) -> str:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, (name, err[-3000:])
            return str(out).strip()

        finish(run("create"))
        try:
            counting = [run("count") for _ in range(processes)]
            own = [finish(process) for process in counting]
            assert own == [str(calls)] * processes, (name, own)
            assert finish(run("read")) == str(2 * calls * processes), name
        finally:
            if name == "postgresql":
                finish(run("drop"))


class _CacheProcess:
    """A process of tests/internal/database_cache_copy.py: one command a line, one JSON answer."""

    def __init__(self, database: dict[str, Any], table: str) -> None:
        import json
        import sys
        from pathlib import Path

        self._json = json
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        script = Path(__file__).with_name("database_cache_copy.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), json.dumps(database), table],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, command: str, *arguments: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + (" " + self._json.dumps(arguments) if arguments else "") + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the cache process ended ({command})"
        return self._json.loads(line)

    def read(self, *keys: str, max_age: float = 60) -> tuple[dict[str, Any], list[str]]:
        """The values, and the statements run through Django (the PRAGMA runs on the sqlite3
        connection itself: not among them)."""
        answer = self("read", list(keys), max_age)
        return answer["values"], [sql.split()[0].upper() for sql in answer["statements"]]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.mark.parametrize("kind", ["sqlite-defaults", "sqlite-immediate-wal"])
def test_database_copies_see_every_write_of_every_process(tmp_path: Any, kind: str) -> None:
    """On a SQLite file, DatabaseCache.get_many_tracked answers the bearer path from the connection's
    copy while SQLite says nothing was written since (PRAGMA data_version: other connections and
    processes; total_changes: its own). Whoever writes — another process, another thread, the
    reader itself — the very next read returns what the table holds; an expired row is gone from
    the copy at its expiry with nothing written; in a transaction the table is read."""
    # Django's defaults (rollback journal, deferred transactions) and the demo's (WAL, IMMEDIATE).
    database = dict(_databases(tmp_path))[kind]
    table = "cells_oidc_copy_" + uuid.uuid4().hex[:8]
    reader, writer = _CacheProcess(database, table), _CacheProcess(database, table)
    try:
        assert writer("create") == "ok"
        writer("set", "version", 1, 600)
        writer("set", "profile", {"login": "alice", "groups": ["g"]}, 600)
        keys = ("deny:t1", "version", "profile")
        values, statements = reader.read(*keys)
        assert values == {"version": 1, "profile": {"login": "alice", "groups": ["g"]}}
        assert statements == ["SELECT"]
        # Nothing written since: the copy answers, with no read of the table.
        assert reader.read(*keys) == (values, [])
        # A key the copy has not seen yet is read (with the others: one statement).
        assert reader.read("deny:t2", "version")[1] == ["SELECT"]

        expected = dict(values)
        for turn in range(12):
            # Each writer in turn; the reader has just answered from its copy.
            assert reader.read(*keys) == (expected, [])
            who = turn % 4
            if who == 0:  # another process denies the token (the revocation)
                writer("set", "deny:t1", True, 600)
                expected["deny:t1"] = True
            elif who == 1:  # another process removes it and bumps the key-set version
                writer("delete", "deny:t1")
                writer("set", "version", turn, 600)
                expected.pop("deny:t1")
                expected["version"] = turn
            elif who == 2:  # another connection of the reader's process (another thread)
                reader("thread-set", "profile", {"login": f"alice-{turn}"}, 600)
                expected["profile"] = {"login": f"alice-{turn}"}
            else:  # the reader's own connection
                reader("set", "version", -turn, 600)
                expected["version"] = -turn
            assert reader.read(*keys) == (expected, ["SELECT"]), (turn, who)

        writer("clear")
        assert reader.read(*keys) == ({}, ["SELECT"])
        # A row expires in the copy with nothing written in between.
        # Django stores whole seconds, rounded down: a 2-second timeout expires after 1 to 2 s.
        writer("set", "deny:t1", True, 2)
        assert reader.read(*keys)[0] == {"deny:t1": True}
        assert reader.read(*keys) == ({"deny:t1": True}, [])
        time.sleep(2.1)
        values, statements = reader.read(*keys)
        assert values == {} and statements[:1] == ["SELECT"]
        # A copy older than max_age is read again.
        assert reader.read("version", max_age=1.0)[1] == ["SELECT"]
        assert reader.read("version", max_age=1.0)[1] == []
        time.sleep(1.1)
        assert reader.read("version", max_age=1.0)[1] == ["SELECT"]
        # In a transaction: the table as the transaction sees it (its own uncommitted write).
        writer("set", "version", 5, 600)
        assert reader.read("version")[0] == {"version": 5}
        inside = reader("atomic-read", "version", 6)
        assert inside["values"] == {"version": 6}
        assert [sql.split()[0].upper() for sql in inside["statements"]][-1:] == ["SELECT"]
        assert reader.read("version")[0] == {"version": 5}  # rolled back
    finally:
        reader.close()
        writer.close()


def test_database_copies_are_off_where_sqlite_cannot_tell(database_cache: Any) -> None:
    """The suite's database (SQLite in memory, or PostgreSQL): get_many_tracked is get_many."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert not database_cache.keeps_copies()
    database_cache.set("version", 3, 60)
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            assert database_cache.get_many_tracked(["version", "deny:x"], max_age=60) == {"version": 3}
        assert [sql.split()[0].upper() for sql in _statements(captured)] == ["SELECT"]
