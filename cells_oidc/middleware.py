"""The middleware of cells-oidc: throttles (429) and outages (503).

Add it FIRST in ``MIDDLEWARE`` (outermost, so that it also sees a database error raised while
another middleware saves the session)::

    MIDDLEWARE = ["cells_oidc.middleware.ProviderMiddleware", ...]

What it does (docs/security.md "Throttling", docs/deploy.md "Faults"):

- **Throttles** (:mod:`cells_oidc.internal.throttle`, limits ``CELLS_OIDC_THROTTLES``): on the
  provider's login page and the Django admin's, a sign-in attempt is counted before its password is
  checked and a locked login is refused without checking it; the attempt is settled by Django's
  ``user_login_failed`` / ``user_logged_in`` signals, from which any other login view that calls
  ``authenticate(request, …)`` has its failures counted; token requests per client and IP; introspection
  requests per client and IP; refused personal access tokens per IP. Over a limit: ``429`` with
  ``Retry-After`` (RFC 6585 §4), JSON ``{"error": "slow_down"}`` from the API endpoints (the RFC
  8628 §3.5 code registered for the token endpoint), the styled error page from pages.
- **Unreadable bodies**: a form body Django refuses to parse (a form declaring a charset other
  than UTF-8, a multipart body without a valid boundary or over ``DATA_UPLOAD_MAX_NUMBER_FIELDS``)
  is answered ``400`` (JSON ``invalid_request`` from the API endpoints, the error page from
  pages). Django's own error views re-read such a body through their CSRF check: a ``404`` or
  ``400`` became a ``500``, or the exception escaped to the WSGI server.
- **Outages**: a ``django.db.OperationalError`` or ``InterfaceError`` (database down or
  restarting), or an unreachable throttle cache, anywhere in the request, is answered ``503`` with
  ``Retry-After``: JSON ``{"error": "temporarily_unavailable"}`` (RFC 6749 §4.1.2.1, §5.2 style)
  from the API endpoints, a styled page from pages — never Django's HTML 500. The error is logged.
  Nothing is half-written: the request's transaction (``ATOMIC_REQUESTS`` or the token
  endpoint's own) rolled back, and the next request opens a fresh connection
  (``CONN_HEALTH_CHECKS``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import resolve

from cells_oidc.conf import app_settings
from cells_oidc.internal import throttle

__all__ = ["ProviderMiddleware"]

logger = logging.getLogger("cells_oidc.faults")

#: Endpoints of the provider answered in JSON (the others are pages).
API_URL_NAMES = frozenset(
    {
        "issuer",
        "discovery",
        "jwks",
        "token",
        "revoke",
        "introspect",
        "userinfo",
        "device-authorization",
        "healthz",
        "readyz",
    }
)
_OUTAGE_ATTR = "_cells_oidc_outage"
_PAT_ATTR = "_cells_oidc_pat_ip"
_LOGIN_ATTR = "_cells_oidc_login_attempt"
_UNREADABLE_ATTR = "_cells_oidc_unreadable_body"

#: What Django raises for a request it cannot read, and answers 400 (django.core.handlers.exception).
UNREADABLE_REQUEST_ERRORS = (BadRequest, SuspiciousOperation, MultiPartParserError)


def outage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "a backing service is unreachable", not a bug."""
    errors: list[type[BaseException]] = [OperationalError, InterfaceError, throttle.ThrottleUnavailable]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # redis is optional
        pass
    else:
        errors += [RedisConnectionError, RedisTimeoutError]
    return tuple(errors)


