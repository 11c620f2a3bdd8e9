"""Sending the signals of :mod:`cells_oidc.signals`: after commit, robustly, with the request's facts.

The HTTP request that causes an event is not always at hand where the event happens (oauthlib's
validator callbacks see oauthlib's request, not Django's), so the views bind the facts of the
current request (IP, user agent, request id) to a context variable with :func:`bound`; :func:`emit`
reads them from there unless the caller passes them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest

logger = logging.getLogger("cells_oidc.events")

USER_AGENT_MAX = 300


@dataclass(frozen=True)
class RequestFacts:
    """What an event records of the request that caused it (never a credential)."""

    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def of(cls, request: HttpRequest) -> RequestFacts:
        from cells_oidc.internal.pages import request_id

        return cls(
            ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=(request.headers.get("User-Agent") or "")[:USER_AGENT_MAX],
            request_id=request_id(request),
        )


_current: ContextVar[RequestFacts | None] = ContextVar("cells_oidc_request_facts", default=None)


@contextlib.contextmanager
def bound(request: HttpRequest) -> Iterator[RequestFacts]:
    """Make ``request``'s facts those of every event emitted inside the block."""
    facts = RequestFacts.of(request)
    token = _current.set(facts)
    try:
        yield facts
    finally:
        _current.reset(token)


def current() -> RequestFacts:
    return _current.get() or RequestFacts()


def emit(
    signal: Signal, *, request: HttpRequest | None = None, using: str | None = None, **kwargs: Any
) -> None:
    """Send ``signal`` once the current transaction commits (at once outside a transaction).

    ``user`` and ``client`` default to ``None``; ``ip``, ``user_agent`` and ``request_id`` come from
    ``request`` when given, else from the request bound with :func:`bound`.
    """
    facts = RequestFacts.of(request) if request is not None else current()
    kwargs.setdefault("user", None)
    kwargs.setdefault("client", None)
    kwargs.setdefault("ip", facts.ip)
    kwargs.setdefault("user_agent", facts.user_agent)
    kwargs.setdefault("request_id", facts.request_id)

    def send() -> None:
        for receiver, result in signal.send_robust(sender=None, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "A receiver of a cells-oidc signal failed: %r",
                    receiver,
                    exc_info=(type(result), result, result.__traceback__),
                )

    transaction.on_commit(send, using=using)


def binds_request(dispatch: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view's ``dispatch`` so that the events it causes carry its request's facts."""

    @functools.wraps(dispatch)
    def wrapper(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        with bound(request):
            return dispatch(self, request, *args, **kwargs)

    return wrapper


# ---- bridges from Django's signals (connected in apps.py) ---------------------------------------
LOGIN_MAX = 150


def typed_login(request: HttpRequest | None, credentials: dict[str, Any] | None = None) -> str:
    """What was typed as the login: the form's ``username`` field, else the (cleansed) credentials'
    ``username`` (Django masks every credential that looks like a secret), at most 150 characters."""
    typed: Any = None
    if request is not None and request.method == "POST":
        try:
            typed = request.POST.get("username")
        except Exception:  # noqa: BLE001 - a malformed body: fall back to the credentials
            typed = None
    if not typed:
        typed = (credentials or {}).get("username") or ""
    return str(typed)[:LOGIN_MAX]


def on_user_logged_in(sender: Any, request: HttpRequest | None = None, user: Any = None, **kw: Any) -> None:
    """``user_logged_in`` (our login page, the admin's, any ``login()``) → ``sign_in_succeeded``."""
    from cells_oidc import signals

    emit(signals.sign_in_succeeded, request=request, user=user, method="password")


def on_user_login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: HttpRequest | None = None, **kw: Any
) -> None:
    """``user_login_failed`` → ``sign_in_failed`` (``user`` stays ``None``: no account enumeration)."""
    from cells_oidc import signals

    emit(signals.sign_in_failed, request=request, login=typed_login(request, credentials))


def on_user_logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **kw: Any) -> None:
    """``user_logged_out`` (RP-initiated logout, the account page, the admin) → ``signed_out``."""
    from cells_oidc import signals
    from cells_oidc.internal.sessions import SID_KEY

    if user is None:
        return  # an anonymous visitor "logging out": no session ended
    sid = getattr(request, "session", {}).get(SID_KEY, "") if request is not None else ""
    emit(signals.signed_out, request=request, user=user, sid=sid if isinstance(sid, str) else "")


def on_client_saved(sender: Any, instance: Any, created: bool = False, **kw: Any) -> None:
    """``post_save`` of DOT's application (admin, commands, ``loaddata``) → ``client_changed``."""
    from cells_oidc import signals

    action = "created" if created else "changed"
    emit(signals.client_changed, client=instance, action=action, client_id=instance.client_id)


def on_client_deleted(sender: Any, instance: Any, **kw: Any) -> None:
    """``post_delete`` of DOT's application → ``client_changed`` (``client`` is ``None``: the row is
    gone; ``client_id`` names it)."""
    from cells_oidc import signals

    emit(signals.client_changed, action="deleted", client_id=instance.client_id)
