"""The one throttle of cells-oidc: fixed-window counters in a cache every process shares.

Every limit of the app goes through here (docs/security.md, "Throttling"): failed sign-ins per
typed login and per client IP, token and introspection requests per client and IP, refused
personal access tokens per IP, wrong device user codes per user and browser session. The rules
and their limits are ``CELLS_OIDC_THROTTLES`` (:attr:`cells_oidc.conf.AppSettings.THROTTLES`).

A counter is one cache key per rule, identity and window (``window = now // seconds``). The
caches of :mod:`cells_oidc.caches` count all of a request's counters at once and exactly (Redis:
one ``MULTI``; the database cache: one transaction that locks them); any other cache creates a
counter with ``cache.add`` (atomic: Redis ``SET NX``, an ``INSERT`` of the database cache) and
raises it with ``cache.incr`` (atomic on Redis and Memcached; a read and a write on Django's own
database cache and the file cache, where concurrent failures may be under-counted by the few that
race). A fixed window lets
a client spend up to twice a limit across a window boundary; the windows are short and the limits
low enough that this does not matter for password guessing.

Cache down: :class:`ThrottleUnavailable` (answered 503 ``temporarily_unavailable`` by
:class:`cells_oidc.middleware.ProviderMiddleware`) unless ``CELLS_OIDC_THROTTLE_FAIL_OPEN`` lets
the request through; the failure is logged either way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.http import HttpRequest

from cells_oidc.conf import app_settings
from cells_oidc.internal import metrics
from cells_oidc.internal.cache import isolated

__all__ = [
    "AttemptCount",
    "LoginAttempt",
    "Rule",
    "ThrottleUnavailable",
    "attempt_abandoned",
    "attempt_failed",
    "attempt_succeeded",
    "Throttled",
    "check",
    "client_ip",
    "consume",
    "consume_many",
    "count_attempt",
    "hit",
    "login_attempt",
    "login_failed",
    "login_succeeded",
    "reset",
    "rule",
    "take_back",
    "unlock",
]

logger = logging.getLogger("cells_oidc.throttle")

KEY_PREFIX = "cells_oidc:throttle:"


@dataclass(frozen=True)
class Rule:
    """A limit: at most ``limit`` events per identity in each ``window`` seconds."""

    name: str
    limit: int
    window: int


class Throttled(Exception):
    """An identity is over the limit of ``rule``: answer 429 with ``Retry-After``."""

    def __init__(self, rule: Rule, retry_after: int) -> None:
        super().__init__(f"{rule.name}: over {rule.limit} per {rule.window} s")
        self.rule = rule
        self.retry_after = max(1, retry_after)
        metrics.throttle_hit(rule.name)  # cells_oidc_throttle_hits_total{scope}


class ThrottleUnavailable(Exception):
    """The throttle cache cannot be reached and the throttles fail closed: answer 503."""


def rule(name: str) -> Rule:
    limit, window = app_settings.THROTTLES[name]
    return Rule(name, limit, window)


def _cache() -> Any:
    from django.core.cache import caches

    return caches[app_settings.THROTTLE_CACHE]


def _key(rule: Rule, identity: str, now: float) -> tuple[str, int]:
    """The counter's key in the current window, and the seconds left in that window."""
    index = int(now // rule.window)
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{KEY_PREFIX}{rule.name}:{digest}:{index}", int((index + 1) * rule.window - now) + 1


def _unavailable(exc: Exception) -> None:
    logger.error("The throttle cache is unavailable (%s: %s).", type(exc).__name__, exc)
    if not app_settings.THROTTLE_FAIL_OPEN:
        raise ThrottleUnavailable(str(exc)) from exc


def count(rule: Rule, identity: str) -> tuple[int, int]:
    """``(events so far, seconds until the window ends)`` of ``identity``."""
    key, left = _key(rule, identity, time.time())
    try:
        with isolated(_cache()) as cache:
            return int(cache.get(key) or 0), left
    except Exception as exc:  # noqa: BLE001 - any backend error (Redis down, missing table …)
        _unavailable(exc)
        return 0, left


def check(rule: Rule, identity: str) -> None:
    """Raise :class:`Throttled` when ``identity`` already reached the limit of ``rule``."""
    events, left = count(rule, identity)
    if events >= rule.limit:
        raise Throttled(rule, left)


def _count_events(counters: list[tuple[str, int]]) -> list[int]:
    """Count one event on each ``(key, seconds to live)`` counter; their new values. A cache of
    :mod:`cells_oidc.caches` counts them all at once (one Redis round trip, one database
    transaction); any other with ``add`` then ``incr``. Raises what the backend raises."""
    with isolated(_cache()) as cache:
        if hasattr(cache, "incr_counters"):
            return [int(value) for value in cache.incr_counters(counters)]
        counts = []
        for key, timeout in counters:
            if cache.add(key, 1, timeout):
                counts.append(1)
                continue
            try:
                counts.append(int(cache.incr(key)))
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout)
                counts.append(1)
        return counts


