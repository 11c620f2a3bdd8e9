"""Prometheus metrics of cells-oidc, recorded with the official ``prometheus_client`` library.

Nothing here is required: without ``prometheus_client`` installed (the ``metrics`` extra) every
recording function is a no-op, and nothing is exposed until a site mounts
:func:`cells_oidc.metrics.metrics_view` itself (docs/metrics.md).

Series (names follow the Prometheus naming conventions: base units, ``_total`` counters):

``cells_oidc_http_requests_total{endpoint,status}``, ``cells_oidc_http_request_duration_seconds{endpoint}``
    per endpoint of the provider (:data:`ENDPOINTS`), by :class:`cells_oidc.metrics.MetricsMiddleware`;
``cells_oidc_tokens_issued_total{grant_type,client_id}``
    from the ``tokens_issued`` signal (:mod:`cells_oidc.signals`);
``cells_oidc_token_verification_failures_total{reason}``
    every bearer token refused (:func:`cells_oidc.internal.bearer.invalid_token_description`); the
    reasons are the fixed phrases of :class:`cells_oidc.internal.jws.InvalidToken`;
``cells_oidc_throttle_hits_total{scope}``
    every request over a throttle's limit (:class:`cells_oidc.internal.throttle.Throttled`), by rule;
``cells_oidc_signing_key_age_seconds{kid,alg}``
    the age of the key that signs new tokens, read at scrape time (:class:`KeyAgeCollector`).

Labels are bounded: endpoints and reasons are fixed lists, client ids are those registered, scopes
are the throttle rules. No label ever holds a token, a secret, a user or an IP address.

Multi-process servers (gunicorn ``-w N``): with ``PROMETHEUS_MULTIPROC_DIR`` set in the environment
before the workers start, ``prometheus_client`` writes each process's values to files there and the
view aggregates them (its multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ENDPOINTS",
    "KeyAgeCollector",
    "available",
    "connect",
    "endpoint_of",
    "observe_request",
    "throttle_hit",
    "tokens_issued",
    "verification_failed",
]

#: The ``endpoint`` label of each URL name of cells_oidc.urls (other URLs are not measured).
ENDPOINTS: dict[str, str] = {
    "issuer": "discovery",
    "discovery": "discovery",
    "jwks": "jwks",
    "authorize": "authorize",
    "token": "token",
    "revoke": "revoke",
    "introspect": "introspect",
    "userinfo": "userinfo",
    "logout": "logout",
    "login": "login",
    "device-authorization": "device",
    "device": "device_verification",
    "device-confirm": "device_verification",
}

#: A reason label is one of the fixed phrases of InvalidToken; anything else is folded into "other".
_REASON_RE = re.compile(r"[A-Za-z][A-Za-z0-9 ()'_-]{0,79}")

_metrics: dict[str, Any] | None = None


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` (or the older lower-case name) when set: multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def _get() -> dict[str, Any] | None:
    """The metric objects, created (and registered in the default registry) on first use."""
    global _metrics
    if _metrics is not None:
        return _metrics
    try:
        from prometheus_client import REGISTRY, Counter, Histogram
    except ImportError:
        return None
    _metrics = {
        "requests": Counter(
            "cells_oidc_http_requests",
            "HTTP requests answered by the OpenID provider, by endpoint and status code.",
            ["endpoint", "status"],
        ),
        "duration": Histogram(
            "cells_oidc_http_request_duration_seconds",
            "Time to answer a request of the OpenID provider, by endpoint.",
            ["endpoint"],
        ),
        "tokens": Counter(
            "cells_oidc_tokens_issued",
            "Token responses of the token endpoint, by grant type and client.",
            ["grant_type", "client_id"],
        ),
        "failures": Counter(
            "cells_oidc_token_verification_failures",
            "Bearer tokens refused, by the rule they broke.",
            ["reason"],
        ),
        "throttle": Counter(
            "cells_oidc_throttle_hits",
            "Requests refused by a throttle (429 or lockout), by throttle rule.",
            ["scope"],
        ),
    }
    if not multiprocess_dir():
        # In multiprocess mode the view builds its own registry (custom collectors are per scrape).
        try:
            REGISTRY.register(KeyAgeCollector())
        except ValueError:  # already registered (a module reloaded in tests)
            pass
    return _metrics


def endpoint_of(request: Any) -> str | None:
    """The ``endpoint`` label of a request of cells-oidc's URLs, or ``None`` for any other."""
    match = getattr(request, "resolver_match", None)
    if match is None or "cells_oidc" not in match.app_names:
        return None
    return ENDPOINTS.get(match.url_name or "")


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    """Count one answered request of ``endpoint`` and its duration."""
    metrics = _get()
    if metrics is None:
        return
    metrics["requests"].labels(endpoint=endpoint, status=str(int(status))).inc()
    metrics["duration"].labels(endpoint=endpoint).observe(max(0.0, seconds))


