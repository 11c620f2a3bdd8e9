"""Settings of the provider process of tests/test_remote.py (``manage.py runserver`` in a subprocess).

Everything comes from the environment the test sets: the working directory (file SQLite database
and PEM keys), the site URL, and which key signs (the others are published as inactive).
"""

from __future__ import annotations

import os
from pathlib import Path

from cells_oidc.conf import oauth2_provider_settings
from project.settings import *  # noqa: F403

_DIR = Path(os.environ["CELLS_OIDC_REMOTE_DIR"])

DEBUG = False
SECRET_KEY = "remote-provider-tests-" + "r" * 40
ROOT_URLCONF = "tests.remote.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_DIR / "provider.sqlite3")}}
# A cache the provider's processes share without a table to create (the demo's default is the
# database cache, which needs `createcachetable`).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(_DIR / "cache"),
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

CELLS_OIDC_SITE_URL = os.environ["CELLS_OIDC_REMOTE_SITE_URL"]
# The API of the consumer site is one of the audiences of every access token (RFC 9068 §2.2).
CELLS_OIDC_ACCESS_TOKEN_AUDIENCE = [CELLS_OIDC_SITE_URL, os.environ["CELLS_OIDC_REMOTE_API_AUDIENCE"]]
OAUTH2_PROVIDER = oauth2_provider_settings(
    signing_key=(_DIR / os.environ["CELLS_OIDC_REMOTE_ACTIVE_KEY"]).read_text(),
    inactive_keys=[
        (_DIR / name).read_text() for name in os.environ.get("CELLS_OIDC_REMOTE_INACTIVE_KEYS", "").split()
    ],
)

# runserver logs every request on stderr (the tests count the JWKS fetches there).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{message}", "style": "{"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
