"""Tracked reads (``CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS``, cells_oidc.caches): a process answers
the bearer path's cache reads from its own copy, and Redis's invalidations keep the copy exact.

Against the real Redis of ``REDIS_URL`` (the PostgreSQL + Redis suite of .ci/run). Each test plays
two processes with two trackers: the reader's copy, and a writer that is any other process of the
site. What a user or an attacker would notice: a value written (a revocation) is never answered
from an old copy, not even once; a read served from the copy costs Redis nothing; a lost connection
or a partition falls back to reading Redis, never to the copy.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings

from cells_oidc import caches

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis of REDIS_URL")

PREFIXES = ("cells_oidc:revoked:", "cells_oidc:keys:version")


@pytest.fixture
def pair() -> Iterator[tuple[caches.RedisCache, caches.RedisCache]]:
    """A writer and a reader on their own key prefix, each with its own process-wide tracker."""
    prefix = "tracked-" + uuid.uuid4().hex[:8]
    params = {"KEY_PREFIX": prefix, "OPTIONS": {"socket_timeout": 2}}
    writer = caches.RedisCache(os.environ["REDIS_URL"], params)
    # Another process: a tracker of its own (the registry is per process; a second key stands in).
    reader = caches.RedisCache(os.environ["REDIS_URL"], {**params, "OPTIONS": {"socket_timeout": 2.5}})
    yield writer, reader
    for tracker in list(caches._trackers.values()):
        with tracker._lock:
            tracker._reset(retry=False)
    caches._trackers.clear()


def mgets() -> int:
    """The MGET commands Redis has run (every client)."""
    import redis

    stats = redis.Redis.from_url(os.environ["REDIS_URL"]).info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


def read(cache: caches.RedisCache, *keys: str, max_age: float = 30) -> dict[str, object]:
    return cache.get_many_tracked(list(keys), prefixes=PREFIXES, max_age=max_age)


def test_a_copy_answers_without_redis_and_a_fenced_write_is_seen_at_once(pair) -> None:
    writer, reader = pair
    key = "cells_oidc:revoked:" + "a" * 64
    assert read(reader, key, "cells_oidc:keys:version") == {}
    before = mgets()
    for _ in range(50):
        assert read(reader, key, "cells_oidc:keys:version") == {}
    assert mgets() == before  # fifty answers, no round trip
    for turn in range(100):  # revoke, take back, revoke…: never one stale answer
        if turn % 2 == 0:
            writer.set(key, 1, 60)
        else:
            writer.delete(key)
        writer.fence()
        expected = {key: 1} if turn % 2 == 0 else {}
        assert read(reader, key, "cells_oidc:keys:version") == expected, turn
        assert read(reader, key, "cells_oidc:keys:version") == expected, turn


def test_every_kind_of_value_reads_back_as_django_reads_it(pair) -> None:
    """Values from the copy are decoded without Django's try-int-first (cells_oidc.caches._loads):
    each must come back as Django's own get_many returns it, from Redis and from the copy."""
    writer, reader = pair
    values = {
        "int": 7,
        "negative": -12,
        "big": 2**80,
        "bool": True,
        "float": 1.5,
        "text": uuid.uuid4().hex,
        "digits-text": "123",
        "bytes": b"\x80\x05raw",
        "profile": {"login": "alice", "groups": ["g1", "g2"]},
        "none": None,
    }
    keys = {f"cells_oidc:revoked:{name}": value for name, value in values.items()}
    writer.set_many(keys, 60)
    for _ in range(2):  # filled from Redis, then answered from the copy
        found = read(reader, *keys)
        assert found == reader.get_many(list(keys)) == keys
        assert {key: type(value) for key, value in found.items()} == {key: type(v) for key, v in keys.items()}


def test_a_key_the_reader_never_read_is_announced_too(pair) -> None:
    """BCAST: written before the reader asked for it, the entry is read fresh (not a missing copy)."""
    writer, reader = pair
    first, second = "cells_oidc:revoked:" + "1" * 64, "cells_oidc:revoked:" + "2" * 64
    assert read(reader, first) == {}
    writer.set(second, 1, 60)
    writer.fence()
    assert read(reader, first, second) == {second: 1}
    writer.set(first, 1, 60)
    writer.fence()
    assert read(reader, first) == {first: 1}


def test_an_entry_older_than_max_age_is_read_again(pair) -> None:
    writer, reader = pair
    key = "cells_oidc:revoked:" + "b" * 64
    read(reader, key, max_age=0.2)
    before = mgets()
    read(reader, key, max_age=0.2)
    assert mgets() == before
    time.sleep(0.3)
    read(reader, key, max_age=0.2)
    assert mgets() == before + 1


