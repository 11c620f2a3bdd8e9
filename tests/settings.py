"""Settings of the test suite (the demo project's, with an in-memory key and database)."""

from __future__ import annotations

import os

import dj_database_url
from jwcrypto import jwk

from cells_oidc.conf import oauth2_provider_settings
from project.settings import *  # noqa: F403

# A fresh signing key per test run, and an older one published as inactive (rotation).
SIGNING_KEY = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
OLD_SIGNING_KEY = (
    jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
)
OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=SIGNING_KEY, inactive_keys=[OLD_SIGNING_KEY])

DEBUG = False
SECRET_KEY = "tests-only-" + "s" * 50
# The suite runs on SQLite in memory by default, and on PostgreSQL + Redis when DATABASE_URL and
# REDIS_URL say so (.ci/run does both; scripts/services.sh starts throw-away servers on loopback).
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
    if DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
        # The demo's options (project/settings.py): every query of the suite runs server-bound.
        DATABASES["default"]["OPTIONS"] = dict(POSTGRES_OPTIONS)  # noqa: F405
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "cells_oidc.caches.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            # A throw-away server (scripts/services.sh): every test starts with an empty cache (conftest).
            "KEY_PREFIX": "cells-oidc-tests",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELLS_OIDC_SITE_URL = "http://testserver"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# The suite runs in one process: its LocMemCache is allowed (check cells_oidc.E013); never in a site.
CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE = True
# Request-rate limits far above what any test sends from 127.0.0.1 (the race tests send hundreds of
# token requests a minute); tests/test_throttle.py sets the real ones. The failure limits (sign-in,
# device codes) keep their defaults.
CELLS_OIDC_THROTTLES = {
    "token_client_ip": (100_000, 60),
    "token_ip": (100_000, 60),
    "introspect_client_ip": (100_000, 60),
    "pat_failure_ip": (100_000, 600),
}
