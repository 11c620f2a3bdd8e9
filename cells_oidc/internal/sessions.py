"""What the provider remembers in the browser session: when and how the user signed in.

Filled by a ``user_logged_in`` receiver, so it works with any login page built on Django's
authentication (ours, the admin's, a site's own).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

AUTH_TIME_KEY = "cells_oidc.auth_time"
SID_KEY = "cells_oidc.sid"
FRESH_KEY = "cells_oidc.fresh_login"
#: How long after a login its authorization request counts as confirmed by it (seconds).
FRESH_MAX_AGE = 5 * 60
MAX_NEXT_LENGTH = 16384


def on_user_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Record ``auth_time`` and a new session id (``sid``) at every login."""
    if request is None or not hasattr(request, "session"):
        return
    request.session[AUTH_TIME_KEY] = int(time.time())
    request.session[SID_KEY] = secrets.token_urlsafe(24)
    request.session.pop(FRESH_KEY, None)
    next_url = request.POST.get("next") or request.GET.get("next")
    if (
        isinstance(next_url, str)
        and len(next_url) <= MAX_NEXT_LENGTH
        and url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()})
    ):
        # The authorization request this login was made for needs no further confirmation.
        request.session[FRESH_KEY] = [next_url, int(time.time())]


def consume_fresh_login(request: HttpRequest) -> bool:
    """Whether the user signed in just now, for exactly this request (forgotten once asked).

    "Just now" is :data:`FRESH_MAX_AGE` seconds: a login whose redirect was not followed
    then must not silently approve the same request later (Keycloak likewise expires an
    authentication session that was not completed).
    """
    marked = request.session.pop(FRESH_KEY, None)
    if not isinstance(marked, (list, tuple)) or len(marked) != 2:
        return False
    next_url, when = marked
    if not isinstance(when, int) or not 0 <= time.time() - when <= FRESH_MAX_AGE:
        return False
    return next_url == request.get_full_path()


def auth_time(request: HttpRequest) -> int:
    """When the user of this session authenticated (OpenID Connect Core §2 ``auth_time``)."""
    recorded = request.session.get(AUTH_TIME_KEY)
    if isinstance(recorded, int):
        return recorded
    last_login = getattr(request.user, "last_login", None)
    return int(last_login.timestamp()) if last_login else int(time.time())


def session_id(request: HttpRequest) -> str:
    """The ``sid`` of this browser session at the provider (created on first use)."""
    sid = request.session.get(SID_KEY)
    if not isinstance(sid, str):
        sid = secrets.token_urlsafe(24)
        request.session[SID_KEY] = sid
    return sid
