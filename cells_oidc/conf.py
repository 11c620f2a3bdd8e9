"""Settings of cells-oidc.

Every ``CELLS_OIDC_*`` setting is a typed property of :data:`app_settings`, read from
``django.conf.settings`` and remembered until Django's ``setting_changed`` (so ``override_settings``
and the pytest-django ``settings`` fixture just work).

django-oauth-toolkit (DOT) keeps its own settings in the ``OAUTH2_PROVIDER`` dict. Build it with
:func:`oauth2_provider_settings`, which fills in what cells-oidc needs and Cells' defaults::

    OAUTH2_PROVIDER = oauth2_provider_settings(signing_key_file="/etc/cells-oidc/signing-key.pem")

The key file is read when a key is first needed, not when settings load, so ``manage.py
cells_oidc_keygen`` can create it after the settings are written (a missing file is reported by the
system check ``cells_oidc.E005``). ``signing_key=PEM`` takes the PEM itself (from an environment
variable, say: ``signing_key=os.environ["CELLS_OIDC_SIGNING_KEY"]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.functional import LazyObject, Promise
from django.utils.translation import gettext_lazy as _

__all__ = [
    "ADMIN_SCOPE",
    "CELLS_LIFETIMES",
    "DEFAULT_SCOPES",
    "DURATION_SETTINGS",
    "AppSettings",
    "KeyFile",
    "app_settings",
    "oauth2_provider_settings",
    "seconds_setting",
]

#: Scopes Cells' clients ask for, plus the standard OpenID Connect ones. The keys are protocol
#: values; the descriptions are lazily translated (they are shown on the consent, device and
#: account pages in the user's language): call ``str()`` on one before serialising it.
DEFAULT_SCOPES: dict[str, str | Promise] = {
    "openid": _("Sign you in with your account"),
    "profile": _("Know your name and login"),
    "email": _("Know your email address"),
    "pydio": _("Use your Cells files and folders"),
    # OpenID Connect Core §11: offline_access asks for a refresh token; Cells spells it "offline".
    "offline": _("Stay signed in when you are away"),
    "offline_access": _("Stay signed in when you are away"),
    # Administrative: act on other users' tokens (see ADMIN_SCOPE). Only clients whose policy has
    # allow_admin_scope may ask for it; the API also needs the user's Django permission.
    "cells_oidc:admin": _("Manage other people's tokens with your administrator rights"),
}

#: The scope with which an administrator's access token may mint personal access tokens for other
#: users and revoke theirs (docs/api.md). Never granted to a client whose policy lacks
#: ``allow_admin_scope``; never carried by a personal access token.
ADMIN_SCOPE = "cells_oidc:admin"

#: Cells' lifetimes (seconds): access token 10 min, ID token 1 h, code 10 min, refresh 60 days.
CELLS_LIFETIMES: dict[str, int] = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 10 * 60,
    "ID_TOKEN_EXPIRE_SECONDS": 60 * 60,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 10 * 60,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 60 * 24 * 60 * 60,
}

VALIDATOR_CLASS = "cells_oidc.internal.validators.CellsOAuth2Validator"
ACCESS_TOKEN_GENERATOR = "cells_oidc.internal.issuance.generate_access_token"
REFRESH_TOKEN_GENERATOR = "cells_oidc.internal.issuance.generate_refresh_token"


class KeyFile(LazyObject):
    """The PEM text of a key file, read when it is first used rather than when settings load.

    It stands in for the PEM string in DOT's ``OIDC_RSA_PRIVATE_KEY`` (DOT and cells-oidc call
    ``str`` methods on it, ``bool()`` and ``hash()`` it): the file is read once, on first use, so
    the settings module imports before ``manage.py cells_oidc_keygen`` has written the file. A missing
    or unreadable file raises :class:`~django.core.exceptions.ImproperlyConfigured` at that first use
    (the system check ``cells_oidc.E005`` reports it before). Its ``repr`` never shows the key.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.__dict__["_path"] = Path(path)
        super().__init__()

    def _setup(self) -> None:
        path: Path = self.__dict__["_path"]
        try:
            self._wrapped = path.read_text(encoding="ascii")
        except OSError as exc:
            raise ImproperlyConfigured(
                f"The signing key file {str(path)!r} cannot be read ({exc.strerror or exc}); create it "
                f"with 'manage.py cells_oidc_keygen {path}'."
            ) from None

    def __repr__(self) -> str:
        return f"<KeyFile {str(self.__dict__['_path'])!r}>"

    # Copies and pickles keep the path, never the key.
    def __reduce__(self) -> Any:
        return (KeyFile, (self.__dict__["_path"],))

    def __copy__(self) -> KeyFile:
        return KeyFile(self.__dict__["_path"])

    def __deepcopy__(self, memo: dict[int, Any]) -> KeyFile:
        return KeyFile(self.__dict__["_path"])