def _uncount_events(counters: list[tuple[str, int]]) -> None:
    """Take back one event from each ``(key, seconds to live)`` counter (an attempt counted before
    it was known to be a failure, that was not one). Raises what the backend raises."""
    with isolated(_cache()) as cache:
        if hasattr(cache, "incr_counters"):
            cache.incr_counters(counters, delta=-1)
            return
        for key, _timeout in counters:
            try:
                cache.decr(key)
            except ValueError:  # the window's counter is gone: nothing to take back
                pass


def hit(rule: Rule, identity: str) -> int:
    """Count one event of ``identity``; return the count in this window (0 when failing open)."""
    key, left = _key(rule, identity, time.time())
    try:
        return _count_events([(key, left + 5)])[0]
    except Exception as exc:  # noqa: BLE001 - any backend error (Redis down, missing table …)
        _unavailable(exc)
        return 0


def consume(rule: Rule, identity: str) -> None:
    """Count a request of ``identity`` and raise :class:`Throttled` past the limit (rate limits)."""
    consume_many([(rule, identity)])


def consume_many(limits: Iterable[tuple[Rule, str]]) -> None:
    """:func:`consume` on every ``(rule, identity)`` of one request, counted together."""
    limits = list(limits)
    now = time.time()
    keys = [_key(rule_, identity, now) for rule_, identity in limits]
    try:
        counts = _count_events([(key, left + 5) for key, left in keys])
    except Exception as exc:  # noqa: BLE001
        _unavailable(exc)
        return
    for (rule_, _identity), (_counter, left), events in zip(limits, keys, counts, strict=True):
        if events > rule_.limit:
            raise Throttled(rule_, left)


def reset(rule: Rule, identity: str) -> None:
    """Forget the events of ``identity`` in the current window."""
    key, _left = _key(rule, identity, time.time())
    try:
        _cache().delete(key)
    except Exception as exc:  # noqa: BLE001
        _unavailable(exc)


# ---- the client ----------------------------------------------------------------------------------
def client_ip(request: HttpRequest) -> str:
    """The client's address: ``REMOTE_ADDR``, or the trusted proxy's header
    (``CELLS_OIDC_CLIENT_IP_HEADER``, ``CELLS_OIDC_TRUSTED_PROXY_COUNT`` entries from the right).

    IPv6 addresses count per /64 (one host usually holds a whole /64, and could otherwise take a
    new address for every guess). Anything unparsable is one shared identity, ``"unknown"``.
    """
    value = request.META.get("REMOTE_ADDR", "")
    header = app_settings.CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "")
        parts = [part.strip() for part in forwarded.split(",") if part.strip()]
        if parts:
            value = parts[-min(app_settings.TRUSTED_PROXY_COUNT, len(parts))]
    return ip_identity(value)


def ip_identity(value: str) -> str:
    """The throttle identity of an address (IPv6 per /64), ``"unknown"`` when unparsable."""
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return "unknown"
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


def normalize_login(login: object) -> str:
    """The identity of a typed login: stripped and case-folded, at most 150 characters."""
    return str(login or "").strip().casefold()[:150]


# ---- sign-in (the provider's login page, the Django admin's, any authenticate(request=…)) ---------
class AttemptCount(NamedTuple):
    """Where an attempt was counted: ``rule`` on ``identity``, the window's ``key`` (kept
    ``seconds`` more), and the ``count`` it made."""

    rule: Rule
    identity: str
    key: str
    seconds: int
    count: int


def count_attempt(limits: Iterable[tuple[Rule, str]]) -> list[AttemptCount] | None:
    """Count an attempt on each ``(rule, identity)`` **before** it is checked (a password, a user
    code), and raise :class:`Throttled` when that makes one over its limit.

    A check made before any of a burst of attempts had failed would let them all through; counted
    first, parallel attempts each take their place in the count (atomic on the caches of
    :mod:`cells_oidc.caches`), so no burst gets more than the limit. A refused attempt stays
    counted only where it is one more over a limit: a locked identity must not lock the others it
    was counted with (a locked IP the accounts it names, a locked account its users' IP). The
    caller takes back (:func:`take_back`) what turns out not to be a failure. ``None`` when the
    cache is down and the throttles fail open.
    """
    limits = list(limits)
    now = time.time()
    keys = [_key(current, identity, now) for current, identity in limits]
    try:
        counts = _count_events([(key, left + 5) for key, left in keys])
    except Exception as exc:  # noqa: BLE001 - any backend error (Redis down, missing table …)
        _unavailable(exc)
        return None
    counters = [
        AttemptCount(current, identity, key, left + 5, count)
        for (current, identity), (key, left), count in zip(limits, keys, counts, strict=True)
    ]
    over = [counted for counted in counters if counted.count > counted.rule.limit]
    if over:
        take_back([counted for counted in counters if counted.count <= counted.rule.limit])
        raise Throttled(over[0].rule, over[0].seconds - 5)
    return counters


