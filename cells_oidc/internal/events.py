"""Sending the signals of :mod:`cells_oidc.signals`: after commit, robustly, with the request's facts.

The HTTP request that causes an event is not always at hand where the event happens (oauthlib's
validator callbacks see oauthlib's request, not Django's), so the views bind the facts of the
current request (IP, user agent, request id) to a context variable with :func:`bound`; :func:`emit`
reads them from there unless the caller passes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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