def wants_json(request: HttpRequest) -> bool:
    """Whether ``request`` is for an API endpoint (JSON errors) rather than a page."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        # Refused before the URL was resolved (a Host outside ALLOWED_HOSTS, an unreadable body
        # read by an earlier middleware): the path still says which endpoint was meant.
        try:
            match = resolve(request.path_info)
        except Exception:  # noqa: BLE001 - Resolver404, or a path the URLconf cannot take
            match = None
    if match is not None:
        if "cells_oidc" in match.app_names and match.url_name in API_URL_NAMES:
            return True
        if "cells_oidc_api" in match.app_names:
            return True
    if request.headers.get("Authorization", "").lower().startswith(("bearer ", "basic ")):
        return True
    accept = request.headers.get("Accept", "")
    return "json" in accept and "html" not in accept


def _json(error: str, description: str, status: int, retry_after: int | None) -> HttpResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


def _page(
    request: HttpRequest, error: str, explanation: Any, status: int, retry_after: int | None
) -> HttpResponse:
    from cells_oidc.internal import pages

    try:
        rid = pages.request_id(request)
        # The page must not touch the database: the footer's user is anonymous here.
        response = pages.render_page(
            request,
            "cells_oidc/error.html",
            {"error": error, "explanation": explanation, "request_id": rid, "user": AnonymousUser()},
            status=status,
        )
        response[pages.REQUEST_ID_HEADER] = rid
    except Exception:  # noqa: BLE001 - a page that cannot render must still answer
        logger.exception("The %s page could not be rendered.", status)
        response = HttpResponse(
            f"<!doctype html><title>{status}</title><p>{explanation}</p>",
            status=status,
            content_type="text/html; charset=utf-8",
        )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


def throttled_response(request: HttpRequest, exc: throttle.Throttled) -> HttpResponse:
    """429 Too Many Requests (RFC 6585 §4) with ``Retry-After``."""
    seconds = exc.retry_after
    if wants_json(request):
        return _json("slow_down", f"Too many requests; retry after {seconds} seconds.", 429, seconds)
    minutes = max(1, (seconds + 59) // 60)
    return _page(
        request,
        "slow_down",
        f"Too many attempts. Wait {minutes} minute{'s' if minutes > 1 else ''}, then try again.",
        429,
        seconds,
    )


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 Service Unavailable with ``Retry-After`` (RFC 9110 §15.6.4)."""
    seconds = app_settings.RETRY_AFTER
    if wants_json(request):
        return _json(
            "temporarily_unavailable",
            "The service is temporarily unavailable; retry later.",
            503,
            seconds,
        )
    return _page(
        request,
        "temporarily_unavailable",
        "This site is briefly unavailable. Please try again in a few seconds.",
        503,
        seconds,
    )


def bad_request_response(request: HttpRequest) -> HttpResponse:
    """400 for a request Django cannot read: JSON ``invalid_request`` (RFC 6749 §5.2) from the
    API endpoints, the styled error page from pages; ``no-store``. Never reads the body."""
    from cells_oidc.internal.errors import ERROR_EXPLANATIONS

    if wants_json(request):
        return _json("invalid_request", "The request cannot be read.", 400, None)
    return _page(request, "invalid_request", ERROR_EXPLANATIONS["invalid_request"], 400, None)


# ---- signal receivers --------------------------------------------------------------------------
def _typed_login(request: HttpRequest | None, credentials: dict[str, Any] | None = None) -> str:
    if request is not None and request.method == "POST":
        try:
            typed = request.POST.get("username")
        except Exception:  # noqa: BLE001 - a malformed body: fall back to the credentials
            typed = None
        if typed:
            return str(typed)
    return str((credentials or {}).get("username") or "")


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any
) -> None:
    """``user_login_failed``: count it per typed login and per IP (fails closed: 503); an attempt
    the middleware counted before its password was checked is counted already."""
    if request is None:
        return
    attempt = getattr(request, _LOGIN_ATTR, None)
    if attempt is not None:
        throttle.attempt_failed(request, attempt)
    else:
        throttle.login_failed(request, _typed_login(request, credentials))