def oauth2_provider_settings(
    *,
    signing_key: str | None = None,
    signing_key_file: str | os.PathLike[str] | None = None,
    inactive_keys: list[str] | tuple[str, ...] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """Return the ``OAUTH2_PROVIDER`` dict cells-oidc needs, with Cells' defaults.

    The RSA private key that signs ID and access tokens (RS256) is given either as its PEM text,
    ``signing_key`` (e.g. from an environment variable), or as the path of its PEM file,
    ``signing_key_file``, read on first use (:class:`KeyFile`; a settings module may name a file
    ``manage.py cells_oidc_keygen`` has yet to create). ``inactive_keys`` are older keys (PEM text
    or :class:`KeyFile`) still published in the JWKS so that tokens they signed keep verifying during
    a rotation. Any DOT setting may be overridden by keyword, e.g. ``ACCESS_TOKEN_EXPIRE_SECONDS=300``
    or ``SCOPES={**DEFAULT_SCOPES, "files:read": "..."}``.
    """
    if signing_key_file is not None and signing_key is None:
        key: str | KeyFile = KeyFile(signing_key_file)
    elif signing_key is not None and signing_key_file is None:
        key = signing_key
    else:
        raise TypeError("oauth2_provider_settings() takes one of signing_key= and signing_key_file=")
    config: dict[str, Any] = {
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": key,
        "OIDC_RSA_PRIVATE_KEYS_INACTIVE": list(inactive_keys),
        "OAUTH2_VALIDATOR_CLASS": VALIDATOR_CLASS,
        "ACCESS_TOKEN_GENERATOR": ACCESS_TOKEN_GENERATOR,
        "REFRESH_TOKEN_GENERATOR": REFRESH_TOKEN_GENERATOR,
        "SCOPES": dict(DEFAULT_SCOPES),
        "DEFAULT_SCOPES": ["openid"],
        **CELLS_LIFETIMES,
        # RFC 9700 §4.14.2: refresh tokens of public clients are sender-constrained or rotated;
        # a rotated-out token that is used again revokes its whole family.
        "ROTATE_REFRESH_TOKEN": True,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
        "PKCE_REQUIRED": True,
        "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
        "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
        # RFC 9700 gates of DOT: refuse the implicit and password grants and PKCE "plain".
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        # RFC 9700 §4: only SHA-256 checksums of access and refresh tokens are stored.
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        # RFC 9207: cells-oidc's authorization view adds the `iss` parameter to every
        # authorization response itself (errors included) with the configured issuer; DOT's
        # version would derive another issuer from the request, so it stays off (DOT's deploy
        # check oauth2_provider.W005 does not apply, see docs/checks.md).
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": False,
        "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
        "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
        # RFC 8628: the validator's validate_device_code sets the user and scopes of an approved
        # device code; DOT's default hook would look the code up unchecked (a 500 when unknown).
        "OAUTH_PRE_TOKEN_VALIDATION": [],
    }
    config.update(overrides)
    return config


#: Durations in seconds read by :func:`seconds_setting`: name -> (default, most, whole seconds only).
DURATION_SETTINGS: dict[str, tuple[int, int, bool]] = {
    "CELLS_OIDC_KEYS_DOCUMENT_SECONDS": (1, 60, False),
    "CELLS_OIDC_PROFILE_CACHE_SECONDS": (60, 3600, True),
}


def seconds_setting(name: str) -> float | None:
    """The duration setting ``name`` of :data:`DURATION_SETTINGS`, within 0 and its most, or
    ``None`` when it is not a number (a whole one where whole seconds are asked): the properties
    read ``None`` as 0, the exact behaviour, and system check ``cells_oidc.E017`` reports it."""
    default, most, whole = DURATION_SETTINGS[name]
    value = getattr(settings, name, default)
    kinds: Any = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
        return None
    return min(most, max(0, value))


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return [str(part) for part in value]


class AppSettings:
    """Typed, live view of the ``CELLS_OIDC_*`` settings.

    Each property is computed once and remembered until a setting changes (Django's
    ``setting_changed``, which ``override_settings`` and pytest-django's ``settings`` fixture send):
    reading a setting a site does not set costs Django two raised ``AttributeError``, and the bearer
    path reads a dozen per request (docs/performance.md). Lists and dicts are handed out as copies.
    """

    def __init__(self) -> None:
        self._memo: dict[str, Any] = {}

    def forget(self, **kwargs: Any) -> None:
        """Compute every property again at its next read (connected to ``setting_changed``)."""
        self._memo = {}

    @property
    def SITE_URLS(self) -> list[str]:
        """``CELLS_OIDC_SITE_URL``: the public URL(s) of the site, first one primary.

        A string (several may be separated by spaces or commas) or a list. The issuer, every
        endpoint URL in discovery and the ``serverName`` placeholder of registered redirect
        URIs are built from these, never from the request's ``Host`` header (RFC 9207 §2.4,
        OpenID Connect Discovery §4.3: the issuer is a fixed, configured value).
        """
        return [url.rstrip("/") for url in _as_list(getattr(settings, "CELLS_OIDC_SITE_URL", None))]

    @property
    def SITE_URL(self) -> str:
        """The primary public site URL (the first of :attr:`SITE_URLS`), without trailing slash."""
        urls = self.SITE_URLS
        return urls[0] if urls else ""

    @property
    def ACCESS_TOKEN_AUDIENCE(self) -> list[str]:
        """``CELLS_OIDC_ACCESS_TOKEN_AUDIENCE``: the ``aud`` of JWT access tokens (RFC 9068 §2.2).

        Defaults to the primary site URL, the resource server the Cells clients talk to.
        """
        configured = _as_list(getattr(settings, "CELLS_OIDC_ACCESS_TOKEN_AUDIENCE", None))
        return configured or ([self.SITE_URL] if self.SITE_URL else [])

    @property
    def ADAPTER(self) -> str:
        """``CELLS_OIDC_ADAPTER``: dotted path of the adapter class (see :mod:`cells_oidc.adapter`)."""
        return getattr(settings, "CELLS_OIDC_ADAPTER", "cells_oidc.adapter.DefaultAdapter")

    @property
    def LOGIN_URL(self) -> str | None:
        """``CELLS_OIDC_LOGIN_URL``: the login page; default the app's own ``cells_oidc:login``."""
        return getattr(settings, "CELLS_OIDC_LOGIN_URL", None)

    @property
    def SITE_NAME(self) -> str:
        """``CELLS_OIDC_SITE_NAME``: the name shown on the pages (default ``"Cells"``)."""
        return getattr(settings, "CELLS_OIDC_SITE_NAME", "Cells")

    @property
    def CORS_MAX_AGE(self) -> int:
        """``CELLS_OIDC_CORS_MAX_AGE``: how long a browser may cache a CORS preflight (seconds)."""
        return int(getattr(settings, "CELLS_OIDC_CORS_MAX_AGE", 600))

    # ---- resource servers (APIs accepting bearer tokens; see docs/resource-server.md) ----------
    @property
    def RESOURCE_ISSUER(self) -> str | None:
        """``CELLS_OIDC_RESOURCE_ISSUER``: the issuer of a provider in *another* site (remote mode).

        Unset (the default), bearer tokens are verified against the provider of this site (its
        keys, its issuer). Set, e.g. ``"https://sso.example.com/oidc/"``, the keys come from that
        issuer's discovery document and JWKS over HTTP (OpenID Connect Discovery §4; the
        ``issuer`` it publishes must be identical to this value, §4.3).
        """
        value = getattr(settings, "CELLS_OIDC_RESOURCE_ISSUER", None)
        return str(value) if value else None

    @property
    def RESOURCE_AUDIENCE(self) -> list[str]:
        """``CELLS_OIDC_RESOURCE_AUDIENCE``: the ``aud`` values this API answers to.

        RFC 9068 §4: "The resource server MUST validate that the aud claim contains a resource
        indicator value corresponding to an identifier the resource server expects for itself."
        A token is accepted when its ``aud`` contains one of these values, compared exactly. A
        client that named other resources (RFC 8707 §2, ``resource=https://files.example/api``)
        got a token whose ``aud`` is those resources only, so this API refuses it.

        A string (several separated by spaces or commas) or a list. Default:
        :attr:`ACCESS_TOKEN_AUDIENCE`, the ``aud`` of tokens requested without a resource (the
        primary site URL). A remote API (``CELLS_OIDC_RESOURCE_ISSUER``) sets it to its own URL,
        the resource indicator its clients request tokens for. A value of another type is
        refused by the system check ``cells_oidc.E012`` and expects nothing (every token is
        refused).
        """
        value = getattr(settings, "CELLS_OIDC_RESOURCE_AUDIENCE", None)
        if value is None or value == "" or value == [] or value == ():
            return self.ACCESS_TOKEN_AUDIENCE
        if not isinstance(value, (str, list, tuple)) or not all(isinstance(part, str) for part in value):
            return []  # malformed: fail closed (cells_oidc.E012)
        return _as_list(value)

    @property
    def RESOURCE_LEEWAY(self) -> int:
        """``CELLS_OIDC_RESOURCE_LEEWAY``: clock skew tolerated on ``exp``/``nbf``/``iat`` (seconds,
        default 30; RFC 7519 §4.1.4 "a small leeway")."""
        return max(0, int(getattr(settings, "CELLS_OIDC_RESOURCE_LEEWAY", 30)))

    @property
    def RESOURCE_ALLOW_QUERY_TOKEN(self) -> bool:
        """``CELLS_OIDC_RESOURCE_ALLOW_QUERY_TOKEN``: accept ``?access_token=`` (default ``False``).

        RFC 6750 §2.3 and §5.3: tokens in URLs end up in logs and ``Referer`` headers; RFC 9700
        §4.3.2 forbids them for new deployments. Only the ``Authorization`` header is accepted
        unless this is on.
        """
        return bool(getattr(settings, "CELLS_OIDC_RESOURCE_ALLOW_QUERY_TOKEN", False))

    @property
    def RESOURCE_REALM(self) -> str:
        """``CELLS_OIDC_RESOURCE_REALM``: the ``realm`` of ``WWW-Authenticate`` (RFC 6750 §3;
        default :attr:`SITE_NAME`)."""
        return str(getattr(settings, "CELLS_OIDC_RESOURCE_REALM", None) or self.SITE_NAME)

    @property
    def RESOURCE_LOAD_USER(self) -> bool:
        """``CELLS_OIDC_RESOURCE_LOAD_USER``: load the Django user named by ``sub`` (one query).

        Default: on in the provider's own site, off in remote mode, where ``request.user`` is a
        :class:`cells_oidc.internal.resource.TokenUser` built from the token (no database at all).
        """
        value = getattr(settings, "CELLS_OIDC_RESOURCE_LOAD_USER", None)
        return self.RESOURCE_ISSUER is None if value is None else bool(value)

    @property
    def RESOURCE_REVOCATION_CACHE(self) -> str:
        """``CELLS_OIDC_RESOURCE_REVOCATION_CACHE``: alias of the Django cache holding revoked tokens.

        RFC 7009 §2: a revoked token must stop working. Use a cache shared by every process of
        the site (Redis, Memcached, database): with a per-process cache (``LocMemCache``) a
        revocation only reaches the process that performed it. Default ``"default"``.
        """
        return str(getattr(settings, "CELLS_OIDC_RESOURCE_REVOCATION_CACHE", "default"))

    @property
    def RESOURCE_CLIENT_CACHE_SECONDS(self) -> float:
        """``CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS``: how long a process may answer the bearer
        path's cache reads (deny-list, key-set version, cached profile) from its own copy, which
        Redis keeps exact with invalidation messages (``CLIENT TRACKING``, RESP3), or on SQLite a
        copy per connection that SQLite's own write counters keep exact. Only with
        ``cells_oidc.caches.RedisCache`` on one server, or ``cells_oidc.caches.DatabaseCache`` on a
        SQLite database file, as the revocation cache. Default ``0``: read the cache on every
        request. docs/resource-server.md ("Revocation") and docs/performance.md.
        """
        return max(0.0, float(getattr(settings, "CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS", 0) or 0))

    @property
    def RESOURCE_HTTP_TIMEOUT(self) -> float:
        """``CELLS_OIDC_RESOURCE_HTTP_TIMEOUT``: the deadline of one HTTP call to a remote provider
        (discovery, JWKS, introspection), in seconds (default 5)."""
        return max(0.1, float(getattr(settings, "CELLS_OIDC_RESOURCE_HTTP_TIMEOUT", 5)))

    @property
    def RESOURCE_HTTP_MAX_BYTES(self) -> int:
        """``CELLS_OIDC_RESOURCE_HTTP_MAX_BYTES``: the largest response read from a remote provider
        (default 256 KiB)."""
        return max(1024, int(getattr(settings, "CELLS_OIDC_RESOURCE_HTTP_MAX_BYTES", 256 * 1024)))

    @property
    def RESOURCE_JWKS_CACHE_SECONDS(self) -> int:
        """``CELLS_OIDC_RESOURCE_JWKS_CACHE_SECONDS``: how long remote keys are used before they are
        fetched again (default 600; RFC 7517 §5 key sets change on rotation)."""
        return max(0, int(getattr(settings, "CELLS_OIDC_RESOURCE_JWKS_CACHE_SECONDS", 600)))

    @property
    def RESOURCE_JWKS_MIN_REFRESH_SECONDS(self) -> int:
        """``CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS``: the shortest interval between two
        fetches of the remote keys (default 60): a token with an unknown ``kid`` triggers at most
        one fetch per interval and process (RFC 7515 §4.1.4)."""
        return max(0, int(getattr(settings, "CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS", 60)))

    @property
    def RESOURCE_INTROSPECTION_CLIENT_ID(self) -> str | None:
        """``CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_ID``: a confidential client of the remote
        provider; when set (with the secret), remote mode asks the provider's introspection
        endpoint (RFC 7662 §2) whether a token is still active, and accepts personal access
        tokens."""
        return getattr(settings, "CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_ID", None) or None

    @property
    def RESOURCE_INTROSPECTION_CLIENT_SECRET(self) -> str | None:
        """``CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_SECRET``: that client's secret."""
        return getattr(settings, "CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_SECRET", None) or None

    @property
    def RESOURCE_INTROSPECTION_CACHE_SECONDS(self) -> int:
        """``CELLS_OIDC_RESOURCE_INTROSPECTION_CACHE_SECONDS``: how long an "active" answer of the
        introspection endpoint is reused (default 30; RFC 7662 §4 allows a short cache, and this
        bounds how late a revocation is noticed)."""
        return max(0, int(getattr(settings, "CELLS_OIDC_RESOURCE_INTROSPECTION_CACHE_SECONDS", 30)))

    # ---- personal access tokens (see docs/personal-access-tokens.md) -------------------------
    @property
    def PAT_SELF_SERVICE(self) -> bool:
        """``CELLS_OIDC_PAT_SELF_SERVICE``: users may mint their own personal access tokens on the
        account page and through the API (default ``False``). Listing and revoking their own tokens
        is always possible.

        Off by default, as in Cells (where only ``cells admin user token`` mints them): a personal
        token is a long-lived bearer credential that outlives the sign-in, the browser session and
        any second factor, so a site opts in deliberately. Admins holding the
        ``cells_oidc.add_personalaccesstoken`` permission may always mint them.
        """
        return bool(getattr(settings, "CELLS_OIDC_PAT_SELF_SERVICE", False))

    @property
    def PAT_MAX_LIFETIME(self) -> int:
        """``CELLS_OIDC_PAT_MAX_LIFETIME``: the longest a personal access token may stay valid after
        it is minted, in seconds (default one year). A fixed expiry may not be later; an
        auto-refreshing token is never pushed beyond it (its default absolute maximum)."""
        return max(60, int(getattr(settings, "CELLS_OIDC_PAT_MAX_LIFETIME", 365 * 24 * 60 * 60)))

    @property
    def PAT_DEFAULT_SCOPE(self) -> str:
        """``CELLS_OIDC_PAT_DEFAULT_SCOPE``: the scopes of a personal access token minted without
        ``--scope`` (default ``"profile email pydio"``: what Cells' own clients use the API with)."""
        return " ".join(_as_list(getattr(settings, "CELLS_OIDC_PAT_DEFAULT_SCOPE", "profile email pydio")))

    # ---- the audit trail (see docs/audit.md) ------------------------------------------------------
    @property
    def AUDIT_ENABLED(self) -> bool:
        """``CELLS_OIDC_AUDIT_ENABLED``: whether the events of :mod:`cells_oidc.signals` are stored
        as ``AuditEvent`` rows (default ``True``). Off, the structured log records of the logger
        ``cells_oidc.audit`` are still written: ship those instead."""
        return bool(getattr(settings, "CELLS_OIDC_AUDIT_ENABLED", True))

    @property
    def AUDIT_RETENTION_DAYS(self) -> int:
        """``CELLS_OIDC_AUDIT_RETENTION_DAYS``: how many days an audit event is kept (default 90);
        ``manage.py cells_oidc_cleanup`` deletes older ones (``AuditEvent.objects.expired()``).
        0 keeps them for ever."""
        return max(0, int(getattr(settings, "CELLS_OIDC_AUDIT_RETENTION_DAYS", 90)))

    # ---- the pages people see (see docs/pages.md) ------------------------------------------------
    @property
    def CONSENT_LIFETIME(self) -> int:
        """``CELLS_OIDC_CONSENT_LIFETIME``: how long a consent given to a third-party client is
        remembered, in seconds (default 90 days). Until then the same user is not asked again for
        the same client and scopes; users withdraw it on their account page."""
        return max(0, int(getattr(settings, "CELLS_OIDC_CONSENT_LIFETIME", 90 * 24 * 60 * 60)))

    @property
    def DEVICE_CODE_LIFETIME(self) -> int:
        """``CELLS_OIDC_DEVICE_CODE_LIFETIME``: the ``expires_in`` of a device authorization
        (RFC 8628 §3.2), in seconds (default 900): the time the user has to enter the code."""
        return max(60, int(getattr(settings, "CELLS_OIDC_DEVICE_CODE_LIFETIME", 15 * 60)))

    @property
    def DEVICE_MAX_FAILURES(self) -> int:
        """``CELLS_OIDC_DEVICE_MAX_FAILURES``: wrong user codes allowed per browser session and per
        user within :attr:`DEVICE_FAILURE_WINDOW` (default 5; RFC 8628 §5.1 brute forcing)."""
        return max(1, int(getattr(settings, "CELLS_OIDC_DEVICE_MAX_FAILURES", 5)))

    @property
    def DEVICE_FAILURE_WINDOW(self) -> int:
        """``CELLS_OIDC_DEVICE_FAILURE_WINDOW``: the window of :attr:`DEVICE_MAX_FAILURES`, in
        seconds (default 600)."""
        return max(1, int(getattr(settings, "CELLS_OIDC_DEVICE_FAILURE_WINDOW", 10 * 60)))

    # ---- throttles and faults (see docs/security.md "Throttling" and docs/deploy.md) ------------
    @property
    def THROTTLES(self) -> dict[str, tuple[int, int]]:
        """``CELLS_OIDC_THROTTLES``: the limits of :mod:`cells_oidc.internal.throttle`, as
        ``{rule: (count, window_seconds)}``; a site sets only the rules it changes.

        - ``login_account`` (10, 900): failed sign-ins per typed login (username or email, known
          or not: the same answer for an unknown account, so the throttle tells nothing about
          which accounts exist), on the provider's login page and the Django admin's. Past it the
          login is locked until the window ends (429), even with the right password.
        - ``login_ip`` (50, 900): failed sign-ins per client IP (IPv6: per /64), any login.
        - ``token_client_ip`` (120, 60): token requests per client id and client IP (RFC 6749
          §3.2; a device polling every 5 s makes 12 a minute).
        - ``token_ip`` (600, 60): token requests per client IP, whatever the client id.
        - ``introspect_client_ip`` (600, 60): introspection requests per client and IP (RFC 7662
          §4: bound token scanning).
        - ``pat_failure_ip`` (20, 600): refused personal access tokens (``cpat_…`` bearer tokens
          answered 401) per client IP; past it every ``cpat_`` token from that IP gets 429.
        - ``register_ip`` (20, 3600): requests to the client registration endpoint (RFC 7591 §3)
          per client IP, registrations and refusals alike.
        - ``device_code``: wrong user codes per signed-in user and per browser session; its limit
          and window are :attr:`DEVICE_MAX_FAILURES` and :attr:`DEVICE_FAILURE_WINDOW` (RFC 8628
          §5.1).
        """
        limits = {
            "login_account": (10, 15 * 60),
            "login_ip": (50, 15 * 60),
            "token_client_ip": (120, 60),
            "token_ip": (600, 60),
            "register_ip": (20, 60 * 60),
            "introspect_client_ip": (600, 60),
            "pat_failure_ip": (20, 10 * 60),
            "device_code": (self.DEVICE_MAX_FAILURES, self.DEVICE_FAILURE_WINDOW),
        }
        configured = getattr(settings, "CELLS_OIDC_THROTTLES", None)
        if isinstance(configured, dict):
            for name, value in configured.items():
                try:
                    count, window = (int(part) for part in value)
                except (TypeError, ValueError):
                    continue  # malformed: the default stays (check cells_oidc.E014)
                limits[str(name)] = (max(1, count), max(1, window))
        return limits

    @property
    def THROTTLE_CACHE(self) -> str:
        """``CELLS_OIDC_THROTTLE_CACHE``: alias of the Django cache holding the throttle counters
        (default ``"default"``). It must be shared by every process of the site (Redis, the
        database or a file cache on one machine): a per-process cache multiplies every limit by
        the number of processes (check ``cells_oidc.E013``)."""
        return str(getattr(settings, "CELLS_OIDC_THROTTLE_CACHE", "default"))

    @property
    def THROTTLE_FAIL_OPEN(self) -> bool:
        """``CELLS_OIDC_THROTTLE_FAIL_OPEN``: when the throttle cache cannot be reached, let requests
        through unthrottled (``True``) instead of answering 503 ``temporarily_unavailable``
        (``False``, the default: fail closed, so that an attacker who can take Redis down does not
        also lift the password throttle). The revocation deny-list always fails closed."""
        return bool(getattr(settings, "CELLS_OIDC_THROTTLE_FAIL_OPEN", False))

    @property
    def CLIENT_IP_HEADER(self) -> str | None:
        """``CELLS_OIDC_CLIENT_IP_HEADER``: the header a trusted reverse proxy puts the client's
        address in, e.g. ``"X-Forwarded-For"`` (default: none, ``REMOTE_ADDR`` is the client).
        Behind a proxy, without it every client shares the proxy's address and one attacker
        exhausts the per-IP limits of everyone. Set it only behind a proxy that overwrites the
        header: a client could otherwise pick its own address."""
        value = getattr(settings, "CELLS_OIDC_CLIENT_IP_HEADER", None)
        return str(value) if value else None

    @property
    def TRUSTED_PROXY_COUNT(self) -> int:
        """``CELLS_OIDC_TRUSTED_PROXY_COUNT``: how many proxies append to
        :attr:`CLIENT_IP_HEADER` (default 1): the client is that many entries from the right of a
        comma-separated ``X-Forwarded-For``; entries further left are the client's to invent."""
        return max(1, int(getattr(settings, "CELLS_OIDC_TRUSTED_PROXY_COUNT", 1)))

    @property
    def ALLOW_PROCESS_LOCAL_CACHE(self) -> bool:
        """``CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE``: silence the check ``cells_oidc.E013`` about a
        per-process cache (``LocMemCache``, ``DummyCache``) behind the deny-list or a throttle.
        For test suites only, which run in one process; never in a deployment."""
        return bool(getattr(settings, "CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE", False))

    # ---- service accounts and dynamic registration (docs/service-accounts.md, registration.md) --
    @property
    def SERVICE_ACCOUNTS(self) -> bool:
        """``CELLS_OIDC_SERVICE_ACCOUNTS``: service accounts (docs/service-accounts.md), off by default.

        On: clients whose policy says ``private_key_jwt`` authenticate with a JWT signed by their
        key (RFC 7523 §2.2, OpenID Connect Core §9), and discovery advertises ``client_credentials``
        (RFC 6749 §4.4) and ``private_key_jwt``. Off: client assertions are refused. The client
        credentials grant itself is a client's registration (its grant type) either way.
        """
        return bool(getattr(settings, "CELLS_OIDC_SERVICE_ACCOUNTS", False))

    @property
    def CLIENT_ASSERTION_MAX_AGE(self) -> int:
        """``CELLS_OIDC_CLIENT_ASSERTION_MAX_AGE``: how far ahead of now the ``exp`` of a client
        assertion (``private_key_jwt``, RFC 7523 §3) may lie, in seconds (default 300). Its
        ``jti`` is remembered until then, so a captured assertion cannot be used again."""
        return max(10, int(getattr(settings, "CELLS_OIDC_CLIENT_ASSERTION_MAX_AGE", 300)))

    @property
    def CLIENT_JWKS_CACHE_SECONDS(self) -> int:
        """``CELLS_OIDC_CLIENT_JWKS_CACHE_SECONDS``: how long the keys fetched from a client's
        ``jwks_uri`` are used before they are fetched again (default 300)."""
        return max(0, int(getattr(settings, "CELLS_OIDC_CLIENT_JWKS_CACHE_SECONDS", 300)))

    @property
    def CLIENT_JWKS_MIN_REFRESH_SECONDS(self) -> int:
        """``CELLS_OIDC_CLIENT_JWKS_MIN_REFRESH_SECONDS``: the shortest interval between two fetches
        of one client's ``jwks_uri`` caused by an assertion with an unknown ``kid`` (default 60), so
        that made-up key ids cannot make the provider hammer the client's server."""
        return max(0, int(getattr(settings, "CELLS_OIDC_CLIENT_JWKS_MIN_REFRESH_SECONDS", 60)))

    @property
    def REGISTRATION(self) -> str:
        """``CELLS_OIDC_REGISTRATION``: dynamic client registration (RFC 7591, RFC 7592).

        - ``"off"`` (default): no registration endpoint (404), none advertised in discovery;
        - ``"initial_access_token"``: registration needs an initial access token (RFC 7591 §3),
          issued by ``manage.py cells_oidc_client initial-token``;
        - ``"open"``: anyone may register a client (rate-limited per IP).

        A registered client is always a third-party client: consent required, PKCE required, no
        administrative scope, no resource indicators. Anything else reads as ``"off"``.
        """
        value = str(getattr(settings, "CELLS_OIDC_REGISTRATION", "off") or "off").strip().lower()
        return value if value in ("off", "open", "initial_access_token") else "off"

    @property
    def RETRY_AFTER(self) -> int:
        """``CELLS_OIDC_RETRY_AFTER``: the ``Retry-After`` (seconds) of a 503 answered while the
        database or the throttle cache is unreachable (default 5; RFC 9110 §10.2.3)."""
        return max(1, int(getattr(settings, "CELLS_OIDC_RETRY_AFTER", 5)))

    @property
    def LOGO_URL(self) -> str:
        """``CELLS_OIDC_LOGO_URL``: the logo shown at the top of every page (default: none, the
        site name only). A path on this site (e.g. a static file) or an ``https`` URL, which the
        pages' Content-Security-Policy then allows as an image source."""
        return str(getattr(settings, "CELLS_OIDC_LOGO_URL", "") or "")

    @property
    def CSP_STATIC_ORIGINS(self) -> list[str]:
        """``CELLS_OIDC_CSP_STATIC_ORIGINS``: origins (``https://cdn.example``) from which the pages'
        Content-Security-Policy loads scripts, stylesheets and images, besides the site itself.

        Default: none besides the origin of ``STATIC_URL`` when that is an absolute URL (a CDN,
        ``https://cdn.example/static/``), which is always allowed. A string (several separated by
        spaces or commas) or a list; each an ``http(s)`` origin without path, query or fragment
        (anything else is ignored and reported by the system check ``cells_oidc.E016``).
        """
        value = getattr(settings, "CELLS_OIDC_CSP_STATIC_ORIGINS", None)
        return _as_list(value) if isinstance(value, (str, list, tuple)) else []

    @property
    def BRAND_COLORS(self) -> dict[str, str]:
        """``CELLS_OIDC_BRAND_COLORS``: colours of the pages, e.g. ``{"accent": "#0b6e4f"}``.

        Keys: ``accent`` (buttons, links), ``accent_text`` (text on the accent), ``background``,
        ``card``, ``text``, ``muted``, ``error``. Values are CSS hex colours (``#rgb`` or
        ``#rrggbb``); anything else is ignored. Keep a contrast ratio of at least 4.5:1 (WCAG 2.2
        §1.4.3) between text and its background.
        """
        value = getattr(settings, "CELLS_OIDC_BRAND_COLORS", None)
        return dict(value) if isinstance(value, dict) else {}

    # ---- signing keys (docs/keys.md) -------------------------------------------------------------
    @property
    def KEY_ENCRYPTION_KEYS(self) -> list[str]:
        """``CELLS_OIDC_KEY_ENCRYPTION_KEY``: the key-encryption key(s) of the signing keys stored in
        the database (Fernet keys: 32 url-safe base64-encoded bytes).

        A string or a list: the first encrypts, every one decrypts, so a key-encryption key is
        rotated by putting the new one first and running ``manage.py cells_oidc_keys reencrypt``.
        Keep it out of the database (an environment variable, a secrets file): a database dump alone
        must not yield a signing key. Never derived from ``SECRET_KEY`` unless
        :attr:`KEY_ENCRYPTION_FROM_SECRET_KEY` says so.
        """
        value = getattr(settings, "CELLS_OIDC_KEY_ENCRYPTION_KEY", None)
        if not value:
            return []
        if isinstance(value, (str, bytes)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return []
        return [part.decode("ascii") if isinstance(part, bytes) else str(part) for part in value if part]

    @property
    def KEY_ENCRYPTION_FROM_SECRET_KEY(self) -> bool:
        """``CELLS_OIDC_KEY_ENCRYPTION_FROM_SECRET_KEY``: also derive a key-encryption key from
        ``SECRET_KEY`` (HKDF-SHA256; default ``False``). A convenience for small sites whose
        ``SECRET_KEY`` is kept out of the database; a leak of ``SECRET_KEY`` and a dump then yield the
        signing keys."""
        return bool(getattr(settings, "CELLS_OIDC_KEY_ENCRYPTION_FROM_SECRET_KEY", False))

    @property
    def ACCESS_TOKEN_ALGORITHM(self) -> str:
        """``CELLS_OIDC_ACCESS_TOKEN_ALGORITHM``: the JWS algorithm of JWT access tokens (RFC 9068
        §2.1, RFC 7518 §3.1): ``"RS256"`` (default), ``"ES256"`` or ``"EdDSA"`` (RFC 8037). A current
        signing key of that algorithm must exist (``manage.py cells_oidc_keys create``)."""
        return str(getattr(settings, "CELLS_OIDC_ACCESS_TOKEN_ALGORITHM", None) or "RS256")

    @property
    def KEY_PUBLISH_SECONDS(self) -> int:
        """``CELLS_OIDC_KEY_PUBLISH_SECONDS``: how long a ``next`` key is published in the JWKS before
        ``rotate`` lets it sign (default 900). The JWKS ``Cache-Control: max-age`` is at most half of
        it, so every client that caches the JWKS has seen a key before its first token."""
        return max(0, int(getattr(settings, "CELLS_OIDC_KEY_PUBLISH_SECONDS", 900)))

    @property
    def KEY_RETENTION_SECONDS(self) -> int | None:
        """``CELLS_OIDC_KEY_RETENTION_SECONDS``: how long a retired key stays in the JWKS. Default
        (``None``): the longest lifetime of the tokens it signed (access and ID tokens) plus
        ``CELLS_OIDC_RESOURCE_LEEWAY``."""
        value = getattr(settings, "CELLS_OIDC_KEY_RETENTION_SECONDS", None)
        return None if value is None else max(0, int(value))

    @property
    def KEYS_REFRESH_SECONDS(self) -> int:
        """``CELLS_OIDC_KEYS_REFRESH_SECONDS``: the longest a process uses its copy of the key set
        without reading the database again (default 30). A change made by ``cells_oidc_keys`` reaches
        every process at its next token through the key-set version in the shared cache; this bound
        applies when that cache is unreachable or lost the version."""
        return max(1, int(getattr(settings, "CELLS_OIDC_KEYS_REFRESH_SECONDS", 30)))

    @property
    def KEYS_DOCUMENT_SECONDS(self) -> float:
        """``CELLS_OIDC_KEYS_DOCUMENT_SECONDS``: how long discovery and the JWKS may serve a
        process's key set after a read of the shared key-set version confirmed it (default 1; at
        most 60; 0: read it on every request). Signing and verification never wait on it: they read
        the version once per request. ``cells_oidc_keys`` waits this long after a change, so when it
        returns every process publishes the change (docs/keys.md). A value that is not a number
        counts as 0, the exact behaviour (system check ``cells_oidc.E017`` reports it)."""
        return float(seconds_setting("CELLS_OIDC_KEYS_DOCUMENT_SECONDS") or 0)

    @property
    def PROFILE_CACHE_SECONDS(self) -> int:
        """``CELLS_OIDC_PROFILE_CACHE_SECONDS``: how long ``GET /a/user/me`` may answer from a user's
        cached profile (default 60; at most 3600; 0: read the database on every request). Every
        change Django sees (a user saved or deleted, group membership, a group renamed or deleted)
        shows at the next request of every process; only a change made behind Django's back
        (``QuerySet.update()``, raw SQL) waits for this bound (docs/performance.md). A value that
        is not a whole number counts as 0 (system check ``cells_oidc.E017`` reports it)."""
        return int(seconds_setting("CELLS_OIDC_PROFILE_CACHE_SECONDS") or 0)

    # ---- pushed authorization requests (RFC 9126, docs/par.md) -----------------------------
    @property
    def PAR_ENABLED(self) -> bool:
        """``CELLS_OIDC_PAR_ENABLED``: serve the pushed authorization request endpoint
        ``{mount}oauth2/par`` and accept its ``request_uri`` at the authorization endpoint
        (RFC 9126 §2, §4; default ``True``: it only adds a way to send the same, equally
        validated request). Discovery names the endpoint only when on."""
        return bool(getattr(settings, "CELLS_OIDC_PAR_ENABLED", True))

    @property
    def REQUIRE_PAR(self) -> bool:
        """``CELLS_OIDC_REQUIRE_PAR``: every client must push its authorization requests (RFC 9126
        §5, discovery's ``require_pushed_authorization_requests``; default ``False``: Cells' own
        clients do not). Per client: the policy's ``require_pushed_authorization_requests``."""
        return self.PAR_ENABLED and bool(getattr(settings, "CELLS_OIDC_REQUIRE_PAR", False))

    @property
    def PAR_LIFETIME(self) -> int:
        """``CELLS_OIDC_PAR_LIFETIME``: seconds a ``request_uri`` may be used (the ``expires_in`` of
        the PAR response, default 60; RFC 9126 §2.2 suggests a short lifetime, 5 to 600 s)."""
        return min(600, max(5, int(getattr(settings, "CELLS_OIDC_PAR_LIFETIME", 60))))

    # ---- DPoP (RFC 9449, docs/dpop.md) ------------------------------------------------------
    @property
    def DPOP_ENABLED(self) -> bool:
        """``CELLS_OIDC_DPOP_ENABLED``: accept DPoP proofs at the token endpoint and the ``DPoP``
        scheme at resource servers (RFC 9449; default ``True``: a client that sends no proof gets
        bearer tokens as before). Discovery's ``dpop_signing_alg_values_supported`` only when on.
        When off, a ``DPoP`` header is ignored by the token endpoint; tokens bound earlier stay
        bound (a resource server still refuses them as plain bearer tokens)."""
        return bool(getattr(settings, "CELLS_OIDC_DPOP_ENABLED", True))

    @property
    def DPOP_IAT_WINDOW(self) -> int:
        """``CELLS_OIDC_DPOP_IAT_WINDOW``: how far (seconds) a proof's ``iat`` may be from the
        server's clock, either way (RFC 9449 §11.1; default 60). The ``jti`` of a proof is
        remembered that long, twice over, in the shared cache to refuse a replay."""
        return min(600, max(5, int(getattr(settings, "CELLS_OIDC_DPOP_IAT_WINDOW", 60))))

    @property
    def DPOP_NONCE(self) -> bool:
        """``CELLS_OIDC_DPOP_NONCE``: require a server-provided nonce in DPoP proofs at the token
        endpoint (RFC 9449 §8: ``use_dpop_nonce`` and a ``DPoP-Nonce`` header; default ``False``).
        Nonces are derived from ``SECRET_KEY`` and the time, so every process accepts them."""
        return bool(getattr(settings, "CELLS_OIDC_DPOP_NONCE", False))

    @property
    def DPOP_CACHE(self) -> str:
        """``CELLS_OIDC_DPOP_CACHE``: alias of the Django cache holding the ``jti`` of used DPoP
        proofs and the pushed authorization requests (default ``"default"``). It must be shared by
        every process of the site, or a proof replayed on another process is not noticed."""
        return str(getattr(settings, "CELLS_OIDC_DPOP_CACHE", "default"))

    @property
    def SERVICE_DOCUMENTATION(self) -> str:
        """``CELLS_OIDC_SERVICE_DOCUMENTATION``: a URL of human-readable documentation for client
        developers, published as discovery's ``service_documentation`` (OpenID Connect Discovery
        §3, RFC 8414 §2); default empty: not published."""
        return str(getattr(settings, "CELLS_OIDC_SERVICE_DOCUMENTATION", "") or "")

    # ---- OpenID Connect Back-Channel Logout 1.0 (docs/backchannel-logout.md) ---------------
    @property
    def BACKCHANNEL_LOGOUT(self) -> bool:
        """``CELLS_OIDC_BACKCHANNEL_LOGOUT``: queue a logout token (Back-Channel Logout §2.4) for
        every client with a ``backchannel_logout_uri`` when a user's session or sign-in with it
        ends, and advertise ``backchannel_logout_supported`` and
        ``backchannel_logout_session_supported`` in discovery (§2.1). Default ``True``: it acts
        only for the clients that register a URL. The tokens are sent by ``manage.py
        cells_oidc_deliver_logouts`` (run it from cron or a loop)."""
        return bool(getattr(settings, "CELLS_OIDC_BACKCHANNEL_LOGOUT", True))

    @property
    def BACKCHANNEL_SEND_INLINE(self) -> bool:
        """``CELLS_OIDC_BACKCHANNEL_SEND_INLINE``: also try each delivery once right after the
        logout commits, in a background thread of the web process (default ``False``: the command
        sends them; a failed inline attempt is left to the command's retries)."""
        return bool(getattr(settings, "CELLS_OIDC_BACKCHANNEL_SEND_INLINE", False))

    @property
    def BACKCHANNEL_TIMEOUT(self) -> float:
        """``CELLS_OIDC_BACKCHANNEL_TIMEOUT``: seconds one POST to a client may take, connecting
        and answering (default 5, at most 30)."""
        return min(30.0, max(0.5, float(getattr(settings, "CELLS_OIDC_BACKCHANNEL_TIMEOUT", 5))))

    @property
    def BACKCHANNEL_MAX_ATTEMPTS(self) -> int:
        """``CELLS_OIDC_BACKCHANNEL_MAX_ATTEMPTS``: attempts of one delivery before it is given up
        (default 8: with the default delay, the last is about two hours after the logout)."""
        return max(1, int(getattr(settings, "CELLS_OIDC_BACKCHANNEL_MAX_ATTEMPTS", 8)))

    @property
    def BACKCHANNEL_RETRY_DELAY(self) -> int:
        """``CELLS_OIDC_BACKCHANNEL_RETRY_DELAY``: seconds before the second attempt; each further
        one waits twice as long as the one before, at most a day (default 30)."""
        return max(1, int(getattr(settings, "CELLS_OIDC_BACKCHANNEL_RETRY_DELAY", 30)))

    @property
    def BACKCHANNEL_TOKEN_LIFETIME(self) -> int:
        """``CELLS_OIDC_BACKCHANNEL_TOKEN_LIFETIME``: seconds from a logout token's ``iat`` to its
        ``exp`` (Back-Channel Logout §2.4 recommends at most two minutes; default 120, 10 to 600).
        Each attempt signs a new token."""
        return min(600, max(10, int(getattr(settings, "CELLS_OIDC_BACKCHANNEL_TOKEN_LIFETIME", 120))))


class _Remembered:
    """A property of :class:`AppSettings`, remembered in its ``_memo`` (see the class)."""

    def __init__(self, name: str, prop: property) -> None:
        self.name = name
        self.fget = prop.fget
        self.__doc__ = prop.__doc__

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        memo = obj._memo  # a change replaces the dict: a value computed meanwhile lands in the old one
        try:
            value = memo[self.name]
        except KeyError:
            value = memo[self.name] = self.fget(obj)  # type: ignore[misc]
        kind = type(value)
        return list(value) if kind is list else dict(value) if kind is dict else value


for _name, _value in list(vars(AppSettings).items()):
    if isinstance(_value, property):
        setattr(AppSettings, _name, _Remembered(_name, _value))
del _name, _value

app_settings = AppSettings()
setting_changed.connect(app_settings.forget, dispatch_uid="cells_oidc.conf.forget")
