"""Pages of the demo site: its front end (an OAuth client of its own provider) and the API docs page.

The front end is static JavaScript (``project/static/project/``); these views only serve the page
shell with the client's configuration in ``data-`` attributes and a strict Content Security
Policy: scripts and styles from this origin only, no inline script, no external asset.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import get_script_prefix, reverse
from django.views.decorators.http import require_safe

from cells_oidc.conf import app_settings
from cells_oidc.internal.endpoints import issuer

#: The public client of the front end (``cells_oidc/fixtures/default_clients.json``).
CLIENT_ID = "cells-frontend"
SCOPE = "openid profile email pydio offline"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _site_url(request: HttpRequest) -> str | None:
    """The configured site URL this request came to, or ``None`` (the page must be reloaded there)."""
    origin = f"{request.scheme}://{request.get_host()}"
    return next((url for url in app_settings.SITE_URLS if _origin(url) == origin), None)


def _on_site(site: str, name: str) -> str:
    """The absolute URL of a view on ``site`` (whose path already holds any mount prefix)."""
    path = reverse(name)
    prefix = get_script_prefix()
    return f"{site}/{path[len(prefix) :] if path.startswith(prefix) else path.lstrip('/')}"


def _page(request: HttpRequest, template: str, *, callback: bool = False) -> HttpResponse:
    site = _site_url(request)
    if site is None:
        # The tokens and the sign-in state live in this origin's memory and sessionStorage, and the
        # provider only redirects to the registered site URLs: continue on the primary one.
        return HttpResponseRedirect(app_settings.SITE_URL + request.get_full_path())
    context = {
        "site_name": app_settings.SITE_NAME,
        "issuer": issuer(),
        "client_id": CLIENT_ID,
        "scope": SCOPE,
        # Registered as http://serverName/auth/callback and http://serverName/ (redirects.py).
        "redirect_uri": _on_site(site, "auth-callback"),
        "post_logout_redirect_uri": _on_site(site, "home"),
        "home": reverse("home"),
        "api_me": reverse("cells_oidc_api:user-me"),
        "api_tokens": reverse("cells_oidc_api:tokens"),
        "api_docs": reverse("api-docs"),
    }
    response = render(request, template, context)
    response["Content-Security-Policy"] = content_security_policy(connect=[_origin(issuer())])
    if callback:
        # The authorization code is in this page's URL: never cached, never sent to another origin
        # as a Referer (not "no-referrer": then browsers send "Origin: null" with the page's POSTs).
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "same-origin"
    return response


def content_security_policy(*, connect: tuple[str, ...] | list[str] = ()) -> str:
    """What the demo's pages may load: only this origin's scripts and styles, no inline code."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src " + " ".join(["'self'", *connect]),
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The front end: signs in through the provider as ``cells-frontend`` and shows the profile."""
    return _page(request, "home.html")


@require_safe
def auth_callback(request: HttpRequest) -> HttpResponse:
    """The redirect URI of ``cells-frontend``: the same page, whose script redeems the code."""
    return _page(request, "auth_callback.html", callback=True)


@require_safe
def api_docs(request: HttpRequest) -> HttpResponse:
    """A readable page of the OpenAPI document of ``/a/``, rendered by a local script."""
    response = render(
        request,
        "api_docs.html",
        {"site_name": app_settings.SITE_NAME, "schema_url": reverse("openapi-schema")},
    )
    response["Content-Security-Policy"] = content_security_policy()
    return response
