"""The audit trail: every signal of :mod:`cells_oidc.signals` as a row and a structured log record.

The receivers are connected by :func:`connect` (``apps.py``); the signals are sent after the event
committed and robustly (:mod:`cells_oidc.internal.events`), so an audit write that fails is logged
and never undoes or breaks the action. For each event:

- a log record on the logger ``cells_oidc.audit`` (INFO; WARNING for the events that mean an
  attack or a lock: ``code_replayed``, ``refresh_reuse_detected``, ``sign_in_locked_out``), whose
  ``extra`` holds the fields :data:`LOG_FIELDS` (docs/audit.md);
- a :class:`~cells_oidc.models.AuditEvent` row, unless ``CELLS_OIDC_AUDIT_ENABLED`` is off.

Never a token, a code, a secret or a password: the signals carry none, and :func:`details` keeps
only JSON scalars of the documented keyword arguments.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from datetime import date, datetime
from typing import Any

from django.db import DatabaseError, router
from django.dispatch import Signal
from django.utils import timezone

from cells_oidc.internal.transactions import isolated_write

__all__ = ["LOG_FIELDS", "connect", "details", "record"]

logger = logging.getLogger("cells_oidc.audit")

#: The keys of a log record's ``extra`` (also the columns of the table).
LOG_FIELDS = ("event", "time", "user_id", "login", "client_id", "ip", "user_agent", "request_id", "details")
#: Keyword arguments every signal has, stored in their own columns rather than in ``details``.
COMMON = frozenset({"signal", "sender", "user", "client", "ip", "user_agent", "request_id"})
#: Events logged at WARNING: an attack was seen, or a lock began.
WARNINGS = frozenset({"code_replayed", "refresh_reuse_detected", "sign_in_locked_out"})
#: ``tokens_issued`` of a refresh is recorded as ``tokens_refreshed`` (one filter in the admin).
REFRESHED = "tokens_refreshed"
#: Longest text kept of one value in ``details``.
VALUE_MAX = 500


def _json(value: Any) -> Any:
    """A JSON-safe, bounded form of a signal's value (a user becomes their login)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "get_username"):
        return value.get_username()
    if hasattr(value, "client_id"):
        return value.client_id
    return str(value)[:VALUE_MAX]


def details(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The event's own keyword arguments (``scope``, ``grant_type``, ``family_id``, ``reason`` …)."""
    return {name: _json(value) for name, value in sorted(kwargs.items()) if name not in COMMON}


def _ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value))) if value else None
    except ValueError:
        return None  # not an address (a misconfigured proxy): not stored, never an error


def _user_of_login(login: str) -> Any:
    """The account a failed sign-in's ``login`` names (its username, or its unique email), so that
    the account page can show its owner the failed attempts; ``None`` when none or ambiguous."""
    from django.contrib.auth import get_user_model

    if not login:
        return None
    model = get_user_model()
    manager = model._default_manager
    user = manager.filter(**{model.USERNAME_FIELD: login}).first()
    if user is None and "@" in login and hasattr(model, "email"):
        matches = list(manager.filter(email__iexact=login)[:2])
        user = matches[0] if len(matches) == 1 else None
    return user


def record(signal: Signal, **kwargs: Any) -> None:
    """Receiver of every signal: one log record and (when enabled) one row."""
    from cells_oidc import signals
    from cells_oidc.conf import app_settings

    event = _name_of(signal)
    if event == "tokens_issued" and kwargs.get("grant_type") == "refresh_token":
        event = REFRESHED
    user = kwargs.get("user")
    client = kwargs.get("client")
    login = user.get_username() if user is not None else str(kwargs.get("login") or "")[:150]
    extra = details(kwargs)
    client_id = client.client_id if client is not None else str(extra.get("client_id") or "")[:100]
    fields = {
        "event": event,
        "time": timezone.now(),
        "user_id": getattr(user, "pk", None),
        "login": login,
        "client_id": client_id,
        "ip": _ip(kwargs.get("ip")),
        "user_agent": str(kwargs.get("user_agent") or "")[:300],
        "request_id": str(kwargs.get("request_id") or "")[:64],
        "details": extra,
    }
    logger.log(
        logging.WARNING if event in WARNINGS else logging.INFO,
        "%s user=%s client=%s ip=%s request_id=%s %s",
        event,
        login or "-",
        client_id or "-",
        fields["ip"] or "-",
        fields["request_id"] or "-",
        extra,
        extra={**fields, "time": fields["time"].isoformat()},
    )
    if not app_settings.AUDIT_ENABLED:
        return
    if user is None and signal in (signals.sign_in_failed, signals.sign_in_locked_out):
        user = _user_of_login(login)
    from cells_oidc.models import AuditEvent

    row = {
        "time": fields["time"],
        "event": event,
        "user": user,
        "login": login,
        "application": client if getattr(client, "pk", None) else None,
        "client_id": client_id,
        "ip": fields["ip"],
        "user_agent": fields["user_agent"],
        "request_id": fields["request_id"],
        "details": extra,
    }
    try:
        # One INSERT: in autocommit (the signal is sent after the commit) without a BEGIN and a
        # COMMIT of its own; inside a transaction of the site's, in a savepoint.
        with isolated_write(router.db_for_write(AuditEvent)):
            AuditEvent.objects.create(**row)
    except DatabaseError:
        # The log record above stands; the action that caused the event is done already.
        logger.exception("The audit event %s could not be stored.", event)


def _name_of(signal: Signal) -> str:
    from cells_oidc import signals

    for name in signals.__all__:
        if getattr(signals, name) is signal:
            return name
    return "unknown"


def connect() -> None:
    """Connect :func:`record` to every signal of :mod:`cells_oidc.signals` (``apps.py``)."""
    from cells_oidc import signals

    for name in signals.__all__:
        getattr(signals, name).connect(record, dispatch_uid=f"cells_oidc.audit.{name}")
