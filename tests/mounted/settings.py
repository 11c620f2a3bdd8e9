"""A second, minimal site that mounts cells-oidc under another prefix, following the README recipe.

Run by `make test` as its own pytest session (tests/mounted/mounted_site.py).
"""

from __future__ import annotations

from jwcrypto import jwk

from cells_oidc.conf import oauth2_provider_settings

SECRET_KEY = "mounted-site-tests-" + "m" * 40
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "tests.mounted.urls"
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# --- the recipe of the README -----------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "rest_framework",
    "cells_oidc",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
CELLS_OIDC_SITE_URL = "https://portal.example.com/cells"
OAUTH2_PROVIDER = oauth2_provider_settings(
    signing_key=jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
)
