"""RFC 6750 on the wire: finding the bearer token of a request and answering a refusal.

Every bearer-token endpoint uses these, so they all answer a failure the same way: userinfo
(:class:`cells_oidc.internal.views.token.UserInfoView`), the DRF classes
(:mod:`cells_oidc.api.authentication`, :mod:`cells_oidc.api.permissions`) and
:func:`cells_oidc.decorators.bearer_token_required`.

The realm rule (RFC 6750 §3, RFC 9110 §11.5): every challenge names one realm, the setting
``CELLS_OIDC_RESOURCE_REALM``, which defaults to ``CELLS_OIDC_SITE_NAME`` — the name users know
the site by, the same on the provider's userinfo and on every API of the site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import TooManyFieldsSent
from django.http import JsonResponse

from cells_oidc.conf import app_settings
from cells_oidc.internal import metrics

__all__ = [
    "INSUFFICIENT_SCOPE",
    "NO_TOKEN",
    "SCOPE_TOKEN",
    "BearerRequestError",
    "bearer_token",
    "challenge",
    "invalid_token_description",
    "refusal",
    "validate_scopes",
]

#: RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: RFC 6749 §3.3 / RFC 6750 §3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: RFC 6750 §2.2, §2.3: the name of the token in a form body or a query string.
PARAMETER = "access_token"

#: The description of a refusal of a request without a token (RFC 6750 §3.1: no error code).
NO_TOKEN = "A bearer token is required."
#: The description of every ``insufficient_scope`` refusal (the ``scope`` attribute says which).
INSUFFICIENT_SCOPE = "The access token does not grant the scope this request needs."


class BearerRequestError(Exception):
    """A request that presents a bearer token the wrong way (RFC 6750 §3.1 ``invalid_request``)."""

    error = "invalid_request"
    status = 400


def bearer_token(
    request: Any, *, body_allowed: bool = False, query_allowed: bool | None = None
) -> str | None:
    """The bearer token of a Django ``request``, or ``None`` when it presents none.

    - RFC 6750 §2.1: ``Authorization: Bearer <b64token>``, the scheme compared case-insensitively
      (RFC 9110 §11.1), exactly one token68 after it; another scheme is not ours;
    - §2.2: the ``access_token`` field of a POST form body, where ``body_allowed`` (userinfo:
      OpenID Connect Core §5.3.1);
    - §2.3: the ``access_token`` query parameter is refused unless ``query_allowed`` (default
      ``CELLS_OIDC_RESOURCE_ALLOW_QUERY_TOKEN``; RFC 9700 §4.3.2 says never);
    - §2: one token, by one method.

    Raises :class:`BearerRequestError` for a token presented the wrong way.
    """
    if query_allowed is None:
        query_allowed = app_settings.RESOURCE_ALLOW_QUERY_TOKEN
    found: list[str] = []
    header_token = _header_token(request)
    if header_token is not None:
        found.append(header_token)
    query_values = _field_values(request, "GET", "query string")
    if query_values and not query_allowed:
        raise BearerRequestError("Send the access token in the Authorization header, not in the URL.")
    found += query_values
    if body_allowed and request.method == "POST":
        found += _field_values(request, "POST", "request body")
    if len(found) > 1:
        raise BearerRequestError("Send one access token, one way.")
    if not found:
        return None
    if header_token is None and (not found[0].isascii() or not _B64TOKEN.fullmatch(found[0])):
        raise BearerRequestError("Malformed access_token parameter.")
    return found[0]


def _header_token(request: Any) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    header = header.strip(" \t")  # RFC 9110 §5.5: optional whitespace around a field value
    scheme, _, rest = header.partition(" ")
    if not header or scheme.lower() not in ("bearer", "dpop"):  # RFC 9449 §7.1: DPoP too
        return None
    credentials = rest.lstrip(" ")
    if not credentials:
        raise BearerRequestError("The Bearer scheme needs a token.")
    if not credentials.isascii() or not _B64TOKEN.fullmatch(credentials):
        raise BearerRequestError("The Authorization header must hold exactly one bearer token.")
    return credentials


def _field_values(request: Any, attribute: str, where: str) -> list[str]:
    try:
        values = getattr(request, attribute).getlist(PARAMETER) if hasattr(request, attribute) else []
    except TooManyFieldsSent:
        # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS: an invalid_request (RFC 6750 §3.1), not the
        # site's HTML 400 page.
        raise BearerRequestError(f"The {where} has too many parameters.") from None
    return [value for value in values if value != ""]  # RFC 6749 §3.1: empty is omitted


def _quoted(value: str) -> str:
    # RFC 9110 §5.6.4 quoted-string: escape backslash and double quote, drop control characters.
    cleaned = "".join(ch for ch in value if ch == "\t" or (" " <= ch <= "~"))
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    error: str | None = None,
    description: str | None = None,
    *,
    scope: Iterable[str] | None = None,
    dpop: bool = False,
) -> str:
    """THE RFC 6750 §3 ``WWW-Authenticate`` value: ``Bearer realm="…"`` and, on a failure, the error.

    Without credentials in the request there is no error code (§3.1), hence no description;
    ``scope`` names the scopes needed on ``insufficient_scope`` (§3), sorted.
    """
    parts = [f"realm={_quoted(app_settings.RESOURCE_REALM)}"]
    if error:
        parts.append(f"error={_quoted(error)}")
        if description:
            parts.append(f"error_description={_quoted(description)}")
    if scope:
        parts.append(f"scope={_quoted(' '.join(sorted(scope)))}")
    if dpop:
        # RFC 9449 §7.1: a refusal for DPoP's sake names the error in a DPoP challenge, beside a
        # plain Bearer one (RFC 9110 §11.6.1: several challenges, comma-separated).
        from cells_oidc.internal.dpop import ALGORITHMS

        dpop_parts = [parts[0], f"algs={_quoted(' '.join(ALGORITHMS))}", *parts[1:]]
        return "DPoP " + ", ".join(dpop_parts) + ", Bearer " + parts[0]
    return "Bearer " + ", ".join(parts)


def refusal(
    status: int,
    error: str | None,
    description: str,
    *,
    scope: Iterable[str] | None = None,
    dpop: bool = False,
) -> JsonResponse:
    """A refusal of a bearer request: the :func:`challenge` and an RFC 6749 §5.2-style JSON body.

    The body always names an error (``invalid_token`` for a request without a token, whose
    challenge names none, §3.1) and is never cached.
    """
    response = JsonResponse(
        {"error": error or "invalid_token", "error_description": description}, status=status
    )
    response["WWW-Authenticate"] = challenge(error, description, scope=scope, dpop=dpop)
    response["Cache-Control"] = "no-store"
    return response


def invalid_token_description(reason: str) -> str:
    """The ``error_description`` of an ``invalid_token`` refusal: ``reason`` is the rule the token
    broke (:attr:`cells_oidc.internal.jws.InvalidToken.reason`)."""
    metrics.verification_failed(reason)  # every refusal of a bearer token passes here
    return f"Invalid bearer token: {reason}."


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` as a frozenset, each checked against the RFC 6749 §3.3 syntax (ValueError)."""
    if isinstance(scopes, str):
        scopes = scopes.split()
    result = frozenset(scopes)
    for scope in result:
        if not isinstance(scope, str) or not SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"not a scope token: {scope!r}")
    return result
