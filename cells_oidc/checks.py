"""System checks of cells-oidc. Every id is listed in docs/checks.md."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "check_clients",
    "check_pages",
    "check_resource_server",
    "check_settings",
    "check_shared_state",
    "check_signing_keys",
]

REQUIRED_APPS = (
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "oauth2_provider",
)


@register(Tags.security)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from oauth2_provider.settings import oauth2_settings

    from cells_oidc import conf
    from cells_oidc.internal import keys

    messages: list[Any] = []
    missing = [app for app in REQUIRED_APPS if not apps.is_installed(app)]
    if missing:
        messages.append(
            Error(
                f"cells-oidc needs these apps in INSTALLED_APPS: {', '.join(missing)}.",
                hint="Add them before 'cells_oidc'.",
                id="cells_oidc.E001",
            )
        )
    urls = conf.app_settings.SITE_URLS
    if not urls:
        messages.append(
            Error(
                "CELLS_OIDC_SITE_URL is not set.",
                hint="Set it to the public URL of the site, e.g. 'https://cells.example.com'; "
                "the issuer and every endpoint URL are built from it.",
                id="cells_oidc.E002",
            )
        )
    for url in urls:
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            messages.append(
                Error(
                    f"CELLS_OIDC_SITE_URL {url!r} is not an http(s) URL of the form scheme://host[:port][/path].",
                    hint="No user, query or fragment.",
                    id="cells_oidc.E003",
                )
            )
        elif parts.scheme != "https" and not settings.DEBUG:
            messages.append(
                Warning(
                    f"The issuer {url!r} is not https while DEBUG is off.",
                    hint="OpenID Connect Core §16.17 requires TLS; serve the site over https.",
                    id="cells_oidc.W001",
                )
            )
    if not oauth2_settings.OIDC_ENABLED:
        messages.append(
            Error(
                "OpenID Connect is switched off in OAUTH2_PROVIDER.",
                hint="Build OAUTH2_PROVIDER with cells_oidc.conf.oauth2_provider_settings() "
                "(or set OIDC_ENABLED=True).",
                id="cells_oidc.E004",
            )
        )
    try:
        # A KeyFile (oauth2_provider_settings(signing_key_file=...)) reads its file here.
        has_key = bool(oauth2_settings.OIDC_RSA_PRIVATE_KEY)
    except ImproperlyConfigured as exc:
        messages.append(Error(str(exc), id="cells_oidc.E005"))
    else:
        if not has_key and not _database_has_keys():
            messages.append(
                Error(
                    "No signing key: OAUTH2_PROVIDER['OIDC_RSA_PRIVATE_KEY'] is empty.",
                    hint="Create one with 'manage.py cells_oidc_keygen PATH' and pass its PEM to "
                    "oauth2_provider_settings(signing_key=...).",
                    id="cells_oidc.E005",
                )
            )
        elif has_key:
            try:
                keys.settings_keys()
            except (ValueError, TypeError) as exc:
                messages.append(
                    Error(
                        f"The signing key cannot be used: {exc}.",
                        hint="Use an RSA private key in PEM format (2048 bits or more).",
                        id="cells_oidc.E006",
                    )
                )
    messages.extend(_key_settings_messages())
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS
    from cells_oidc.internal.validators import CellsOAuth2Validator

    if not (isinstance(validator, type) and issubclass(validator, CellsOAuth2Validator)):
        messages.append(
            Error(
                "OAUTH2_PROVIDER['OAUTH2_VALIDATOR_CLASS'] is not cells-oidc's validator (or a subclass).",
                hint=f"Set it to '{conf.VALIDATOR_CLASS}'.",
                id="cells_oidc.E007",
            )
        )
    from cells_oidc.internal.issuance import generate_access_token

    if oauth2_settings.ACCESS_TOKEN_GENERATOR is not generate_access_token:
        messages.append(
            Error(
                "OAUTH2_PROVIDER['ACCESS_TOKEN_GENERATOR'] does not mint cells-oidc's JWT access tokens.",
                hint=f"Set it to '{conf.ACCESS_TOKEN_GENERATOR}'.",
                id="cells_oidc.E008",
            )
        )
    return messages


def _database_has_keys() -> bool:
    """Whether signing keys are stored (docs/keys.md); ``False`` before ``migrate`` or without a
    database."""
    try:
        from cells_oidc.models import SigningKey

        return SigningKey.objects.exists()
    except Exception:  # noqa: BLE001 - not migrated, no database, or a test without one
        return False


def _key_settings_messages() -> list[Any]:
    from cells_oidc import conf
    from cells_oidc.internal import keys

    messages: list[Any] = []
    algorithm = conf.app_settings.ACCESS_TOKEN_ALGORITHM
    if algorithm not in keys.SUPPORTED_ALGORITHMS:
        messages.append(
            Error(
                f"CELLS_OIDC_ACCESS_TOKEN_ALGORITHM {algorithm!r} is not one of "
                f"{', '.join(keys.SUPPORTED_ALGORITHMS)}.",
                hint="RS256 (the default), ES256 or EdDSA (docs/keys.md).",
                id="cells_oidc.E017",
            )
        )
    for name, (default, _, whole) in conf.DURATION_SETTINGS.items():
        if conf.seconds_setting(name) is None:
            kind = "a whole number of seconds" if whole else "a number of seconds"
            messages.append(
                Error(
                    f"{name} {getattr(settings, name)!r} is not {kind}.",
                    hint=f"Default {default}; 0 turns the cache off (docs/configuration.md).",
                    id="cells_oidc.E017",
                )
            )
    if conf.app_settings.KEY_ENCRYPTION_KEYS or conf.app_settings.KEY_ENCRYPTION_FROM_SECRET_KEY:
        try:
            keys.key_encryption()
        except keys.KeyEncryptionError as exc:
            messages.append(Error(str(exc), id="cells_oidc.E017"))
    return messages


@register(Tags.database)
def check_signing_keys(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """Database check (``migrate``, ``check --database default``): stored signing keys need the
    key-encryption key that encrypted them, and a current key of every algorithm configured."""
    if not databases:
        return []
    from django.db import DatabaseError

    from cells_oidc import conf
    from cells_oidc.internal import keys
    from cells_oidc.models import SigningKey

    try:
        current = list(SigningKey.objects.filter(state=SigningKey.State.CURRENT))
        stored = current or SigningKey.objects.exists()
    except DatabaseError:
        return []  # not migrated yet
    if not stored:
        return []
    messages: list[Any] = []
    for row in current:
        try:
            keys.decrypt_private_key(row.encrypted_private_key, kid=row.kid)
        except (keys.KeyEncryptionError, ValueError) as exc:
            messages.append(
                Error(
                    str(exc),
                    hint="Set CELLS_OIDC_KEY_ENCRYPTION_KEY to the key-encryption key(s) the signing "
                    "keys were stored with (docs/keys.md); a new one goes first in the list.",
                    id="cells_oidc.E018",
                )
            )
            break
    signing = {(row.algorithm, row.use) for row in current}
    for algorithm, use in ((conf.app_settings.ACCESS_TOKEN_ALGORITHM, "access_token"), ("RS256", "id_token")):
        if algorithm in keys.SUPPORTED_ALGORITHMS and not signing & {(algorithm, use), (algorithm, "both")}:
            messages.append(
                Error(
                    f"No current {algorithm} signing key signs {use.replace('_', ' ')}s: none can be issued.",
                    hint=f"manage.py cells_oidc_keys create --algorithm {algorithm}",
                    id="cells_oidc.E018",
                )
            )
    return messages


@register(Tags.database)
def check_clients(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """Database checks (run by ``migrate`` and ``check --database default``)."""
    if not databases:
        return []
    from django.db import DatabaseError
    from oauth2_provider.models import get_application_model

    from cells_oidc.models import policy_for

    try:
        relaxed = [
            app.client_id
            for app in get_application_model().objects.select_related("cells_policy").order_by("client_id")
            if app.authorization_grant_type == app.GRANT_AUTHORIZATION_CODE
            and not policy_for(app).require_pkce
        ]
    except DatabaseError:
        return []  # not migrated yet
    if not relaxed:
        return []
    return [
        Warning(
            f"These clients may use the authorization code flow without PKCE: {', '.join(relaxed)}.",
            hint="RFC 9700 §2.1.1: require PKCE unless the client's app cannot send it "
            "(Cells' cells-client and cells-mobile cannot).",
            id="cells_oidc.W002",
        )
    ]


@register(Tags.security, Tags.caches)
def check_resource_server(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The bearer-token verification of :mod:`cells_oidc.internal.resource` (docs/resource-server.md)."""
    from cells_oidc import conf

    messages: list[Any] = []
    alias = conf.app_settings.RESOURCE_REVOCATION_CACHE
    caches = getattr(settings, "CACHES", {}) or {"default": {}}
    if alias not in caches:
        messages.append(
            Error(
                f"CELLS_OIDC_RESOURCE_REVOCATION_CACHE names the cache {alias!r}, which is not in CACHES.",
                hint="Name a configured cache; revoked tokens are remembered there.",
                id="cells_oidc.E009",
            )
        )
    else:
        backend = caches[alias].get("BACKEND", "django.core.cache.backends.locmem.LocMemCache")
        if backend.endswith("DummyCache"):
            messages.append(
                Error(
                    f"The revocation cache {alias!r} is a DummyCache: revoked tokens would keep working.",
                    hint="Use a real cache (Redis, Memcached or the database cache).",
                    id="cells_oidc.E010",
                )
            )
    issuer = conf.app_settings.RESOURCE_ISSUER
    if issuer is not None:
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            messages.append(
                Error(
                    f"CELLS_OIDC_RESOURCE_ISSUER {issuer!r} is not an http(s) URL with a host.",
                    hint="Set it to the provider's issuer, e.g. 'https://cells.example.com/oidc/'.",
                    id="cells_oidc.E011",
                )
            )
        elif (
            parts.scheme == "http"
            and parts.hostname not in ("localhost", "127.0.0.1", "::1")
            and not settings.DEBUG
        ):
            messages.append(
                Warning(
                    f"The provider {issuer!r} is reached over plain http: its keys could be replaced "
                    "in transit.",
                    hint="Use the provider's https issuer (RFC 8414 §3: metadata must be fetched over TLS).",
                    id="cells_oidc.W004",
                )
            )
    audience_messages = _audience_messages()
    messages.extend(audience_messages)
    if not conf.app_settings.RESOURCE_AUDIENCE and not audience_messages:
        messages.append(
            Warning(
                "No audience is expected (CELLS_OIDC_RESOURCE_AUDIENCE and CELLS_OIDC_SITE_URL are empty): "
                "every bearer token will be refused.",
                hint="Set CELLS_OIDC_RESOURCE_AUDIENCE to the aud of the tokens this API accepts.",
                id="cells_oidc.W005",
            )
        )
    return messages


