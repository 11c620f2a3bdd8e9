"""What every browser-facing page of cells-oidc shares: security headers, request ids, branding.

Every page sets:

- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` (no clickjacking of a consent or
  sign-in button, RFC 6749 §10.13);
- a strict Content-Security-Policy: scripts and styles only from the site's own static files,
  never inline (a script injected into a page could read a code or press "Allow");
- ``Referrer-Policy: same-origin`` (page URLs carry ``state`` and user codes, RFC 9700 §4.2.4:
  they never leave the site in a ``Referer``); ``no-referrer`` on the out-of-band page, whose URL
  holds an authorization code. Not ``no-referrer`` on pages with forms: browsers then send
  ``Origin: null`` with the POST, which Django's CSRF protection rightly refuses;
- ``Cache-Control: no-store`` (pages show codes, CSRF tokens and the user's own data).

Pages are rendered with :func:`render_page` (views of the signed-in user use
:class:`SignedInPageMixin`), or get :func:`apply_headers` on a response built elsewhere; the error
page is :func:`cells_oidc.internal.errors.page_response`. A view whose form may end in a redirect to
another origin (a client's ``redirect_uri``) lists it in ``response.cells_oidc_form_action``:
Chromium applies ``form-action`` to every redirect that follows a form submission.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from oauth2_provider.compat import login_not_required

from cells_oidc.conf import app_settings
from cells_oidc.internal.events import binds_request

#: Attribute of a response naming extra ``form-action`` sources (see the module docstring).
FORM_ACTION_ATTR = "cells_oidc_form_action"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")
_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
#: ``CELLS_OIDC_BRAND_COLORS`` keys and the CSS custom properties they set.
BRAND_PROPERTIES = {
    "accent": "--accent",
    "accent_text": "--accent-text",
    "background": "--bg",
    "card": "--card",
    "text": "--fg",
    "muted": "--muted",
    "error": "--err",
}


# ---- Content-Security-Policy -----------------------------------------------------------------
def csp_source(uri: str | None) -> str | None:
    """The CSP source expression that allows navigating to ``uri``, or ``None``.

    ``http(s)`` URIs give their origin; a private-use scheme (``cellsauth://callback``,
    RFC 8252 §7.1) gives the scheme source ``cellsauth:``. Anything that could smuggle another
    directive into the header is refused.
    """
    if not uri or any(c in uri for c in " ;,'\"\\\r\n\t"):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME_RE.fullmatch(scheme):
        return None
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host:
            return None
        if ":" in host:
            host = f"[{host}]"
        if not _HOST_RE.fullmatch(host):
            return None
        return f"{scheme}://{host}{f':{port}' if port else ''}"
    if scheme in ("javascript", "data", "blob", "file", "filesystem", "about"):
        return None
    return f"{scheme}:"


def static_origin(value: object) -> str | None:
    """The CSP source of an ``http(s)`` origin (``https://cdn.example[:port]``), else ``None``.

    A path other than ``/``, a query, a fragment or user info makes it no origin (RFC 6454 §4).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or "@" in parts.netloc or value.endswith(("?", "#")):
        return None
    return csp_source(value)


def static_sources() -> list[str]:
    """Where the pages' scripts, stylesheets and images may come from besides ``'self'``.

    The origin of ``STATIC_URL`` when it is absolute (a CDN: ``https://cdn.example/static/``;
    protocol-relative ``//cdn.example/static/`` counts as https), then the valid entries of
    ``CELLS_OIDC_CSP_STATIC_ORIGINS`` (invalid ones are left out: cells_oidc.E016).
    """
    from django.conf import settings

    sources: list[str] = []
    static_url = str(getattr(settings, "STATIC_URL", "") or "")
    if static_url.startswith("//"):
        static_url = "https:" + static_url
    if "://" in static_url:
        parts = urlsplit(static_url)
        origin = static_origin(f"{parts.scheme}://{parts.netloc}") if "@" not in parts.netloc else None
        if origin:
            sources.append(origin)
    sources.extend(origin for value in app_settings.CSP_STATIC_ORIGINS if (origin := static_origin(value)))
    return list(dict.fromkeys(sources))


def content_security_policy(*, form_action: Iterable[str] = ()) -> str:
    """The pages' CSP: nothing inline, nothing from elsewhere but the static files' origins
    (:func:`static_sources`), never framed."""
    static = static_sources()
    img = ["'self'", *static]
    logo = csp_source(app_settings.LOGO_URL) if "://" in app_settings.LOGO_URL else None
    if logo and logo.startswith("https://") and logo not in img:
        img.append(logo)
    actions = ["'self'", *dict.fromkeys(s for s in form_action if s)]
    assets = " ".join(["'self'", *static])
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {assets}",
            f"style-src {assets}",
            f"img-src {' '.join(img)}",
            f"form-action {' '.join(actions)}",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def apply_headers(
    response: HttpResponse,
    *,
    form_action: Iterable[str] = (),
    no_store: bool = True,
    referrer_policy: str = "same-origin",
) -> HttpResponse:
    """Set the security headers of a page on ``response`` (see the module docstring)."""
    extra = [*form_action, *getattr(response, FORM_ACTION_ATTR, ())]
    response["Content-Security-Policy"] = content_security_policy(form_action=extra)
    response["X-Frame-Options"] = "DENY"
    response["Referrer-Policy"] = referrer_policy
    response["X-Content-Type-Options"] = "nosniff"
    response["Cross-Origin-Opener-Policy"] = "same-origin"
    if no_store:
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
    return response


class SignedInPageMixin:
    """A page for the signed-in user: anonymous visitors go to the login page and come back.

    Every response carries the pages' security headers.
    """

    @method_decorator(login_not_required)
    @binds_request
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            response: HttpResponse = redirect_to_login(request.get_full_path(), login_url())
        else:
            response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        return apply_headers(response)


def login_url() -> str:
    """The login page: ``CELLS_OIDC_LOGIN_URL`` or the app's own."""
    return resolve_url(app_settings.LOGIN_URL or reverse("cells_oidc:login"))


# ---- request ids -----------------------------------------------------------------------------
def request_id(request: HttpRequest) -> str:
    """An id of this request for support: the proxy's ``X-Request-ID`` when sane, else a new one."""
    existing = getattr(request, "cells_oidc_request_id", None)
    if isinstance(existing, str):
        return existing
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if _REQUEST_ID_RE.fullmatch(incoming) else secrets.token_hex(8)
    request.cells_oidc_request_id = rid  # type: ignore[attr-defined]
    return rid


def render_page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    form_action: Iterable[str] = (),
    referrer_policy: str = "same-origin",
) -> HttpResponse:
    """Render a page of the app with its security headers and the site name."""
    context = {"site_name": app_settings.SITE_NAME, "referrer_policy": referrer_policy, **(context or {})}
    response = render(request, template, context, status=status)
    return apply_headers(response, form_action=form_action, referrer_policy=referrer_policy)


