"""DRF authentication with cells-oidc bearer tokens (RFC 6750)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from cells_oidc.internal import profiles
from cells_oidc.internal.bearer import BearerRequestError, bearer_token, challenge, invalid_token_description
from cells_oidc.internal.dpop import check_resource_request
from cells_oidc.internal.jws import InvalidToken
from cells_oidc.internal.resource import Prefetch, authenticate_token
from cells_oidc.internal.token_info import TokenInfo

__all__ = ["PREFETCHED_ATTRIBUTE", "BearerTokenAuthentication", "InvalidRequest", "user_refusal"]

_ERROR_ATTRIBUTE = "_cells_oidc_bearer_error"
#: The cache entries read with the deny-list for a ``prefetch_profile`` view (profiles.profile).
PREFETCHED_ATTRIBUTE = "_cells_oidc_prefetched"


class InvalidRequest(exceptions.AuthenticationFailed):
    """RFC 6750 §3.1 ``invalid_request``: answered with 400, not 401."""

    status_code = 400
    default_code = "invalid_request"


def user_refusal(request: Request, exc: InvalidToken) -> exceptions.AuthenticationFailed:
    """The 401 ``invalid_token`` for a token refused after authentication (its user, loaded when
    the view needs it, is unknown or inactive): the ``WWW-Authenticate`` header says why."""
    description = invalid_token_description(exc.reason)
    setattr(request, _ERROR_ATTRIBUTE, (exc.error, description, False))
    return exceptions.AuthenticationFailed(description, code=exc.error)


class BearerTokenAuthentication(BaseAuthentication):
    """Authenticate ``Authorization: Bearer <token>`` with a cells-oidc access or personal token,
    or ``Authorization: DPoP <token>`` with a ``DPoP`` proof for a DPoP-bound one (RFC 9449 §7).

    - no ``Authorization`` header, or another scheme: not ours, ``None`` (the next class tries);
    - a good token: ``request.user`` is the user of the token, ``request.auth`` a
      :class:`cells_oidc.internal.token_info.TokenInfo` (kind, subject, client id, scopes, claims);
    - a bad token: ``AuthenticationFailed``, answered ``401`` with
      ``WWW-Authenticate: Bearer realm="…", error="invalid_token"``; a malformed header or a
      token in the query string: ``400`` ``invalid_request`` (RFC 6750 §3.1).

    DRF takes the ``WWW-Authenticate`` header from the *first* authentication class of a view:
    list this one first, or DRF answers 403 instead of 401.
    """

    def authenticate(self, request: Request) -> tuple[Any, TokenInfo] | None:
        try:
            token = bearer_token(request._request)
        except BearerRequestError as exc:
            setattr(request, _ERROR_ATTRIBUTE, (exc.error, str(exc), False))
            raise InvalidRequest(str(exc)) from None
        if token is None:
            return None

        def refuse(exc: InvalidToken) -> Exception:
            # The user is loaded when the view first reads it (no query for a view that needs
            # only the token): an unknown or inactive user is refused then, 401 all the same.
            return user_refusal(request, exc)

        # A view answering with the caller's profile (prefetch_profile) gets its cache entries
        # read with the deny-list: one round trip for both (docs/performance.md).
        view = (getattr(request, "parser_context", None) or {}).get("view")
        prefetch = Prefetch(profiles.cache_keys) if getattr(view, "prefetch_profile", False) else None
        try:
            user, info = authenticate_token(token, lazy_user=True, refuse=refuse, prefetch=prefetch)
            check_resource_request(request._request, token, info.claims)  # RFC 9449 §7
        except InvalidToken as exc:
            description = invalid_token_description(exc.reason)
            setattr(request, _ERROR_ATTRIBUTE, (exc.error, description, getattr(exc, "dpop", False)))
            raise exceptions.AuthenticationFailed(description, code=exc.error) from None
        if prefetch is not None:
            setattr(request, PREFETCHED_ATTRIBUTE, prefetch)
        return user, info

    def authenticate_header(self, request: Request) -> str:
        error, description, dpop = getattr(request, _ERROR_ATTRIBUTE, (None, None, False))
        return challenge(error, description, dpop=dpop)