def on_logged_in(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_in`` from a login form: clear the failures of the typed login."""
    if request is None or request.method != "POST":
        return
    attempt = getattr(request, _LOGIN_ATTR, None)
    try:
        if attempt is not None:
            throttle.attempt_succeeded(request, attempt)
        else:
            throttle.login_succeeded(request, _typed_login(request) or user.get_username())
    except throttle.ThrottleUnavailable:
        pass  # a leftover count is harmless; the sign-in stands


def on_request_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception``: remember an outage raised outside the view (a middleware's)."""
    exc = sys.exc_info()[1]
    if request is not None and isinstance(exc, outage_errors()):
        setattr(request, _OUTAGE_ATTR, exc)
    elif request is not None and isinstance(exc, UNREADABLE_REQUEST_ERRORS):
        # Sent only when Django's handling of a 400 or 404 raised again (see __call__).
        setattr(request, _UNREADABLE_ATTR, exc)


class ProviderMiddleware:
    """Throttles and outage answers of cells-oidc (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        user_login_failed.connect(on_login_failed, dispatch_uid="cells_oidc.throttle.login_failed")
        user_logged_in.connect(on_logged_in, dispatch_uid="cells_oidc.throttle.logged_in")
        got_request_exception.connect(on_request_exception, dispatch_uid="cells_oidc.faults")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.get_response(request)
        except UNREADABLE_REQUEST_ERRORS as exc:
            # Django's error views (handler400, handler404, handler500) carry
            # ``requires_csrf_token``, whose check reads ``request.POST`` again. A form body
            # declaring a charset other than UTF-8 raises ``BadRequest`` on every read (Django
            # #34709 does not mark the parse as failed): the 400 view raised, then the 500 view,
            # and the exception left Django for the WSGI server's bare 500.
            response = self.unreadable(request, exc)
        unreadable = getattr(request, _UNREADABLE_ATTR, None)
        if unreadable is not None and response.status_code == 500:
            # The same re-read where the first one happened in the error view itself (a 404
            # path, a multipart body without a boundary): Django's 500 page for a bad request.
            response = self.unreadable(request, unreadable)
        attempt = getattr(request, _LOGIN_ATTR, None)
        if attempt is not None:
            throttle.attempt_abandoned(attempt)  # no password was checked (once settled: nothing)
        exc = getattr(request, _OUTAGE_ATTR, None)
        if exc is not None:
            logger.error("Answered 503: %s: %s", type(exc).__name__, exc)
            return unavailable_response(request)
        ip = getattr(request, _PAT_ATTR, None)
        if ip is not None and response.status_code == 401:
            try:
                throttle.hit(throttle.rule("pat_failure_ip"), ip)
            except throttle.ThrottleUnavailable:
                return unavailable_response(request)
        return response

    @staticmethod
    def unreadable(request: HttpRequest, exc: BaseException) -> HttpResponse:
        logger.warning("Answered 400: the request cannot be read: %s: %s", type(exc).__name__, exc)
        return bad_request_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Any, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        try:
            self.throttle(request)
        except throttle.Throttled as exc:
            return throttled_response(request, exc)
        except throttle.ThrottleUnavailable as exc:
            setattr(request, _OUTAGE_ATTR, exc)
            return unavailable_response(request)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, outage_errors()):
            setattr(request, _OUTAGE_ATTR, exception)
            return unavailable_response(request)
        return None

    def throttle(self, request: HttpRequest) -> None:
        """Apply the throttles of this request; raise :class:`~cells_oidc.internal.throttle.Throttled`."""
        match = request.resolver_match
        names = set(match.app_names) if match is not None else set()
        url_name = match.url_name if match is not None else None
        authorization = request.headers.get("Authorization", "")
        scheme, _sep, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip().startswith("cpat_"):
            # Refused personal access tokens per IP (counted when the answer is 401).
            ip = throttle.client_ip(request)
            throttle.check(throttle.rule("pat_failure_ip"), ip)
            setattr(request, _PAT_ATTR, ip)
        if request.method != "POST":
            return
        if url_name == "login" and names & {"cells_oidc", "admin"}:
            # Counted before the password is checked (parallel guesses each take their place in
            # the count); settled by the signals above, taken back if no password was checked.
            attempt = throttle.login_attempt(request, _typed_login(request))
            if attempt is not None:
                setattr(request, _LOGIN_ATTR, attempt)
        elif "cells_oidc" in names and url_name in ("token", "introspect"):
            from cells_oidc.internal.views.common import requesting_client_id

            ip = throttle.client_ip(request)
            client = requesting_client_id(request) or ""
            if url_name == "token":
                throttle.consume_many(
                    [(throttle.rule("token_ip"), ip), (throttle.rule("token_client_ip"), f"{client}\n{ip}")]
                )
            else:
                throttle.consume(throttle.rule("introspect_client_ip"), f"{client}\n{ip}")