# ---- branding --------------------------------------------------------------------------------
def branding() -> dict[str, Any]:
    """What the base template shows: site name and host, logo and the colour stylesheet."""
    stylesheet = None
    if brand_colors():
        try:
            stylesheet = reverse("cells_oidc:brand-css")
        except NoReverseMatch:
            stylesheet = None
    return {
        "site_name": app_settings.SITE_NAME,
        "site_host": urlsplit(app_settings.SITE_URL).netloc,
        "logo_url": app_settings.LOGO_URL,
        "stylesheet": stylesheet,
    }


def brand_colors() -> dict[str, str]:
    """The valid entries of ``CELLS_OIDC_BRAND_COLORS`` as CSS custom properties."""
    return {
        BRAND_PROPERTIES[key]: value
        for key, value in app_settings.BRAND_COLORS.items()
        if key in BRAND_PROPERTIES and isinstance(value, str) and _COLOR_RE.fullmatch(value)
    }


@login_not_required
def brand_css(request: HttpRequest) -> HttpResponse:
    """``CELLS_OIDC_BRAND_COLORS`` as a stylesheet (the CSP allows no inline style)."""
    body = ":root {\n" + "".join(f"  {name}: {value};\n" for name, value in brand_colors().items()) + "}\n"
    response = HttpResponse(body, content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
