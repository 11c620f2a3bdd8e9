"""The Prometheus endpoint (cells_oidc.metrics): scraped after a real sign-in, and its protection."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.test import Client
from django.urls import include, path
from prometheus_client.parser import text_string_to_metric_families

from cells_oidc.metrics import metrics_view
from tests.conftest import SCOPE, Browser, code_from, pkce_pair, token_request
from tests.kit import clear_of_window_edges

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_metrics")]

TOKEN = "metrics-" + "t" * 40

# The site mounts the view itself, at a URL of its choosing (never in cells_oidc.urls).
urlpatterns = [path("internal/metrics", metrics_view), path("", include("project.urls"))]


@pytest.fixture(autouse=True)
def _metrics_on(settings: Any) -> None:
    settings.MIDDLEWARE = ["cells_oidc.metrics.MetricsMiddleware", *settings.MIDDLEWARE]
    settings.CELLS_OIDC_METRICS_TOKEN = TOKEN


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(**headers: str) -> Any:
    return Client().get("/internal/metrics", **headers)


def samples() -> Samples:
    response = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    result: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def value(data: Samples, name: str, **labels: str) -> float:
    return data.get((name, tuple(sorted(labels.items()))), 0.0)


def sign_in(browser: Browser) -> dict[str, Any]:
    redirect_uri = "http://localhost:3651/servers/callback"
    verifier, challenge = pkce_pair()
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-sync",
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": "0123456789abcdef",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    params = code_from(response, redirect_uri)
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "client_id": "cells-sync",
            "code_verifier": verifier,
        }
    )
    assert exchange.status_code == 200, exchange.content
    return json.loads(exchange.content)


def test_scrape_after_a_sign_in_shows_the_series(default_clients: None, alice: Any, browser: Browser) -> None:
    before = samples()
    tokens = sign_in(browser)
    assert (
        Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}").status_code
        == 200
    )
    assert Client().get("/oidc/userinfo", HTTP_AUTHORIZATION="Bearer not.a.jwt").status_code == 401
    assert Client().get("/oidc/.well-known/jwks.json").status_code == 200
    after = samples()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "cells_oidc_http_requests_total"
    assert delta(requests, endpoint="token", status="200") == 1
    assert delta(requests, endpoint="userinfo", status="200") == 1
    assert delta(requests, endpoint="userinfo", status="401") == 1
    assert delta(requests, endpoint="jwks", status="200") == 1
    assert delta(requests, endpoint="login", status="200") >= 1  # the login page was shown
    assert delta(requests, endpoint="authorize", status="302") >= 1
    duration = "cells_oidc_http_request_duration_seconds"
    assert delta(f"{duration}_count", endpoint="token") == 1
    assert delta(f"{duration}_sum", endpoint="token") > 0
    assert delta(f"{duration}_bucket", endpoint="token", le="+Inf") == 1
    failures = "cells_oidc_token_verification_failures_total"
    assert (
        sum(v for (name, _), v in after.items() if name == failures)
        - sum(v for (name, _), v in before.items() if name == failures)
        == 1
    )
    # The scrape itself is not an endpoint of the provider; a token never appears in a label.
    body = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert tokens["access_token"] not in body and tokens["refresh_token"] not in body
    assert 'endpoint="metrics"' not in body


def test_tokens_issued_by_grant_type_and_client(default_clients: None, alice: Any, browser: Browser) -> None:
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        before = samples()
        tokens = sign_in(browser)
        refreshed = token_request(
            {
                "grant_type": "refresh_token",
                "client_id": "cells-sync",
                "refresh_token": tokens["refresh_token"],
            }
        )
        assert refreshed.status_code == 200, refreshed.content
    after = samples()
    name = "cells_oidc_tokens_issued_total"
    for grant_type in ("authorization_code", "refresh_token"):
        labels = {"grant_type": grant_type, "client_id": "cells-sync"}
        assert value(after, name, **labels) - value(before, name, **labels) == 1, grant_type


def test_a_verification_failure_is_counted_by_reason(default_clients: None) -> None:
    name = "cells_oidc_token_verification_failures_total"
    before = samples()
    assert Client().get("/oidc/userinfo", HTTP_AUTHORIZATION="Bearer not.a.jwt").status_code == 401
    assert Client().get("/oidc/userinfo", HTTP_AUTHORIZATION="Bearer cpat_nope").status_code == 401
    after = samples()
    grown = {
        dict(labels)["reason"]: v - value(before, name, **dict(labels))
        for (metric, labels), v in after.items()
        if metric == name and v > value(before, name, **dict(labels))
    }
    assert grown == {"malformed token": 1, "not a compact JWS": 1}


def test_throttle_hits_by_scope(default_clients: None, alice: Any, settings: Any) -> None:
    clear_of_window_edges(10)  # the requests are counted in one fixed window
    settings.CELLS_OIDC_THROTTLES = {**settings.CELLS_OIDC_THROTTLES, "token_ip": (2, 60)}
    before = samples()
    answers = [
        token_request({"grant_type": "authorization_code", "code": "x", "client_id": "cells-sync"})
        for _ in range(4)
    ]
    assert [a.status_code for a in answers][-1] == 429
    after = samples()
    name = "cells_oidc_throttle_hits_total"
    assert value(after, name, scope="token_ip") - value(before, name, scope="token_ip") == 2
    requests = "cells_oidc_http_requests_total"
    assert (
        value(after, requests, endpoint="token", status="429")
        - value(before, requests, endpoint="token", status="429")
        == 2
    )


def test_signing_key_age(monkeypatch: pytest.MonkeyPatch, default_clients: None) -> None:
    from cells_oidc.internal import metrics

    name = "cells_oidc_signing_key_age_seconds"
    # A key from the PEM setting has no start time: no series rather than a made-up age.
    if all(since is None for _kid, _alg, since in metrics.current_signing_keys()):
        assert not [key for key in samples() if key[0] == name]
    started = (datetime.now(dt_timezone.utc) - timedelta(days=3)).timestamp()
    monkeypatch.setattr(
        metrics, "current_signing_keys", lambda: [("k1", "ES256", started), ("k2", "RS256", None)]
    )
    data = samples()
    assert 3 * 86400 - 5 < value(data, name, kid="k1", alg="ES256") < 3 * 86400 + 60
    assert [key for key in data if key[0] == name] == [(name, (("alg", "ES256"), ("kid", "k1")))]

    def broken() -> Any:
        raise RuntimeError("key store down")

    # A failing key store never breaks the scrape.
    monkeypatch.setattr(metrics, "current_signing_keys", broken)
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Basic " + base64.b64encode(b"p:x").decode(),
    ],
)
def test_the_view_refuses_without_the_token(authorization: str | None) -> None:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = scrape(**headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"cells_oidc_" not in response.content


def test_basic_auth_with_the_token_as_password() -> None:
    credentials = base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
    response = scrape(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 200
    assert (
        b"cells_oidc_http_requests_total" in response.content
        or b"cells_oidc_http_requests" in response.content
    )


def test_ip_allow_list(settings: Any) -> None:
    settings.CELLS_OIDC_METRICS_TOKEN = None
    assert scrape().status_code == 403  # neither setting: nobody
    settings.CELLS_OIDC_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "not an address"]
    assert scrape().status_code == 403  # the test client comes from 127.0.0.1
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    settings.CELLS_OIDC_METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert scrape().status_code == 200
    assert Client().post("/internal/metrics").status_code == 405


def test_not_mounted_by_cells_oidc_urls(settings: Any) -> None:
    from django.urls import Resolver404, resolve

    for url in ("/oidc/metrics", "/metrics", "/oidc/internal/metrics"):
        with pytest.raises(Resolver404):
            resolve(url, urlconf="project.urls")


def test_multiprocess_mode(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PROMETHEUS_MULTIPROC_DIR: the view aggregates the files every worker wrote."""
    from prometheus_client import CollectorRegistry, Counter, values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    values.ValueClass = values.get_value_class()  # what a worker started with the variable gets
    try:
        counter = Counter(
            "cells_oidc_tokens_issued", "test", ["grant_type", "client_id"], registry=CollectorRegistry()
        )
        counter.labels(grant_type="client_credentials", client_id="worker-2").inc(3)
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        values.ValueClass = values.get_value_class()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    data = samples()
    labels = {"grant_type": "client_credentials", "client_id": "worker-2"}
    assert value(data, "cells_oidc_tokens_issued_total", **labels) == 3


def test_tokens_issued_receiver_is_connected(default_clients: None) -> None:
    """The receiver hangs on cells_oidc.signals.tokens_issued (connected in AppConfig.ready())."""
    from cells_oidc import signals
    from cells_oidc.models import Client as OAuthClient

    client = OAuthClient.objects.get(client_id="cells-client")
    before = samples()
    signals.tokens_issued.send_robust(
        sender=None,
        user=None,
        client=client,
        ip=None,
        user_agent="",
        request_id="",
        grant_type="client_credentials",
        scope="",
        family_id=None,
        refresh_token=False,
    )
    after = samples()
    labels = {"grant_type": "client_credentials", "client_id": "cells-client"}
    name = "cells_oidc_tokens_issued_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1
