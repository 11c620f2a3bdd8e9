"""Settings of the test suite (the demo project's, with an in-memory key and database)."""

from __future__ import annotations

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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CELLS_OIDC_SITE_URL = "http://testserver"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
