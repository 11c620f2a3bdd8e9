"""One error vocabulary: the OAuth errors the provider answers with, and the two ways to answer.

An error is an :class:`OAuthError` carrying ``error`` (the code registered by the RFC that
defines it), ``description`` (for the developer, never a secret) and ``status`` (the HTTP
status). It is answered as:

- JSON (:func:`json_response`), ``no-store``, at the API endpoints: RFC 6749 §5.2 (token
  endpoint), RFC 6750 §3.1 (bearer requests), RFC 7009 §2.2.1, RFC 7662 §2.3, RFC 8628 §3.5;
- the error page (:func:`page_response`) in the browser: RFC 6749 §4.1.2.1 errors that cannot be
  redirected to a verified redirect URI (§4.1.2.1: "MUST NOT automatically redirect"), with a
  plain-language explanation and a request id, never a stack trace.

Errors raised by oauthlib and DOT carry the same three facts (``error``, ``description``,
``status_code``); :func:`page_for` answers them the same way.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext_lazy as _

from cells_oidc.internal import pages

__all__ = [
    "ERROR_EXPLANATIONS",
    "InvalidClient",
    "InvalidRequest",
    "InvalidTarget",
    "NotFound",
    "OAuthError",
    "ServerError",
    "UnauthorizedClient",
    "error_code",
    "json_error",
    "json_response",
    "page_for",
    "page_response",
]

logger = logging.getLogger("cells_oidc.internal.errors")

#: RFC 6749 Appendix A.7: ``error`` is ``%x20-21 / %x23-5B / %x5D-7E``; the codes this provider
#: answers with, and shows, are lower-case words joined by underscores.
ERROR_CODE_RE = re.compile(r"[a-z_]{1,64}")


class OAuthError(Exception):
    """An OAuth error: ``error`` code, ``description`` and HTTP ``status``."""

    error = "invalid_request"
    status = 400

    def __init__(self, description: Any = "", *, error: str | None = None, status: int | None = None) -> None:
        super().__init__(description)
        self.description = description or ""
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, str]:
        """The JSON body: ``error`` and, when there is one, ``error_description``."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = str(self.description)
        return body


class InvalidRequest(OAuthError):
    """RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1: malformed, missing or repeated parameter."""


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: client authentication failed (unknown client, wrong secret)."""

    error, status = "invalid_client", 401


class UnauthorizedClient(OAuthError):
    """RFC 6749 §4.1.2.1, §5.2: the client may not use this grant type."""

    error = "unauthorized_client"


class NotFound(OAuthError):
    """A page's object that does not exist or is not the user's (nothing is changed)."""

    error, status = "not_found", 404


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the requested resource is invalid or not allowed."""

    error = "invalid_target"


class ServerError(OAuthError):
    """RFC 6749 §4.1.2.1: something went wrong on this side."""

    error, status = "server_error", 500


# ---- JSON, for API endpoints --------------------------------------------------------------------
def json_response(exc: OAuthError) -> JsonResponse:
    """``exc`` as an RFC 6749 §5.2 JSON body, ``no-store`` (RFC 6749 §5.1)."""
    response = JsonResponse(exc.as_dict(), status=exc.status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def json_error(error: str, description: str | None = None, *, status: int = 400) -> JsonResponse:
    """:func:`json_response` of the error ``error`` (a code not worth a class of its own)."""
    return json_response(OAuthError(description or "", error=error, status=status))


# ---- the error page, for browsers ---------------------------------------------------------------
#: Plain-language explanations of the OAuth errors a person can meet (RFC 6749 §4.1.2.1, §5.2;
#: OpenID Connect Core §3.1.2.6; RFC 8628 §3.5).
ERROR_EXPLANATIONS: dict[str, Any] = {
    "invalid_client": _("The application that sent you here is not registered with this site."),
    "unauthorized_client": _("This application is not allowed to sign in this way."),
    "invalid_request": _("The application sent an incomplete or malformed sign-in request."),
    "invalid_scope": _("The application asked for permissions this site does not grant to it."),
    "unsupported_response_type": _("The application asked for a kind of answer this site does not give."),
    "access_denied": _("Access was denied."),
    "login_required": _("You need to sign in first."),
    "consent_required": _("You need to approve this application first."),
    "interaction_required": _("The sign-in needs your confirmation."),
    "request_not_supported": _("The application sent a kind of request this site does not accept."),
    "request_uri_not_supported": _("The application sent a kind of request this site does not accept."),
    "server_error": _("Something went wrong on this site. Please try again in a moment."),
    "temporarily_unavailable": _("This site is busy. Please try again in a moment."),
    "csrf_failure": _("The form expired or was sent from another page. Go back, reload and try again."),
}


def error_code(value: object, default: str = "invalid_request") -> str:
    """``value`` if it has the shape of an error code (safe to show and log), else ``default``."""
    return value if isinstance(value, str) and ERROR_CODE_RE.fullmatch(value) else default


def page_response(request: HttpRequest, exc: OAuthError, *, explanation: Any = None) -> HttpResponse:
    """The browser-facing error page of ``exc``: a human explanation, the error code and a
    request id. Never a stack trace and never a redirect; the details go to the log under the
    request id."""
    rid = pages.request_id(request)
    code = error_code(exc.error)
    logger.warning("cells-oidc error page: %s (%s) request_id=%s", code, exc.description, rid)
    response = pages.render_page(
        request,
        "cells_oidc/error.html",
        {
            "error": code,
            "description": exc.description,
            "explanation": explanation
            if explanation is not None
            else ERROR_EXPLANATIONS.get(code, ERROR_EXPLANATIONS["invalid_request"]),
            "request_id": rid,
        },
        status=exc.status,
    )
    response[pages.REQUEST_ID_HEADER] = rid
    return response


def page_for(request: HttpRequest, error: Any) -> HttpResponse:
    """The error page of an oauthlib or DOT error (``error``, ``description``, ``status_code``)."""
    return page_response(
        request,
        OAuthError(
            getattr(error, "description", "") or "",
            error=getattr(error, "error", None) or "invalid_request",
            status=getattr(error, "status_code", 400),
        ),
    )
