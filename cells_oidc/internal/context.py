"""The sign-in context: what one token or authorization request carries between oauthlib's callbacks.

oauthlib calls the validator, the token generators and the ID-token hooks one after the other
with the same ``request`` object and nothing else in common. Whatever one callback learns for a
later one (the redeemed code, the sign-in it belongs to, its ``auth_time`` and ``sid`` …) lives
in one declared :class:`SignInContext`, attached to that request and read only through
:func:`sign_in_context` — never as ad hoc attributes on the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cells_oidc.models import TokenFamily

__all__ = ["SignInContext", "authorization_credentials", "sign_in_context", "token_request_context"]

# The one attribute of an oauthlib request that holds the context; named nowhere else.
_ATTRIBUTE = "cells_sign_in"


@dataclass
class SignInContext:
    """The sign-in an oauthlib request is answered for.

    Filled by whichever callback learns it first: the authorization view (``sid``,
    ``auth_time``, ``named_redirect_uri``), ``validate_code`` (``grant`` and ``family``),
    ``validate_refresh_token`` and the device-code redemption (``family``), the resource
    settlement (``granted_resources``). Read by the token generators and the ID-token hooks.
    """

    #: The sign-in (:class:`~cells_oidc.models.TokenFamily`) the tokens belong to, if any.
    family: TokenFamily | None = None
    #: The authorization code row redeemed by ``validate_code`` (DOT's ``Grant``).
    grant: Any = None
    #: The code row as first read for the request (its user joined), before it is redeemed: read
    #: once for oauthlib's scope and nonce look-ups and ``validate_code`` (docs/performance.md).
    presented_grant: Any = None
    #: When the user authenticated, in seconds since the epoch (OpenID Connect Core §2).
    auth_time: int | None = None
    #: The browser session of the sign-in (OpenID Connect Front-Channel Logout §3), "" if none.
    sid: str = ""
    #: RFC 6749 §4.1.3: the ``redirect_uri`` the authorization request named ("" when none);
    #: ``None`` when unknown (not an authorization request from the authorization view).
    named_redirect_uri: str | None = None
    #: RFC 8707 §2.2: the resources of the grant being redeemed, which the refresh token keeps
    #: even when the access token is narrowed; ``None`` when no grant binds the request.
    granted_resources: list[str] | None = None
    #: The client as the token view read it (its policy joined) for the DPoP check, handed to
    #: the validator so that it is read once per request (docs/performance.md).
    client: Any = None
    #: The access token row this request issued: what DOT's ``app_authorized`` signal carries,
    #: without DOT's read of the row it has just written.
    access_token: Any = None

    def bind(self, family: TokenFamily) -> None:
        """Answer for ``family``: its ``auth_time`` and ``sid`` go into every token issued
        (a refreshed ID token keeps the original ``auth_time``, OpenID Connect Core §12.2)."""
        self.family = family
        self.auth_time = epoch(family.auth_time)
        self.sid = family.sid or ""


# The token view hands its context to oauthlib in the request's META, which DOT copies into the
# oauthlib request's headers (OAuthLibCore.extract_headers). No HTTP header can have this name
# (those are HTTP_*).
_META_KEY = "cells_oidc.sign_in_context"


def sign_in_context(request: Any) -> SignInContext:
    """The :class:`SignInContext` of the oauthlib ``request``: the one the token view handed over
    (:func:`token_request_context`), else created on first use."""
    context = getattr(request, _ATTRIBUTE, None)
    if not isinstance(context, SignInContext):
        headers = getattr(request, "headers", None)
        handed = headers.get(_META_KEY) if headers is not None else None
        context = handed if isinstance(handed, SignInContext) else SignInContext()
        setattr(request, _ATTRIBUTE, context)
    return context


def token_request_context(django_request: Any) -> SignInContext:
    """The context of a token request, shared by the token view and the oauthlib callbacks it
    leads to (created on first use)."""
    context = django_request.META.get(_META_KEY)
    if not isinstance(context, SignInContext):
        context = django_request.META[_META_KEY] = SignInContext()
    return context


def authorization_credentials(
    *, sid: str, auth_time: int | None, named_redirect_uri: str
) -> dict[str, SignInContext]:
    """The entry of the ``credentials`` the authorization view hands oauthlib, which sets each
    one as an attribute of its request: the context of the code about to be issued."""
    context = SignInContext(sid=sid or "", auth_time=auth_time, named_redirect_uri=named_redirect_uri)
    return {_ATTRIBUTE: context}


def epoch(value: datetime | None) -> int | None:
    """``value`` in whole seconds since the epoch (a naive value is taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_timezone.utc)
    return int(value.timestamp())