def tokens_issued(sender: Any = None, *, grant_type: str = "", client: Any = None, **kwargs: Any) -> None:
    """Receiver of :data:`cells_oidc.signals.tokens_issued`."""
    metrics = _get()
    if metrics is None:
        return
    client_id = getattr(client, "client_id", "") or ""
    metrics["tokens"].labels(grant_type=str(grant_type or "")[:100], client_id=str(client_id)[:100]).inc()


def verification_failed(reason: str) -> None:
    """Count a refused bearer token; ``reason`` is :attr:`InvalidToken.reason`."""
    try:
        metrics = _get()
        if metrics is None:
            return
        label = reason if isinstance(reason, str) and _REASON_RE.fullmatch(reason) else "other"
        metrics["failures"].labels(reason=label).inc()
    except Exception:  # noqa: BLE001 - a metric must never change an answer
        logger.exception("Could not count a verification failure.")


def throttle_hit(scope: str) -> None:
    """Count a request over the limit of the throttle rule ``scope``."""
    try:
        metrics = _get()
        if metrics is None:
            return
        metrics["throttle"].labels(scope=str(scope)[:50]).inc()
    except Exception:  # noqa: BLE001
        logger.exception("Could not count a throttle hit.")


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def current_signing_keys() -> list[tuple[str, str, float | None]]:
    """``(kid, alg, since)`` of each key that signs new tokens, ``since`` an epoch time or ``None``.

    Read through :func:`cells_oidc.internal.keys.key_set` (its current signers); the time a key
    started signing comes from its database row (``activated_at``, else ``created_at``). A key of the
    PEM settings has no such time: ``None``.
    """
    from cells_oidc.internal import keys

    signers = list(keys.key_set().signers.values())
    found: dict[str, tuple[str, str, float | None]] = {}
    for key in signers:
        found[key.kid] = (key.kid, str(getattr(key, "algorithm", "") or ""), None)
    database_kids = [key.kid for key in signers if not getattr(key, "from_settings", False)]
    if database_kids:
        from cells_oidc import models

        row_model = getattr(models, "SigningKey", None)
        if row_model is not None:
            for row in row_model.objects.filter(kid__in=database_kids):
                since = _timestamp(getattr(row, "activated_at", None)) or _timestamp(
                    getattr(row, "created_at", None)
                )
                kid, alg, _none = found[row.kid]
                found[row.kid] = (kid, alg, since)
    return list(found.values())


def key_ages() -> list[tuple[str, str, float]]:
    """``(kid, alg, age in seconds)`` of the current signing keys whose start is known.

    Never raises: with no usable key store (a broken setting, a database down) there is no series
    rather than a failed scrape (``/readyz`` reports the key).
    """
    try:
        current = current_signing_keys()
    except Exception:  # noqa: BLE001
        logger.warning("No current signing key for the key-age metric.", exc_info=True)
        return []
    now = time.time()
    return [(kid, alg, max(0.0, now - since)) for kid, alg, since in current if since is not None]


class KeyAgeCollector:
    """``cells_oidc_signing_key_age_seconds{kid,alg}``, read at each scrape."""

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "cells_oidc_signing_key_age_seconds",
            "Seconds since the current signing key started signing (or was created).",
            labels=["kid", "alg"],
        )
        for kid, alg, age in key_ages():
            family.add_metric([kid, alg], age)
        yield family

    def describe(self) -> Any:
        # Nothing read at registration time (no database query before the app is ready).
        return []


def connect() -> None:
    """Connect the receivers of :mod:`cells_oidc.signals` (from ``AppConfig.ready()``)."""
    from cells_oidc import signals

    signals.tokens_issued.connect(tokens_issued, dispatch_uid="cells_oidc.internal.metrics.tokens_issued")