def _audience_messages() -> list[Any]:
    """``CELLS_OIDC_RESOURCE_AUDIENCE``: a string or a list of strings (RFC 9068 §4, RFC 8707 §2)."""
    from cells_oidc.internal.validators import valid_resource_indicator

    value = getattr(settings, "CELLS_OIDC_RESOURCE_AUDIENCE", None)
    if value is None:
        return []
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(part, str) for part in value):
        return [
            Error(
                f"CELLS_OIDC_RESOURCE_AUDIENCE must be a string or a list of strings, not {value!r:.80}: "
                "every bearer token is refused.",
                hint="Set it to the URL of this API, e.g. 'https://files.example/api' (the resource "
                "indicator clients request tokens for), or a list of such URLs.",
                id="cells_oidc.E012",
            )
        ]
    values = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    odd = [part for part in values if not valid_resource_indicator(part)]
    if not odd:
        return []
    return [
        Warning(
            "CELLS_OIDC_RESOURCE_AUDIENCE has values that are not resource indicators: "
            f"{', '.join(map(repr, odd[:5]))}.",
            hint="RFC 8707 §2: clients name an API by an absolute URI without a fragment; tokens carry it "
            "in aud exactly as requested. A value that is not such a URI matches only tokens whose aud "
            "comes from CELLS_OIDC_ACCESS_TOKEN_AUDIENCE.",
            id="cells_oidc.W006",
        )
    ]


