"""Prometheus metrics of cells-oidc: the scrape view and the request middleware (docs/metrics.md).

Off by default. A site that wants them installs the ``metrics`` extra (``prometheus-client``),
chooses the URL and the protection, and mounts the view itself — ``cells_oidc.urls`` never does::

    # urls.py
    from cells_oidc.metrics import metrics_view
    urlpatterns += [path("internal/metrics", metrics_view)]

    # settings.py
    MIDDLEWARE = ["cells_oidc.metrics.MetricsMiddleware", *MIDDLEWARE]   # per-endpoint series
    CELLS_OIDC_METRICS_TOKEN = os.environ["METRICS_TOKEN"]               # and/or:
    CELLS_OIDC_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

The view answers only a request that presents ``CELLS_OIDC_METRICS_TOKEN`` (``Authorization:
Bearer <token>``, or HTTP Basic with the token as the password, as Prometheus' ``authorization``
and ``basic_auth`` settings send it; compared in constant time) or that comes from an address of
``CELLS_OIDC_METRICS_ALLOWED_IPS`` (addresses or networks; the client address is the one the
throttles use, ``CELLS_OIDC_CLIENT_IP_HEADER``). With neither setting, every request is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from cells_oidc.internal import metrics as _metrics

__all__ = ["MetricsMiddleware", "metrics_view"]


def _token() -> str:
    value = getattr(settings, "CELLS_OIDC_METRICS_TOKEN", None)
    return value if isinstance(value, str) else ""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    value = getattr(settings, "CELLS_OIDC_METRICS_ALLOWED_IPS", None) or []
    if isinstance(value, str):
        value = value.split()
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            continue  # an unusable entry allows nothing
    return networks


def _presented_token(request: HttpRequest) -> str | None:
    from cells_oidc.internal.client_auth import basic_credentials, basic_part

    header = request.headers.get("Authorization", "")
    scheme, _sep, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    basic = basic_part(header)
    if basic:
        credentials = basic_credentials(basic)
        return credentials[1] if credentials else None
    return None


def _token_matches(request: HttpRequest, expected: str) -> bool:
    presented = _presented_token(request)
    if not presented or not expected:
        return False
    # Constant time whatever the length or content of the guess.
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _ip_allowed(request: HttpRequest) -> bool:
    networks = _allowed_networks()
    if not networks:
        return False
    from cells_oidc.internal.throttle import client_ip

    try:
        address = ipaddress.ip_address(client_ip(request).strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def _refused(status: int, message: str, *, challenge: bool) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if challenge:
        # RFC 6750 §3 / RFC 9110 §11.6.1: say which credentials would be accepted.
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    response["Cache-Control"] = "no-store"
    return response


def _exposition(accept: str) -> tuple[bytes, str]:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    _metrics._get()  # the series exist (at 0) from the first scrape on
    registry: Any = REGISTRY
    if _metrics.multiprocess_dir():
        from prometheus_client import multiprocess

        # prometheus_client's multiprocess mode: aggregate every worker's files, per scrape.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_metrics.KeyAgeCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of cells-oidc's series (and the process's other registered ones)."""
    token = _token()
    if not (token and _token_matches(request, token)) and not _ip_allowed(request):
        if token:
            return _refused(401, "A valid metrics token is required.", challenge=True)
        return _refused(403, "Metrics are not available to this client.", challenge=False)
    if not _metrics.available():
        message = "prometheus-client is not installed (pip install cells-oidc[metrics])."
        return _refused(503, message, challenge=False)
    body, content_type = _exposition(request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class MetricsMiddleware:
    """Counts and times each request of the provider's endpoints (``cells_oidc_http_*``).

    Put it first in ``MIDDLEWARE`` so that answers of the other middleware (429 of the throttles,
    503 of an outage) are counted too. Requests of other URLs are not measured.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            endpoint = _metrics.endpoint_of(request)
            if endpoint is not None:
                _metrics.observe_request(endpoint, response.status_code, time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - a metric must never change an answer
            _metrics.logger.exception("Could not record a request metric.")
        return response
