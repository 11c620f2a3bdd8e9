"""Run by tests/internal/test_caches.py in processes of their own: a process with a database cache on a
SQLite file, answering one command a line on stdin with one JSON line on stdout.

usage: database_cache_copy.py DATABASE-JSON TABLE

Commands (arguments are JSON): ``create``; ``read KEYS MAX_AGE`` (``get_many_tracked``: the values and
the statements it ran); ``set KEY VALUE TIMEOUT``, ``delete KEY``, ``clear`` (this thread's
connection); ``thread-set KEY VALUE TIMEOUT`` (another thread: another connection of this process);
``atomic-read KEY VALUE`` (set then read inside one transaction, which is rolled back).
"""

from __future__ import annotations

import json
import sys
import threading

from tests.internal.database_cache_site import configure

database, table = json.loads(sys.argv[1]), sys.argv[2]
configure(database, table)

from django.core.cache import cache, caches  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402


class _Rollback(Exception):
    pass


def _read(keys: list[str], max_age: float) -> dict[str, object]:
    statements: list[str] = []

    def note(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        values = cache.get_many_tracked(keys, max_age=max_age)
    return {"values": values, "statements": statements}


def _in_thread(key: str, value: object, timeout: float) -> None:
    def write() -> None:
        caches["default"].set(key, value, timeout)  # this thread's own cache and connection
        connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


def _atomic_read(key: str, value: object) -> dict[str, object]:
    answer: dict[str, object] = {}
    try:
        with transaction.atomic():
            cache.set(key, value, 60)
            answer = _read([key], 60)
            raise _Rollback
    except _Rollback:
        pass
    return answer


for line in sys.stdin:
    command, *arguments = line.rstrip("\n").split(" ", 1)
    args = json.loads(arguments[0]) if arguments else []
    if command == "create":
        call_command("createcachetable", verbosity=0)
        answer: object = "ok"
    elif command == "read":
        answer = _read(*args)
    elif command == "set":
        cache.set(*args)
        answer = "ok"
    elif command == "delete":
        cache.delete(*args)
        answer = "ok"
    elif command == "clear":
        cache.clear()
        answer = "ok"
    elif command == "thread-set":
        _in_thread(*args)
        answer = "ok"
    elif command == "atomic-read":
        answer = _atomic_read(*args)
    else:
        answer = f"unknown command {command!r}"
    print(json.dumps(answer), flush=True)
