"""Browser sessions at the provider: when and how the user signed in, and where they are signed in.

- In the Django session: ``auth_time`` and the session id ``sid`` of the sign-in
  (:func:`on_user_logged_in`), and whether the login was made for the authorization request
  at hand (:func:`consume_fresh_login`).
- In :class:`~cells_oidc.models.UserSession`: the user's browser sessions, listed and ended on
  the account page (:func:`record_session`, :func:`forget_session`, :func:`touch`,
  :func:`active_sessions`), and the tokens issued from them (:func:`revoke_session_tokens`).

Filled by ``user_logged_in``/``user_logged_out`` receivers (connected in ``apps.py``), so it
works with any login page built on Django's authentication (ours, the admin's, a site's own).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, router
from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from cells_oidc.internal.transactions import isolated_write
from cells_oidc.models import TokenFamily, UserSession

logger = logging.getLogger("cells_oidc.account")

AUTH_TIME_KEY = "cells_oidc.auth_time"
SID_KEY = "cells_oidc.sid"
FRESH_KEY = "cells_oidc.fresh_login"
#: How long after a login its authorization request counts as confirmed by it (seconds).
FRESH_MAX_AGE = 5 * 60
#: Longest ``next`` URL remembered as the authorization request a login was made for: an
#: authorization request's URL (its query holds at most a few long parameters, such as an ID
#: token hint); a longer one is simply not remembered.
MAX_NEXT_LENGTH = 16384
#: How often, at most, a "last seen" or "last used" time is written (browser sessions here,
#: personal access tokens in :mod:`cells_oidc.internal.pat`): one UPDATE a minute, not one a request.
TOUCH_INTERVAL = timedelta(minutes=1)


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


# ---- the user's browser sessions (the account page) ---------------------------------------------
def session_store(session_key: str | None = None) -> Any:
    """The Django session ``session_key`` of the configured engine."""
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)


def _insert_session(key: str, fields: dict[str, Any]) -> bool:
    """INSERT the row of session ``key``; ``False`` if a row has that key already. A savepoint
    keeps the failure from poisoning a transaction around the login (none in autocommit)."""
    try:
        with isolated_write(router.db_for_write(UserSession)):
            UserSession.objects.create(session_key=key, **fields)
    except IntegrityError:
        return False
    return True


def record_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: remember this browser session of ``user``.

    Connected after :func:`on_user_logged_in`, which gives the session its ``sid``. Never breaks
    a login: a failure is logged.
    """
    session = getattr(request, "session", None)
    if request is None or session is None:
        return
    try:
        if not session.session_key:
            # Django's login() flushed the session of another user: it has no key until saved.
            session.save()
        key = session.session_key
        fields = {
            "user": user,
            "sid": session_id(request),
            "user_agent": request.headers.get("User-Agent", "")[:300],
            "last_seen": timezone.now(),
        }
        # A login gives the session a new key (Django's cycle_key, or flush for another user)
        # except when its user signs in again on the same session. A key the browser did not
        # send is new: INSERT first (an UPDATE if the row of an ended session had the key). The
        # same key: UPDATE first, INSERT if it found no row. Either way one statement as a rule
        # (Django's update_or_create read the row first, then inserted in a savepoint), and the
        # second one covers a row written between the two.
        rows = UserSession.objects.filter(session_key=key)
        if key != request.COOKIES.get(settings.SESSION_COOKIE_NAME):
            if not _insert_session(key, fields):
                rows.update(**fields)
        elif not rows.update(**fields) and not _insert_session(key, fields):
            rows.update(**fields)
    except DatabaseError:
        logger.exception("could not record the session of user %s", getattr(user, "pk", None))


def forget_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: the session is over, forget it."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        try:
            UserSession.objects.filter(session_key=key).delete()
        except DatabaseError:
            logger.exception("could not forget a session")
    # Back-Channel Logout §2.5: whatever page logged out, the session's clients are told (once).
    from cells_oidc.internal import backchannel

    backchannel.session_ended(user, {getattr(request, "session", {}).get(SID_KEY, "")})


def touch(request: HttpRequest) -> None:
    """Note that the current session was just used (at most once per :data:`TOUCH_INTERVAL`)."""
    key = request.session.session_key
    if key:
        now = timezone.now()
        UserSession.objects.filter(session_key=key, user=request.user).exclude(
            last_seen__gt=now - TOUCH_INTERVAL
        ).update(last_seen=now)


#: (marker in the User-Agent, name), first match wins: Edge and Opera also say "Chrome", Chrome
#: also says "Safari", Android also says "Linux", iOS also says "Mac OS X".
_BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("CriOS/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
]


def describe_user_agent(user_agent: str) -> str:
    """``Mozilla/5.0 (X11; Linux x86_64) … Firefox/128.0`` → ``Firefox on Linux``."""
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return str(_("%(browser)s on %(system)s") % {"browser": browser, "system": system})
    return browser or system or str(_("Unknown browser"))


def active_sessions(request: HttpRequest) -> list[UserSession]:
    """The user's sessions that still exist (rows of ended or expired sessions are removed)."""
    current = request.session.session_key
    alive, dead = [], []
    for row in UserSession.objects.filter(user=request.user).order_by("-last_seen", "-created"):
        row.device = describe_user_agent(row.user_agent)  # type: ignore[attr-defined]
        if row.session_key == current:
            row.is_current = True  # type: ignore[attr-defined]
            alive.append(row)
            continue
        data = session_store(row.session_key).load()
        if str(data.get("_auth_user_id", "")) == str(request.user.pk):
            row.is_current = False  # type: ignore[attr-defined]
            alive.append(row)
        else:
            dead.append(row.pk)
    if dead:
        UserSession.objects.filter(pk__in=dead).delete()
    alive.sort(key=lambda r: not r.is_current)  # type: ignore[attr-defined]
    return alive


def revoke_session_tokens(user: Any, sids: set[str], *, reason: str = "logout") -> None:
    """Revoke the token families of ``user`` issued from the browser sessions ``sids``
    (RFC 7009 §2.1: every token of each sign-in), as the account page and logout end a session;
    ``reason`` (``"logout"``, ``"account_page"``) goes with each ``token_revoked`` signal."""
    from cells_oidc import signals
    from cells_oidc.internal.events import emit

    sids = {sid for sid in sids if sid}
    if sids:
        from cells_oidc.internal import backchannel

        # Back-Channel Logout §2.5: a logout token for every client of these sessions.
        backchannel.session_ended(user, sids)
        live = TokenFamily.objects.of_user(user).live().filter(sid__in=sids).select_related("application")
        for family in live:
            family.revoke()
            emit(
                signals.token_revoked,
                user=user,
                client=family.application,
                kind="sign_in",
                family_id=family.pk,
                reason=reason,
            )
