"""Settings of the gunicorn workers of tests/test_races.py: the demo project as a site runs it.

Every worker must share the test's state, so nothing here is per process: the database is a FILE
SQLite database in the test's directory (with the embedded default's options, project/settings.py)
or the PostgreSQL database the test created; the cache is the Redis of ``REDIS_URL`` or, as the
demo's without Redis, the database cache (``createcachetable``); the signing key is a PEM file there.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from cells_oidc.conf import oauth2_provider_settings
from tests.settings import *  # noqa: F403

_DIR = Path(os.environ["CELLS_OIDC_LIVE_DIR"])

ROOT_URLCONF = "project.urls"
CELLS_OIDC_SITE_URL = os.environ["CELLS_OIDC_LIVE_SITE_URL"]
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
if os.environ.get("CELLS_OIDC_LIVE_DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(os.environ["CELLS_OIDC_LIVE_DATABASE_URL"], conn_max_age=60)
    }
    # The demo's (project/settings.py): server-side binding, prepared statements.
    DATABASES["default"]["OPTIONS"] = dict(POSTGRES_OPTIONS)  # noqa: F405
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_DIR / "db.sqlite3"),
            "OPTIONS": dict(SQLITE_OPTIONS),  # noqa: F405 - the embedded default's (project/settings.py)
            "CONN_MAX_AGE": 60,  # persistent, as the demo's (project/settings.py)
        }
    }
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "cells_oidc.caches.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": "cells-oidc-live-" + _DIR.name,
        }
    }
else:
    # As the demo without Redis (project/settings.py): the database cache; on the SQLite file each
    # connection keeps a copy of the bearer path's rows until anything writes to the file.
    CACHES = {
        "default": {
            "BACKEND": "cells_oidc.caches.DatabaseCache",
            "LOCATION": "cells_oidc_cache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
if os.environ.get("REDIS_URL") or not os.environ.get("CELLS_OIDC_LIVE_DATABASE_URL"):
    # As the demo (project/settings.py): each process answers the bearer path from its own copy,
    # kept exact by Redis's invalidations or SQLite's count of writes. Five seconds, not the demo's
    # one: a revocation these tests check "at once" must be seen through the copy's exactness,
    # never by the copy growing old.
    CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS = 5
OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=(_DIR / "signing-key.pem").read_text())

# A 500 must show in the test's failure message: errors go to the worker's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
