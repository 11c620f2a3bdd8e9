"""Settings of cells-oidc.

Every ``CELLS_OIDC_*`` setting is a typed property of :data:`app_settings`, read from
``django.conf.settings`` each time it is used (nothing is cached, so ``override_settings`` and the
pytest-django ``settings`` fixture just work).

django-oauth-toolkit (DOT) keeps its own settings in the ``OAUTH2_PROVIDER`` dict. Build it with
:func:`oauth2_provider_settings`, which fills in what cells-oidc needs and Cells' defaults::

    OAUTH2_PROVIDER = oauth2_provider_settings(signing_key=PEM)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

#: Scopes Cells' clients ask for, plus the standard OpenID Connect ones.
DEFAULT_SCOPES: dict[str, str] = {
    "openid": "Sign you in with your account",
    "profile": "Know your name and login",
    "email": "Know your email address",
    "pydio": "Use your Cells files and folders",
    # OpenID Connect Core §11: offline_access asks for a refresh token; Cells spells it "offline".
    "offline": "Stay signed in when you are away",
    "offline_access": "Stay signed in when you are away",
}

#: Cells' lifetimes (seconds): access token 10 min, ID token 1 h, code 10 min, refresh 60 days.
CELLS_LIFETIMES: dict[str, int] = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 10 * 60,
    "ID_TOKEN_EXPIRE_SECONDS": 60 * 60,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 10 * 60,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 60 * 24 * 60 * 60,
}

VALIDATOR_CLASS = "cells_oidc.validators.CellsOAuth2Validator"
ACCESS_TOKEN_GENERATOR = "cells_oidc.tokens.generate_access_token"
REFRESH_TOKEN_GENERATOR = "cells_oidc.tokens.generate_refresh_token"


def oauth2_provider_settings(
    *, signing_key: str, inactive_keys: list[str] | tuple[str, ...] = (), **overrides: Any
) -> dict[str, Any]:
    """Return the ``OAUTH2_PROVIDER`` dict cells-oidc needs, with Cells' defaults.

    ``signing_key`` is the PEM of the RSA private key that signs ID and access tokens (RS256);
    ``inactive_keys`` are older keys still published in the JWKS so that tokens they signed keep
    verifying during a rotation. Any DOT setting may be overridden by keyword, e.g.
    ``ACCESS_TOKEN_EXPIRE_SECONDS=300`` or ``SCOPES={**DEFAULT_SCOPES, "files:read": "..."}``.
    """
    config: dict[str, Any] = {
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": signing_key,
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
    }
    config.update(overrides)
    return config


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return [str(part) for part in value]


class AppSettings:
    """Typed, live view of the ``CELLS_OIDC_*`` settings."""

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


app_settings = AppSettings()


def site_netlocs() -> list[str]:
    """The ``host[:port]`` of every configured site URL (what ``serverName`` stands for)."""
    return [urlsplit(url).netloc for url in app_settings.SITE_URLS]