#: Cache backends whose state lives in one process: every process counts and denies on its own.
PROCESS_LOCAL_BACKENDS = ("LocMemCache", "DummyCache")


#: Django's caches that cull entries when they reach ``MAX_ENTRIES`` (default 300).
CULLING_BACKENDS = frozenset({"DatabaseCache", "FileBasedCache"})
MIN_CACHE_ENTRIES = 100_000


def _max_entries(config: dict[str, Any]) -> int:
    try:
        return int((config.get("OPTIONS") or {}).get("MAX_ENTRIES", 300))
    except (TypeError, ValueError):
        return 300


def _keeps_copies(alias: str) -> bool:
    """The cache ``alias`` keeps the bearer path's copies, as its backend decides
    (``keeps_copies``: ``cells_oidc.caches.RedisCache`` on one server, ``cells_oidc.caches.DatabaseCache``
    on a SQLite database file); a cache that cannot be built keeps none."""
    from django.core.cache import caches

    try:
        keeps = getattr(caches[alias], "keeps_copies", None)
        return callable(keeps) and bool(keeps())
    except Exception:  # noqa: BLE001 - a backend that cannot be imported or built
        return False


@register(Tags.security, Tags.caches)
def check_shared_state(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The deny-list and the throttles live in caches every process shares (docs/deploy.md)."""
    from cells_oidc import conf

    messages: list[Any] = []
    caches = getattr(settings, "CACHES", {}) or {"default": {}}
    uses = {
        conf.app_settings.RESOURCE_REVOCATION_CACHE: "the revocation deny-list",
        conf.app_settings.THROTTLE_CACHE: "the throttles",
    }
    if conf.app_settings.THROTTLE_CACHE == conf.app_settings.RESOURCE_REVOCATION_CACHE:
        uses[conf.app_settings.THROTTLE_CACHE] = "the revocation deny-list and the throttles"
    for alias, use in uses.items():
        if alias not in caches:
            if use != "the revocation deny-list":  # E009 reports the deny-list's
                messages.append(
                    Error(
                        f"CELLS_OIDC_THROTTLE_CACHE names the cache {alias!r}, which is not in CACHES.",
                        hint="Name a configured cache shared by every process (Redis, the database cache).",
                        id="cells_oidc.E015",
                    )
                )
            continue
        backend = str(caches[alias].get("BACKEND", "django.core.cache.backends.locmem.LocMemCache"))
        if (
            backend.rsplit(".", 1)[-1] in PROCESS_LOCAL_BACKENDS
            and not conf.app_settings.ALLOW_PROCESS_LOCAL_CACHE
        ):
            messages.append(
                Error(
                    f"The cache {alias!r} ({backend.rsplit('.', 1)[-1]}) backs {use}, but it lives in one "
                    "process: under gunicorn or any multi-process server a revoked token keeps working "
                    "in the other processes and every limit is multiplied by the number of processes.",
                    hint="Use a cache all processes share: cells_oidc.caches.RedisCache "
                    "(several machines), or on one machine cells_oidc.caches.DatabaseCache "
                    "(run 'manage.py createcachetable') or FileBasedCache. A test suite running in one "
                    "process may set CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE = True.",
                    id="cells_oidc.E013",
                )
            )
        elif (
            backend.rsplit(".", 1)[-1] in CULLING_BACKENDS and _max_entries(caches[alias]) < MIN_CACHE_ENTRIES
        ):
            # Django's database and file caches delete a third of their entries when MAX_ENTRIES
            # (default 300) is reached: a culled deny-list entry is a revoked token accepted again.
            messages.append(
                Error(
                    f"The cache {alias!r} ({backend.rsplit('.', 1)[-1]}) backs {use} but keeps at most "
                    f"{_max_entries(caches[alias])} entries: past that it deletes entries at random, so a "
                    "revoked token can be accepted again and a throttle forgets its counts.",
                    hint=f'Set "OPTIONS": {{"MAX_ENTRIES": 1_000_000}} (at least {MIN_CACHE_ENTRIES}) on it, '
                    "or use Redis.",
                    id="cells_oidc.E019",
                )
            )
    configured = getattr(settings, "CELLS_OIDC_THROTTLES", None)
    if configured is not None:
        bad = not isinstance(configured, dict)
        if not bad:
            for value in configured.values():
                try:
                    count, window = (int(part) for part in value)
                except (TypeError, ValueError):
                    bad = True
                    break
                if count < 1 or window < 1:
                    bad = True
        if bad:
            messages.append(
                Error(
                    f"CELLS_OIDC_THROTTLES must map rule names to (count, seconds), not {configured!r:.80}; "
                    "a malformed entry keeps its default.",
                    hint='For example {"login_account": (10, 900)}; docs/security.md lists the rules.',
                    id="cells_oidc.E014",
                )
            )
    if conf.app_settings.RESOURCE_CLIENT_CACHE_SECONDS > 0:
        alias = conf.app_settings.RESOURCE_REVOCATION_CACHE
        if not _keeps_copies(alias):
            messages.append(
                Warning(
                    "CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS has no effect: the processes keep copies "
                    "of the deny-list only with cells_oidc.caches.RedisCache on one server, or "
                    "cells_oidc.caches.DatabaseCache on a SQLite database file, as "
                    "CELLS_OIDC_RESOURCE_REVOCATION_CACHE; every request reads the cache.",
                    hint="Use one of those backends, or remove the setting.",
                    id="cells_oidc.W008",
                )
            )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if "cells_oidc.middleware.ProviderMiddleware" not in middleware:
        messages.append(
            Warning(
                "cells_oidc.middleware.ProviderMiddleware is not in MIDDLEWARE: sign-ins, the token "
                "endpoint, introspection and personal access tokens are not throttled, and a database "
                "outage is answered with an HTML 500.",
                hint="Add 'cells_oidc.middleware.ProviderMiddleware' first in MIDDLEWARE.",
                id="cells_oidc.W007",
            )
        )
    return messages


@register(Tags.security)
def check_pages(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The origins the pages' Content-Security-Policy loads static files from (docs/pages.md)."""
    from cells_oidc import conf
    from cells_oidc.internal.pages import static_origin

    value = getattr(settings, "CELLS_OIDC_CSP_STATIC_ORIGINS", None)
    if value is not None and not isinstance(value, (str, list, tuple)):
        bad = [repr(value)]
    else:
        bad = [repr(origin) for origin in conf.app_settings.CSP_STATIC_ORIGINS if not static_origin(origin)]
    if not bad:
        return []
    return [
        Error(
            f"CELLS_OIDC_CSP_STATIC_ORIGINS holds what is not an http(s) origin: {', '.join(bad)}; the "
            "pages' Content-Security-Policy leaves it out, so scripts and stylesheets from it are blocked.",
            hint="List origins only, scheme://host[:port] without path, e.g. 'https://cdn.example'. The "
            "origin of an absolute STATIC_URL is allowed without it.",
            id="cells_oidc.E016",
        )
    ]
