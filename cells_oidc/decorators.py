"""Bearer-token protection for plain Django views (no Django REST framework needed).

::

    from cells_oidc.decorators import bearer_token_required

    @bearer_token_required(scopes=["files:read"])
    def files(request):
        return JsonResponse({"user": request.user.get_username(), "scopes": sorted(request.auth.scopes)})

Answers as RFC 6750 §3 says: ``401`` with ``WWW-Authenticate: Bearer realm="…"`` when no token is
presented, ``401`` ``error="invalid_token"`` for a bad one, ``400`` ``error="invalid_request"`` for a
malformed header, ``403`` ``error="insufficient_scope", scope="…"`` when a scope is missing; the
body is a JSON ``{"error": …, "error_description": …}``. The answers are built by
:mod:`cells_oidc.internal.bearer`, as those of the DRF classes and of userinfo.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from cells_oidc.internal.bearer import (
    INSUFFICIENT_SCOPE,
    NO_TOKEN,
    BearerRequestError,
    bearer_token,
    invalid_token_description,
    refusal,
    validate_scopes,
)
from cells_oidc.internal.dpop import check_resource_request
from cells_oidc.internal.jws import InvalidToken
from cells_oidc.internal.resource import authenticate_token

__all__ = ["bearer_token_required"]

View = Callable[..., Any]


def authenticate_request(
    request: HttpRequest, scopes: frozenset[str], *, lazy_user: bool = False
) -> HttpResponse | None:
    """Authenticate ``request`` by its bearer token; ``None`` when it may go on, else the answer.

    On success ``request.user`` is the token's user and ``request.auth`` its
    :class:`cells_oidc.internal.token_info.TokenInfo`. With ``lazy_user`` the user is loaded when
    the view first reads it (:class:`cells_oidc.internal.resource.LazyUser`).
    """
    try:
        token = bearer_token(request)
    except BearerRequestError as exc:
        return refusal(exc.status, exc.error, str(exc))
    if token is None:
        # RFC 6750 §3.1: no error code when the request carries no credentials.
        return refusal(401, None, NO_TOKEN)
    try:
        user, info = authenticate_token(token, lazy_user=lazy_user)
        check_resource_request(request, token, info.claims)  # RFC 9449 §7
    except InvalidToken as exc:
        return refusal(
            401, exc.error, invalid_token_description(exc.reason), dpop=getattr(exc, "dpop", False)
        )
    request.user = user
    request.auth = info  # type: ignore[attr-defined]
    if not info.has_scopes(scopes):
        return refusal(403, "insufficient_scope", INSUFFICIENT_SCOPE, scope=scopes)
    return None


def bearer_token_required(
    view: View | None = None, *, scopes: Iterable[str] | str = ()
) -> View | Callable[[View], View]:
    """Require a valid cells-oidc bearer token (and every scope of ``scopes``) for a view.

    Usable bare (``@bearer_token_required``) or with arguments, on sync and async views; for a
    class-based view wrap ``as_view()``: ``bearer_token_required(FilesView.as_view(), scopes=[...])``.
    The view is exempt from CSRF checks and from ``LoginRequiredMiddleware``:
    a bearer token is not sent by browsers on their own, and the token is the authentication.
    Sessions are ignored: a request without a token is refused even if a user is signed in.
    """
    required = validate_scopes(scopes)

    def decorate(view_func: View) -> View:
        if iscoroutinefunction(view_func):

            async def async_wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = await sync_to_async(authenticate_request)(request, required)
                if refused is not None:
                    return refused
                return await view_func(request, *args, **kwargs)

            wrapped: Any = functools.wraps(view_func)(async_wrapped)
            markcoroutinefunction(wrapped)
        else:

            def sync_wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                # A sync view loads the user when it reads it (none for a view of the token
                # alone); an async view gets it loaded here, off the event loop.
                refused = authenticate_request(request, required, lazy_user=True)
                if refused is not None:
                    return refused
                try:
                    return view_func(request, *args, **kwargs)
                except InvalidToken as exc:  # the lazily loaded user was refused (RFC 6750 §3.1)
                    return refusal(401, exc.error, invalid_token_description(exc.reason))

            wrapped = functools.wraps(view_func)(sync_wrapped)
        wrapped.csrf_exempt = True
        wrapped.login_required = False
        return wrapped

    if view is not None:
        return decorate(view)
    return decorate