def test_a_killed_connection_is_never_answered_from(pair) -> None:
    """The reader's tracking connection is cut (a Redis restart, a proxy's idle timeout): a write
    it could not hear of is still seen, because the copy goes with the connection."""
    import redis

    writer, reader = pair
    key = "cells_oidc:revoked:" + "c" * 64
    assert read(reader, key) == {}
    admin = redis.Redis.from_url(os.environ["REDIS_URL"])
    killed = 0
    for client in admin.client_list():
        if "t" in client.get("flags", ""):  # t: CLIENT TRACKING is on
            killed += admin.client_kill_filter(_id=client["id"])
    assert killed >= 1
    writer.set(key, 1, 60)  # no invalidation can reach the reader now
    assert read(reader, key) == {key: 1}
    assert read(reader, key) == {key: 1}


def test_many_invalidations_at_once_empty_the_copy(pair) -> None:
    """A drain that reads FLUSH_AFTER keys or more forgets everything: Redis may still hold the
    rest of the burst (a mass revocation) for this socket."""
    writer, reader = pair
    quiet = "cells_oidc:revoked:" + "d" * 64
    read(reader, quiet)
    writer.set_many({f"cells_oidc:revoked:{n:064d}": 1 for n in range(300)}, 60)
    writer.fence()
    before = mgets()
    assert read(reader, quiet) == {}
    assert mgets() == before + 1  # read again, not from the copy


def test_a_flushed_database_empties_the_copy(pair) -> None:
    writer, reader = pair
    key = "cells_oidc:revoked:" + "e" * 64
    writer.set(key, 1, 60)
    assert read(reader, key) == {key: 1}
    writer.clear()  # FLUSHDB: one invalidation with no key
    writer.fence()
    assert read(reader, key) == {}


def test_keys_outside_the_prefixes_are_read_from_redis_every_time(pair) -> None:
    writer, reader = pair
    writer.set("other", 1, 60)
    before = mgets()
    for _ in range(3):
        assert reader.get_many_tracked(["other"], prefixes=PREFIXES, max_age=30) == {"other": 1}
    assert mgets() == before + 3


def test_an_unreachable_redis_fails_closed_not_from_the_copy(pair) -> None:
    """A tracker whose Redis is gone (here: a server nobody listens on) reads the usual way, and
    that read's error is what the caller sees: the bearer path refuses the token (revocation.status)."""
    params = {"KEY_PREFIX": "tracked-down", "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}
    import redis

    down = caches.RedisCache("redis://127.0.0.1:1/0", params)
    with pytest.raises(redis.exceptions.ConnectionError):  # from the usual read
        down.get_many_tracked(["cells_oidc:revoked:x"], prefixes=PREFIXES, max_age=30)


def test_a_busy_tracking_connection_is_not_waited_for(pair) -> None:
    """While one thread holds the tracking connection (a miss's round trip), another reads Redis
    the usual way — the right value, without queueing behind it."""
    writer, reader = pair
    key = "cells_oidc:revoked:" + "f" * 64
    assert read(reader, key) == {}
    tracker = reader._tracker
    assert tracker is not None
    writer.set(key, 1, 60)
    writer.fence()
    with tracker._lock:  # as a thread in the middle of a read would
        assert read(reader, key) == {key: 1}
    assert read(reader, key) == {key: 1}


@override_settings(CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS=30)
def test_a_denied_token_is_refused_at_once_by_a_warm_copy() -> None:
    """revocation.status through the copy: "not revoked" twice (the second from the copy), then
    ``deny`` (which fences) and the very next check says revoked, though the copy is 30 s good."""
    from cells_oidc.internal import revocation

    token = "header." + uuid.uuid4().hex + ".signature"
    assert revocation.status(token)[0] is False
    assert revocation.status(token)[0] is False  # now from the copy
    revocation.deny(token, time.time() + 600)
    assert revocation.status(token)[0] is True


@override_settings(CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS=30)
def test_the_profile_read_with_the_deny_list_comes_from_the_copy_too() -> None:
    """GET /a/user/me reads its profile's row and generation with the deny-list (profiles.py
    registers their prefixes): the second request of a token makes no round trip either."""
    from cells_oidc.internal import profiles, revocation

    token = "header." + uuid.uuid4().hex + ".signature"
    also = profiles.cache_keys("subject-" + uuid.uuid4().hex)
    assert len(also) == 2
    revocation.status(token, also)
    before = mgets()
    assert revocation.status(token, also) == (False, {})
    assert mgets() == before