def take_back(counters: Iterable[AttemptCount]) -> None:
    """Take an attempt back from ``counters`` (:func:`count_attempt`): it was no failure. Logged,
    never raised: a count left one too high costs no more than a failure would have."""
    entries = [(counted.key, counted.seconds) for counted in counters]
    if not entries:
        return
    try:
        _uncount_events(entries)
    except Exception as exc:  # noqa: BLE001 - any backend error
        logger.error("Could not take back an attempt (%s: %s).", type(exc).__name__, exc)


@dataclass
class LoginAttempt:
    """A sign-in attempt counted as a failure before its password is checked (:func:`login_attempt`).

    ``counters``: its counts on ``login_account`` and ``login_ip``; ``settled`` once the password was
    checked (:func:`attempt_failed`, :func:`attempt_succeeded`). One never settled (an invalid form:
    no password was checked) is taken back by :func:`attempt_abandoned`.
    """

    login: str
    counters: list[AttemptCount]
    settled: bool = False

    def counted(self, name: str) -> list[AttemptCount]:
        return [counted for counted in self.counters if counted.rule.name == name]


def login_attempt(request: HttpRequest, login: object) -> LoginAttempt | None:
    """Count a sign-in attempt of ``login`` from the client's IP before its password is checked
    (:func:`count_attempt`); raise :class:`Throttled` when its login or its IP is locked.

    A locked login is refused before its password is looked at, whatever the account: the same
    answer whether it exists or not, and the right password does not help. The attempt is then
    settled by the sign-in's outcome: a failure stays counted, a success clears the login's
    failures and takes the attempt back from the IP's count. ``None`` when the cache is down and
    the throttles fail open.
    """
    limits = [(rule("login_account"), normalize_login(login)), (rule("login_ip"), client_ip(request))]
    counters = count_attempt(limits)
    return None if counters is None else LoginAttempt(login=str(login or ""), counters=counters)


def attempt_failed(request: HttpRequest, attempt: LoginAttempt) -> None:
    """The password of ``attempt`` was wrong: it stays counted; a lockout begins when it was the
    limit's last allowed failure (logged, ``sign_in_locked_out``)."""
    attempt.settled = True
    for counted in attempt.counters:
        if counted.count == counted.rule.limit:
            _lockout_begins(request, attempt.login, counted.rule, counted.identity)


def attempt_succeeded(request: HttpRequest, attempt: LoginAttempt) -> None:
    """The sign-in of ``attempt`` succeeded: its login's failures are cleared and the attempt is
    taken back from its IP's count (a success is not a failure of the address)."""
    attempt.settled = True
    reset(rule("login_account"), normalize_login(attempt.login))
    take_back(attempt.counted("login_ip"))


def attempt_abandoned(attempt: LoginAttempt) -> None:
    """No password was checked (an invalid form, a CSRF failure, an error): the attempt is taken
    back from both counts."""
    if not attempt.settled:
        attempt.settled = True
        take_back(attempt.counters)


def login_failed(request: HttpRequest, login: object) -> None:
    """Count a failed sign-in of ``login`` from the client's IP; log a lockout when one begins (a
    login view of the site's own, whose attempts :func:`login_attempt` did not count first)."""
    ip = client_ip(request)
    typed = normalize_login(login)
    for current, identity in ((rule("login_account"), typed), (rule("login_ip"), ip)):
        if hit(current, identity) == current.limit:
            _lockout_begins(request, login, current, identity)


def _lockout_begins(request: HttpRequest, login: object, current: Rule, identity: str) -> None:
    """A lock of ``current`` on ``identity`` begins: ``sign_in_locked_out`` and the audit log."""
    _locked_out(request, login, current, identity)
    # The audit trail of lockouts: one record when a lock begins.
    logger.warning(
        "Sign-in locked: %s limit reached (%d failures in %d s) for login %r from %s.",
        current.name,
        current.limit,
        current.window,
        normalize_login(login)[:64],
        client_ip(request),
    )


def _locked_out(request: HttpRequest, login: object, current: Rule, identity: str) -> None:
    """Send ``sign_in_locked_out``: a lock of ``current`` on ``identity`` begins now."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    from cells_oidc import signals
    from cells_oidc.internal.events import emit

    left = _key(current, identity, time.time())[1]
    until = datetime.now(dt_timezone.utc) + timedelta(seconds=left)
    emit(
        signals.sign_in_locked_out,
        request=request,
        login=str(login or "")[:150],
        until=until,
        rule=current.name,
    )


def login_succeeded(request: HttpRequest, login: object) -> None:
    """A successful sign-in clears the failures of its login (not those of the IP)."""
    reset(rule("login_account"), normalize_login(login))


def unlock(*, logins: Iterable[str] = (), ips: Iterable[str] = ()) -> None:
    """Lift the sign-in locks of ``logins`` and ``ips`` (the admin action and the command)."""
    for login in logins:
        reset(rule("login_account"), normalize_login(login))
        logger.warning("Sign-in unlocked for login %r.", normalize_login(login)[:64])
    for ip in ips:
        reset(rule("login_ip"), ip_identity(ip))
        logger.warning("Sign-in unlocked for IP %s.", ip_identity(ip))
