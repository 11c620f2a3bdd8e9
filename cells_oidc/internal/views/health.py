"""Liveness and readiness probes (docs/deploy.md "Health checks").

- ``healthz``: the process answers; no I/O at all (a liveness probe must not restart a worker
  because PostgreSQL is down).
- ``readyz``: this process can serve: the database answers ``SELECT 1``, the throttle and
  revocation caches take a write and a read, the signing key loads, and no revoked access token
  failed to reach the deny-list recently (``READY_WRITE_FAILURE_SECONDS``; that record is per
  process). 200 ``{"status": "ready"}`` or 503 ``{"status": "unavailable"}``, with one word per
  check and never an error message (no hosts, no secrets).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required

from cells_oidc.conf import app_settings

logger = logging.getLogger("cells_oidc.health")

#: A deny-list write failure this recent makes the process not ready.
READY_WRITE_FAILURE_SECONDS = 300


def _answer(body: dict[str, Any], status: int = 200) -> HttpResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


@method_decorator(login_not_required, name="dispatch")
class LivenessView(View):
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return _answer({"status": "ok"})


def check_database() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_caches() -> None:
    from django.core.cache import caches

    aliases = {app_settings.THROTTLE_CACHE, app_settings.RESOURCE_REVOCATION_CACHE}
    for alias in sorted(aliases):
        cache = caches[alias]
        key = f"cells_oidc:readyz:{secrets.token_hex(8)}"
        cache.set(key, 1, 10)
        if cache.get(key) != 1:
            raise RuntimeError(f"cache {alias!r} lost a value")
        cache.delete(key)


def check_signing_key() -> None:
    from cells_oidc.internal import keys

    keys.active_key()


def check_deny_list() -> None:
    from cells_oidc.internal import revocation

    failed = revocation.last_write_failure
    if failed is not None and time.time() - failed < READY_WRITE_FAILURE_SECONDS:
        raise RuntimeError("a revoked token recently failed to reach the deny-list")


CHECKS = {
    "database": check_database,
    "cache": check_caches,
    "signing_key": check_signing_key,
    "deny_list": check_deny_list,
}


@method_decorator(login_not_required, name="dispatch")
class ReadinessView(View):
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        results: dict[str, str] = {}
        for name, check in CHECKS.items():
            try:
                check()
            except Exception:  # noqa: BLE001 - any failure makes the process not ready
                logger.exception("Readiness check %r failed.", name)
                results[name] = "failing"
            else:
                results[name] = "ok"
        ready = all(value == "ok" for value in results.values())
        return _answer(
            {"status": "ready" if ready else "unavailable", "checks": results}, status=200 if ready else 503
        )
