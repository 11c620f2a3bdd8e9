"""Settings of the cells-oidc demo site, read from the environment with development defaults."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from cells_oidc.conf import oauth2_provider_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY") or ("insecure-dev-only-" + "x" * 40 if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("Set SECRET_KEY when DEBUG is off.")
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "rest_framework",
    "drf_spectacular",
    "cells_oidc",
    "project",
]

MIDDLEWARE = [
    # First: throttles (429) and outages (503, never an HTML 500), docs/deploy.md.
    "cells_oidc.middleware.ProviderMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collectstatic's output (STATIC_ROOT) under any WSGI server, gunicorn included.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The pages speak the browser's language (Accept-Language) among LANGUAGES (docs/i18n.md).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The demo site's overrides of the app's templates (the override path a site uses).
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
# SQLite under a multi-process server (docs/security.md, "Exactly once"): a token request is one
# transaction that writes, so it takes the write lock when it begins (IMMEDIATE) instead of
# failing with "database is locked" when it first writes after reading; a writer waits up to
# 20 s for the lock; WAL lets readers go on while one process writes.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}

# A login-heavy service: Argon2id (RFC 9106) first, with OWASP's parameters (project/hashers.py),
# so a login costs what the hasher costs (docs/performance.md); the others still check older
# hashes, which Django rewrites with the first hasher at the user's next successful login.
PASSWORD_HASHERS = [
    "project.hashers.LoginHeavyArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]


def _processes() -> int:
    # gunicorn reads its worker count from WEB_CONCURRENCY; runserver is one process.
    try:
        return max(1, int(os.environ.get("WEB_CONCURRENCY", "1")))
    except ValueError:
        return 1


# Argon2 hashes a process runs at once (project/hashers.py): the cores shared among the processes.
PASSWORD_HASHING_CONCURRENCY = max(1, (os.cpu_count() or 1) // _processes())

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The languages cells-oidc ships translations for (docs/i18n.md); a site lists the ones it offers.
LANGUAGES = [("en", "English"), ("fr", "Français"), ("de", "Deutsch"), ("es", "Español"), ("it", "Italiano")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "cells_oidc:login"
LOGIN_REDIRECT_URL = "/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
X_FRAME_OPTIONS = "DENY"
# A CSRF failure (an expired login form, say) gets the provider's styled error page.
CSRF_FAILURE_VIEW = "cells_oidc.views.csrf_failure"

# ---- state every process shares (docs/deploy.md) ------------------------------------------------
# A broken persistent connection (the database restarted) is replaced at the next request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL: parameters bound by the server and statements prepared on each persistent connection
# after their fifth use (psycopg's prepare_threshold; Django's default binds on the client and never
# prepares): the token endpoint's statements are planned once per connection, not per request
# (docs/performance.md). Behind PgBouncer in transaction mode before 1.21, leave both out.
POSTGRES_OPTIONS = {"server_side_binding": True, "prepare_threshold": 5}
if DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # Fail fast when PostgreSQL is unreachable: the request is answered 503 in seconds, not hung.
    DATABASES["default"]["OPTIONS"] = {
        "connect_timeout": 3,
        **POSTGRES_OPTIONS,
        **DATABASES["default"].get("OPTIONS", {}),
    }
# The revocation deny-list and the throttles (and the key caches) must be seen by every process:
# Redis when REDIS_URL is set, else the database cache (`manage.py createcachetable`, done by
# `make run`), which every process and machine of the database shares. Never LocMemCache
# (check cells_oidc.E013). No culling of the deny-list: MAX_ENTRIES is far above its size.
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "cells_oidc.caches.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "cells_oidc.caches.DatabaseCache",
            "LOCATION": "cells_oidc_cache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
if os.environ.get("REDIS_URL") or DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The bearer path's reads (deny-list, key-set version, profile) kept in each process, at most a
    # second old: exact by Redis's invalidations, or on SQLite by its own count of writes (each
    # connection's copy is dropped when anything wrote to the file). docs/performance.md, deploy.md.
    CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS = 1

# ---- cells-oidc --------------------------------------------------------------------------------
CELLS_OIDC_SITE_URL = os.environ.get("CELLS_OIDC_SITE_URL", "http://127.0.0.1:8000")
CELLS_OIDC_SITE_NAME = os.environ.get("CELLS_OIDC_SITE_NAME", "Cells demo")
SIGNING_KEY_FILE = Path(os.environ.get("CELLS_OIDC_SIGNING_KEY_FILE", VAR_DIR / "signing-key.pem"))


def _development_signing_key(path: Path) -> str:
    """The demo's signing key. With DEBUG on, a missing one is created on first start (what `make
    run` does with `cells_oidc_keygen --if-missing`), so that any `manage.py` command works in a
    fresh checkout; with DEBUG off a missing key stays the error cells_oidc.E005."""
    if DEBUG and not path.exists():
        from jwcrypto import jwk

        pem = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(pem)
        try:
            os.link(partial, path)  # whole or not at all; of two processes starting at once, one key
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    return path.read_text() if path.exists() else ""


OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=_development_signing_key(SIGNING_KEY_FILE))

# ---- the bearer API under /a/ (docs/api.md) ------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cells_oidc.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cells demo API",
    "DESCRIPTION": "The bearer API of the cells-oidc demo site. Send an access token of the provider "
    "or a personal access token: Authorization: Bearer <token>.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/a/",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document is public; reading it needs no session or token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
}

# ---- `make bench` (bench/run.py) ------------------------------------------------------------------
# Off unless CELLS_OIDC_BENCH is set: a trivial JSON view and a claims-only API view to measure the
# others against, and a response header counting the SQL statements of each request.
BENCH = env_bool("CELLS_OIDC_BENCH", False)
if BENCH:
    MIDDLEWARE = ["project.bench.QueryCountMiddleware", *MIDDLEWARE]
