"""Pushed authorization requests (RFC 9126): storing a validated request and spending its ``request_uri``.

The PAR endpoint (:class:`cells_oidc.internal.views.par.PushedAuthorizationView`) validates a
request exactly as the authorization endpoint would, then :func:`push` keeps it in the shared
cache under ``urn:ietf:params:oauth:request_uri:<random>`` for ``CELLS_OIDC_PAR_LIFETIME``
seconds. The authorization endpoint :func:`consume`\\ s it once: the cache's ``delete`` answers
whether this request removed the entry, so of two concurrent uses only one gets it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from django.core.cache import caches
from django.http import QueryDict

from cells_oidc.conf import app_settings
from cells_oidc.internal.cache import isolated

__all__ = ["REQUEST_URI_PREFIX", "RequestUriError", "consume", "push"]

#: RFC 9126 §2.2: the URN namespace of a pushed request's reference.
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
_KEY_PREFIX = "cells_oidc:par:"


class RequestUriError(Exception):
    """A ``request_uri`` that cannot be used: unknown, expired, used, or another client's."""


def _key(request_uri: str) -> str:
    # Hashed: the reference is a bearer secret for its lifetime; the cache key holds no copy.
    return _KEY_PREFIX + hashlib.sha256(request_uri.encode("utf-8")).hexdigest()


def push(client_id: str, params: QueryDict) -> tuple[str, int]:
    """Store the validated authorization request ``params`` of ``client_id``.

    Returns ``(request_uri, expires_in)`` (RFC 9126 §2.2)."""
    lifetime = app_settings.PAR_LIFETIME
    request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
    entry = {"client_id": client_id, "query": params.urlencode(), "exp": time.time() + lifetime}
    caches[app_settings.DPOP_CACHE].set(_key(request_uri), entry, timeout=lifetime)
    return request_uri, lifetime


def consume(request_uri: Any, client_id: Any) -> QueryDict:
    """The pushed request of ``request_uri``, spent now (RFC 9126 §4: single use); raises
    :class:`RequestUriError`. ``client_id`` must be the client that pushed it."""
    if not isinstance(request_uri, str) or not request_uri.startswith(REQUEST_URI_PREFIX):
        raise RequestUriError("unknown request_uri")
    if len(request_uri) > 200:
        raise RequestUriError("unknown request_uri")
    cache = caches[app_settings.DPOP_CACHE]
    key = _key(request_uri)
    with isolated(cache):
        entry = cache.get(key)
    if not isinstance(entry, dict):
        raise RequestUriError("unknown, expired or used request_uri")
    if entry.get("client_id") != client_id:
        # Not spent: the client it belongs to may still use it.
        raise RequestUriError("the request_uri was pushed by another client")
    with isolated(cache):
        spent = cache.delete(key)
    if not spent:
        raise RequestUriError("the request_uri was used")  # a concurrent request won
    if not isinstance(entry.get("exp"), (int, float)) or entry["exp"] <= time.time():
        raise RequestUriError("the request_uri expired")
    params = QueryDict(entry["query"], mutable=True)
    params["client_id"] = client_id  # RFC 9126 §4: the one parameter taken from outside
    params._mutable = False
    return params
