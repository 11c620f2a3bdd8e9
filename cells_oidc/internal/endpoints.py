"""The issuer and the absolute URL of every endpoint, built in one place.

Every URL that leaves the provider (discovery, the ``iss`` of tokens, the RFC 9207 ``iss``
response parameter, device verification URIs …) is ``CELLS_OIDC_SITE_URL`` plus the path Django
reverses for the view, so that the app works mounted under any prefix and never trusts the
request's ``Host`` header.
"""

from __future__ import annotations

from django.urls import get_script_prefix, reverse

from cells_oidc.conf import app_settings

NAMESPACE = "cells_oidc"


def site_path(path: str) -> str:
    """Turn a path reversed by Django into an absolute URL on the primary public site URL."""
    prefix = get_script_prefix()
    if path.startswith(prefix):
        path = path[len(prefix) :]
    return f"{app_settings.SITE_URL}/{path.lstrip('/')}"


def absolute_url(name: str, *args: object, **kwargs: object) -> str:
    """The absolute public URL of the named view of this app (``"token"``, ``"jwks"`` …)."""
    return site_path(reverse(f"{NAMESPACE}:{name}", args=args or None, kwargs=kwargs or None))


def issuer() -> str:
    """The issuer: the site URL plus the mount path, with Cells' trailing slash (``https://host/oidc/``).

    OpenID Connect Discovery §4.3: the ``issuer`` of the discovery document MUST be identical to
    the ``iss`` of every ID token; RFC 9207 §2 uses the same string for the ``iss`` response
    parameter.
    """
    return absolute_url("issuer")
