"""Run by tests/internal/test_caches.py in processes of their own: count on a database cache.

usage: database_cache_counter.py create|count|read DATABASE-JSON TABLE CALLS
"""

from __future__ import annotations

import json
import os
import sys

from tests.internal.database_cache_site import configure

mode, database, table, calls = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
configure(database, table)

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402

if mode == "create":
    call_command("createcachetable", verbosity=0)
elif mode == "count":
    for _ in range(calls):
        # The shared counter twice per call (two rules of one request on one identity), and one
        # counter of this process's own.
        cache.incr_counters([("shared", 60), (f"own-{os.getpid()}", 60), ("shared", 60)])
    print(cache.get(f"own-{os.getpid()}"))
elif mode == "read":
    print(cache.get("shared"))
elif mode == "drop":
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")
