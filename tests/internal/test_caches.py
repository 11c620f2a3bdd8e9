"""cells_oidc.caches.RedisCache (docs/deploy.md "The shared cache", docs/performance.md) and the
key-set version read once per request (cells_oidc.internal.keys).

The Redis tests need a Redis server (``REDIS_URL``: `make test-postgres`, CI); they use a key prefix
of their own on it.
"""

from __future__ import annotations

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


@requires_redis
def test_the_throttle_counts_every_rule_of_a_request_and_refuses_past_the_limit(redis_cache: Any) -> None:
    rules = [throttle.Rule("one", 3, 60), throttle.Rule("two", 5, 60)]
    with mock.patch.object(throttle, "_cache", return_value=redis_cache):
        for _ in range(3):
            throttle.consume_many([(rules[0], "ip"), (rules[1], "client")])
        with pytest.raises(throttle.Throttled) as refused:
            throttle.consume_many([(rules[0], "ip"), (rules[1], "client")])
        assert refused.value.rule.name == "one" and 1 <= refused.value.retry_after <= 61
        assert throttle.count(rules[1], "client")[0] == 4
        assert throttle.hit(rules[1], "other") == 1


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
