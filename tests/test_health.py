"""/healthz (liveness, no I/O) and /readyz (database, caches, signing key, deny-list writes)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.test import Client

from tests.conftest import Browser, form_post


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def down_cache(settings: Any) -> str:
    pytest.importorskip("redis")
    port = closed_port()
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        },
    }
    return str(port)


def test_liveness_does_no_io() -> None:
    # No django_db mark: a database query here would fail the test.
    response = Client().get("/oidc/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_ready_when_everything_answers() -> None:
    response = Client().get("/oidc/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "signing_key": "ok", "deny_list": "ok"},
    }


@pytest.mark.django_db
def test_not_ready_when_a_cache_is_down_and_no_detail_leaks(settings: Any) -> None:
    port = down_cache(settings)
    settings.CELLS_OIDC_THROTTLE_CACHE = "down"
    response = Client().get("/oidc/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["cache"] == "failing"
    assert response.json()["checks"]["database"] == "ok"
    assert port.encode() not in response.content and b"redis" not in response.content.lower()


@pytest.mark.django_db
def test_not_ready_when_the_signing_key_is_broken(settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEY": "not a key"}
    response = Client().get("/oidc/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_key"] == "failing"
    assert b"not a key" not in response.content


@pytest.mark.django_db(transaction=True)
def test_not_ready_after_a_revocation_missed_the_deny_list(
    settings: Any, monkeypatch: Any, default_clients: None, alice: Any, browser: Browser
) -> None:
    from cells_oidc.internal import revocation
    from tests.test_resource import sign_in

    monkeypatch.setattr(revocation, "last_write_failure", None)
    tokens = sign_in(browser)
    down_cache(settings)
    settings.CELLS_OIDC_RESOURCE_REVOCATION_CACHE = "down"
    revoked = form_post("/oidc/oauth2/revoke", {"token": tokens["access_token"], "client_id": "cells-client"})
    assert revoked.status_code == 200  # the revocation itself stands (the database committed)
    settings.CELLS_OIDC_RESOURCE_REVOCATION_CACHE = "default"
    response = Client().get("/oidc/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["deny_list"] == "failing"
