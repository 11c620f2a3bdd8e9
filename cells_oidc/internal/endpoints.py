"""The issuer and the absolute URL of every endpoint, built in one place.

Every URL that leaves the provider (discovery, the ``iss`` of tokens, the RFC 9207 ``iss``
response parameter, device verification URIs …) is ``CELLS_OIDC_SITE_URL`` plus the path Django
reverses for the view, so that the app works mounted under any prefix and never trusts the
request's ``Host`` header.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from cells_oidc.conf import app_settings

NAMESPACE = "cells_oidc"

# URLs of views without arguments, by everything the answer depends on: reverse() walks the
# URLconf on every call, and the issuer is asked for on every token issued or verified.
_memo: dict[tuple[Any, ...], str] = {}


def site_path(path: str) -> str:
    """Turn a path reversed by Django into an absolute URL on the primary public site URL."""
    prefix = get_script_prefix()
    if path.startswith(prefix):
        path = path[len(prefix) :]
    return f"{app_settings.SITE_URL}/{path.lstrip('/')}"


def absolute_url(name: str, *args: object, **kwargs: object) -> str:
    """The absolute public URL of the named view of this app (``"token"``, ``"jwks"`` …)."""
    if args or kwargs:
        return site_path(reverse(f"{NAMESPACE}:{name}", args=args or None, kwargs=kwargs or None))
    memo_key = (name, app_settings.SITE_URL, get_script_prefix(), get_urlconf(), settings.ROOT_URLCONF)
    url = _memo.get(memo_key)
    if url is None:
        url = site_path(reverse(f"{NAMESPACE}:{name}"))
        if len(_memo) > 1000:  # many script prefixes or URLconfs: start again
            _memo.clear()
        _memo[memo_key] = url
    return url


def forget(**kwargs: Any) -> None:
    """Drop the remembered URLs (a ``setting_changed`` receiver)."""
    _memo.clear()


def issuer() -> str:
    """The issuer: the site URL plus the mount path, with Cells' trailing slash (``https://host/oidc/``).

    OpenID Connect Discovery §4.3: the ``issuer`` of the discovery document MUST be identical to
    the ``iss`` of every ID token; RFC 9207 §2 uses the same string for the ``iss`` response
    parameter.
    """
    return absolute_url("issuer")
