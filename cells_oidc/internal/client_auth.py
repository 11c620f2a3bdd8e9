"""Client authentication: the one reader of HTTP Basic client credentials (RFC 6749 §2.3.1).

Every caller that needs the client of a request reads it here: the validator's
``authenticate_client`` (token, revocation and introspection endpoints), the device
authorization endpoint and the CORS decision of the client endpoints. One parser, so that
they all see the same client id and refuse the same malformed headers; a value that could
reach a database query (NUL, which PostgreSQL refuses with a ``DataError``) or a log (control
characters) never leaves it.

Discovery advertises :data:`TOKEN_ENDPOINT_AUTH_METHODS` and
:data:`INTROSPECTION_ENDPOINT_AUTH_METHODS` from here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "INTROSPECTION_ENDPOINT_AUTH_METHODS",
    "MAX_CREDENTIAL_LENGTH",
    "TOKEN_ENDPOINT_AUTH_METHODS",
    "basic_credentials",
    "basic_part",
    "request_basic_credentials",
]

#: RFC 6749 §2.3.1 and OpenID Connect Core §9: HTTP Basic, the body, or none (public clients).
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
#: RFC 7662 §2.1: the introspection endpoint requires an authenticated (confidential) client.
INTROSPECTION_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
#: Longest client id or secret read (DOT's columns hold 100 and 255 characters; a secret is
#: stored hashed, but nobody's is longer than this).
MAX_CREDENTIAL_LENGTH = 1024
# The base64 of two such values, form-encoded (3 characters each at worst), and the colon.
_MAX_ENCODED_LENGTH = 4 * ((2 * 3 * MAX_CREDENTIAL_LENGTH + 1 + 2) // 3)
# C0 controls and DEL: never in a client id or secret (RFC 7617 §2: no control characters).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def basic_credentials(encoded: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` of HTTP Basic credentials (the part after ``Basic``), or ``None``.

    RFC 6749 §2.3.1: the client id and secret are form-encoded (``application/x-www-form-
    urlencoded``) before they are joined by a colon and base64-encoded. ``None`` for anything
    else: not base64, not UTF-8, no colon, an empty client id, a control character (NUL
    included) or an over-long value in either part.
    """
    if not encoded or len(encoded) > _MAX_ENCODED_LENGTH:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    for value in (client_id, secret):
        if len(value) > MAX_CREDENTIAL_LENGTH or _CONTROL_RE.search(value):
            return None
    if not client_id:
        return None
    return client_id, secret


def basic_part(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization`` header value whose scheme is ``Basic``
    (case-insensitive, RFC 9110 §11.1), ``""`` when there are none, ``None`` for another scheme."""
    scheme, _sep, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    return credentials.strip()


def request_basic_credentials(request: Any) -> tuple[str, str] | None:
    """``(client_id, secret)`` of the ``Authorization: Basic`` header of a Django request, or ``None``."""
    return basic_credentials(basic_part(request.headers.get("Authorization")))
