"""Throttles (cells_oidc.internal.throttle through cells_oidc.middleware): what an attacker notices.

Sign-in per typed login and per IP on the provider's page and the admin's, with the same answer
for unknown accounts; the token endpoint per client and IP; introspection; refused personal
access tokens per IP; the unlock command and admin action; the Redis-down policy; the checks.
"""

from __future__ import annotations

import io
import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import PASSWORD, Browser, basic, form_post, token_request
from tests.kit import clear_of_window_edges


@pytest.fixture(autouse=True)
def _one_window() -> None:
    """Each test counts its events within one window (the windows are whole minutes)."""
    clear_of_window_edges(5)


LOGIN = "/oidc/login/"
ADMIN_LOGIN = "/admin/login/"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is


def login(http: Client, username: str, password: str, path: str = LOGIN, **extra: Any) -> Any:
    http.get(path)
    return http.post(path, {"username": username, "password": password, "next": "/oidc/account/"}, **extra)


def fail(times: int, username: str, path: str = LOGIN, **extra: Any) -> None:
    for _ in range(times):
        response = login(Client(), username, "wrong password", path, **extra)
        assert response.status_code == 200, response.status_code  # the form again, no lock yet


@pytest.mark.django_db
def test_wrong_passwords_lock_the_login_even_for_the_right_password(alice: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="cells_oidc.throttle")
    fail(10, "alice")
    response = login(Client(), "alice", PASSWORD)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 15 * 60 + 1
    assert b"Too many attempts" in response.content and b"<html" in response.content
    assert response["Content-Security-Policy"]  # the styled page of the provider
    assert any("Sign-in locked" in record.getMessage() for record in caplog.records)  # audit trail


@pytest.mark.django_db
def test_an_unknown_account_is_locked_the_same_way(alice: Any) -> None:
    fail(10, "alice")
    fail(10, "nobody-here")
    known, unknown = login(Client(), "alice", "x"), login(Client(), "nobody-here", "x")
    assert known.status_code == unknown.status_code == 429
    assert known["Retry-After"] and unknown["Retry-After"]
    strip = lambda r: r.content.replace(r["X-Request-ID"].encode(), b"")  # noqa: E731
    assert strip(known) == strip(unknown)


@pytest.mark.django_db
def test_a_success_clears_the_failures_of_the_login(alice: Any) -> None:
    fail(9, "alice")
    assert login(Client(), "alice", PASSWORD).status_code == 303
    fail(9, "alice")  # counted from zero again
    assert login(Client(), "alice", PASSWORD).status_code == 303


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(make_user: Any) -> None:
    make_user("root", is_staff=True, is_superuser=True)
    fail(10, "root", ADMIN_LOGIN)
    response = login(Client(), "root", PASSWORD, ADMIN_LOGIN)
    assert response.status_code == 429 and response["Retry-After"]
    # The lock is per login, whatever the page: the provider's page refuses it as well.
    assert login(Client(), "root", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_one_address_is_limited_across_logins(settings: Any, alice: Any) -> None:
    settings.CELLS_OIDC_THROTTLES = {"login_ip": (3, 900)}
    for name in ("a", "b", "c"):
        assert login(Client(), name, "x", REMOTE_ADDR="203.0.113.7").status_code == 200
    assert login(Client(), "alice", PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 429
    assert login(Client(), "alice", PASSWORD, REMOTE_ADDR="203.0.113.8").status_code == 303


@pytest.mark.django_db
def test_successful_sign_ins_do_not_use_up_the_address(settings: Any, alice: Any) -> None:
    """Every attempt is counted before its password is checked (parallel guesses cannot all pass a
    check made before any failed, tests/test_two_processes.py); a success takes its attempt back
    from the address: the people behind one NAT sign in all day."""
    settings.CELLS_OIDC_THROTTLES = {"login_ip": (3, 900)}
    for _ in range(6):
        assert login(Client(), "alice", PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 303
    for name in ("a", "b", "c"):
        assert login(Client(), name, "x", REMOTE_ADDR="203.0.113.7").status_code == 200
    assert login(Client(), "alice", PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 429


@pytest.mark.django_db
def test_a_form_without_a_password_is_not_a_failure(settings: Any, alice: Any) -> None:
    settings.CELLS_OIDC_THROTTLES = {"login_account": (2, 900), "login_ip": (2, 900)}
    for _ in range(5):  # the form again: no password was checked, the attempt is taken back
        assert login(Client(), "alice", "").status_code == 200
    assert login(Client(), "alice", PASSWORD).status_code == 303


@pytest.mark.django_db
def test_a_locked_login_does_not_lock_its_address(settings: Any, alice: Any, make_user: Any) -> None:
    settings.CELLS_OIDC_THROTTLES = {"login_account": (2, 900), "login_ip": (4, 900)}
    make_user("bob")
    fail(2, "alice")  # alice is locked; the address has 2 failures
    for _ in range(5):  # refused before the password: not failures of the address
        assert login(Client(), "alice", PASSWORD).status_code == 429
    fail(1, "bob")
    fail(1, "carol")  # the address's 3rd and 4th failures: now it is locked
    assert login(Client(), "bob", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_a_locked_address_does_not_lock_the_logins_it_tries(settings: Any, alice: Any) -> None:
    settings.CELLS_OIDC_THROTTLES = {"login_account": (3, 900), "login_ip": (2, 900)}
    fail(2, "x", REMOTE_ADDR="203.0.113.7")  # the address is locked
    for _ in range(5):  # refused before the password: not failures of alice
        assert login(Client(), "alice", "guess", REMOTE_ADDR="203.0.113.7").status_code == 429
    for address in ("192.0.2.8", "192.0.2.9"):  # from elsewhere: her 1st and 2nd, not 6th and 7th
        fail(1, "alice", REMOTE_ADDR=address)
    assert login(Client(), "alice", PASSWORD, REMOTE_ADDR="192.0.2.10").status_code == 303


@pytest.mark.django_db
def test_the_client_address_behind_a_trusted_proxy(settings: Any, alice: Any) -> None:
    settings.CELLS_OIDC_THROTTLES = {"login_ip": (2, 900)}
    settings.CELLS_OIDC_CLIENT_IP_HEADER = "X-Forwarded-For"
    for _ in range(2):  # the client invents the left part; the proxy appended 198.51.100.9
        login(Client(), "x", "x", HTTP_X_FORWARDED_FOR=f"10.0.0.{_}, 198.51.100.9")
    assert login(Client(), "alice", PASSWORD, HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.9").status_code == 429
    assert login(Client(), "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.10").status_code == 303


@pytest.mark.django_db
def test_the_unlock_command_lifts_the_lock(alice: Any) -> None:
    fail(10, "alice")
    fail(10, "alice@example.com")
    assert login(Client(), "alice", PASSWORD).status_code == 429
    call_command("cells_oidc_unlock", "alice", stdout=io.StringIO())
    assert login(Client(), "alice", PASSWORD).status_code == 303
    assert login(Client(), "alice@example.com", PASSWORD).status_code == 303


@pytest.mark.django_db
def test_the_admin_action_unlocks_the_selected_users(alice: Any, make_user: Any) -> None:
    root = make_user("root", is_staff=True, is_superuser=True)
    fail(10, "alice")
    admin = Client()
    admin.force_login(root)
    response = admin.post(
        "/admin/auth/user/", {"action": "unlock_sign_in", "_selected_action": [alice.pk]}, follow=True
    )
    assert response.status_code == 200 and b"Sign-in unlocked for 1 user" in response.content
    assert login(Client(), "alice", PASSWORD).status_code == 303


# ---- the token endpoint, introspection, personal access tokens ----------------------------------
@pytest.mark.django_db
def test_the_token_endpoint_per_client_and_address(settings: Any, default_clients: None) -> None:
    settings.CELLS_OIDC_THROTTLES = {"token_client_ip": (3, 60)}
    data = {"grant_type": "authorization_code", "code": "nope", "client_id": "cells-client"}
    for _ in range(3):
        assert token_request(data).status_code == 400
    response = token_request(data)
    assert response.status_code == 429
    assert response.json()["error"] == "slow_down" and int(response["Retry-After"]) >= 1
    assert response["Cache-Control"] == "no-store"
    # Another client from the same address, and the same client from another address, go on.
    assert token_request({**data, "client_id": "cells-sync"}).status_code == 400
    assert token_request(data, REMOTE_ADDR="192.0.2.1").status_code == 400


@pytest.mark.django_db
def test_the_token_endpoint_per_address(settings: Any, default_clients: None) -> None:
    settings.CELLS_OIDC_THROTTLES = {"token_ip": (4, 60)}
    for number in range(4):  # a new made-up client id each time does not help
        token_request({"grant_type": "refresh_token", "refresh_token": "x", "client_id": f"c{number}"})
    response = token_request({"grant_type": "refresh_token", "refresh_token": "x", "client_id": "c9"})
    assert response.status_code == 429 and response.json()["error"] == "slow_down"


@pytest.mark.django_db
def test_introspection_per_client(settings: Any, default_clients: None) -> None:
    settings.CELLS_OIDC_THROTTLES = {"introspect_client_ip": (2, 60)}
    auth = {"HTTP_AUTHORIZATION": basic("cells-sync", "wrong")}
    for _ in range(2):
        assert form_post("/oidc/oauth2/introspect", {"token": "x"}, **auth).status_code in (400, 401)
    response = form_post("/oidc/oauth2/introspect", {"token": "x"}, **auth)
    assert response.status_code == 429 and response.json()["error"] == "slow_down"


@pytest.mark.django_db
def test_refused_personal_tokens_per_address(settings: Any, alice: Any) -> None:
    from cells_oidc.internal import pat

    settings.CELLS_OIDC_THROTTLES = {"pat_failure_ip": (3, 600)}
    good = pat.mint(alice, label="ci", expires_in=timedelta(days=1)).secret
    bad = "cpat_" + "A" * 43 + "AAAAAA"
    for _ in range(3):
        assert Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {bad}").status_code == 401
    refused = Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {bad}")
    assert refused.status_code == 429 and refused.json()["error"] == "slow_down" and refused["Retry-After"]
    # The address is blocked for personal tokens, even a good one; another address is not.
    assert Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {good}").status_code == 429
    other = Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="192.0.2.5")
    assert other.status_code == 200


# ---- the cache is down --------------------------------------------------------------------------
def unreachable_cache(settings: Any) -> None:
    pytest.importorskip("redis")
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        },
    }


@pytest.mark.django_db
def test_throttles_fail_closed_when_their_cache_is_down(
    settings: Any, alice: Any, default_clients: None
) -> None:
    unreachable_cache(settings)
    settings.CELLS_OIDC_THROTTLE_CACHE = "down"
    page = login(Client(), "alice", PASSWORD)
    assert page.status_code == 503 and page["Retry-After"]
    assert b"briefly unavailable" in page.content and b"Traceback" not in page.content
    api = token_request({"grant_type": "refresh_token", "refresh_token": "x", "client_id": "cells-client"})
    assert api.status_code == 503 and api["Retry-After"]
    assert api.json()["error"] == "temporarily_unavailable"


@pytest.mark.django_db
def test_throttles_may_fail_open(settings: Any, alice: Any) -> None:
    unreachable_cache(settings)
    settings.CELLS_OIDC_THROTTLE_CACHE = "down"
    settings.CELLS_OIDC_THROTTLE_FAIL_OPEN = True
    assert login(Client(), "alice", "wrong").status_code == 200
    assert login(Client(), "alice", PASSWORD).status_code == 303


@pytest.mark.django_db
def test_the_deny_list_fails_closed_when_its_cache_is_down(
    settings: Any, alice: Any, default_clients: None, browser: Browser
) -> None:
    from tests.test_resource import sign_in

    access_token = sign_in(browser)["access_token"]
    assert Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code == 200
    unreachable_cache(settings)
    settings.CELLS_OIDC_RESOURCE_REVOCATION_CACHE = "down"
    # Whether the token was revoked cannot be read: it is refused (401), never accepted.
    refused = Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {access_token}")
    assert refused.status_code == 401 and "invalid_token" in refused["WWW-Authenticate"]


# ---- the checks ---------------------------------------------------------------------------------
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
DUMMY = "django.core.cache.backends.dummy.DummyCache"
SHARED = {
    "BACKEND": "django.core.cache.backends.db.DatabaseCache",
    "LOCATION": "t",
    "OPTIONS": {"MAX_ENTRIES": 1_000_000},
}
FILES = "django.core.cache.backends.filebased.FileBasedCache"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, set()),
        ({"CACHES": {"default": {"BACKEND": LOCMEM}}}, {"cells_oidc.E013"}),
        ({"CACHES": {"default": {"BACKEND": LOCMEM}}, "DEBUG": True}, {"cells_oidc.E013"}),
        ({"CACHES": {"default": {"BACKEND": LOCMEM}}, "CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE": True}, set()),
        (
            {"CACHES": {"default": SHARED, "t": {"BACKEND": DUMMY}}, "CELLS_OIDC_THROTTLE_CACHE": "t"},
            {"cells_oidc.E013"},
        ),
        ({"CELLS_OIDC_THROTTLE_CACHE": "nope"}, {"cells_oidc.E015"}),
        ({"CELLS_OIDC_THROTTLES": {"login_account": "ten"}}, {"cells_oidc.E014"}),
        ({"CELLS_OIDC_THROTTLES": {"login_account": (0, 60)}}, {"cells_oidc.E014"}),
        ({"MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"]}, {"cells_oidc.W007"}),
        # Django's database and file caches cull at MAX_ENTRIES (default 300): a culled deny-list
        # entry is a revoked token accepted again.
        ({"CACHES": {"default": {**SHARED, "OPTIONS": {}}}}, {"cells_oidc.E019"}),
        ({"CACHES": {"default": {"BACKEND": FILES, "LOCATION": "/tmp/x"}}}, {"cells_oidc.E019"}),
        (
            {
                "CACHES": {
                    "default": {"BACKEND": FILES, "LOCATION": "/tmp/x", "OPTIONS": {"MAX_ENTRIES": 10**6}}
                }
            },
            set(),
        ),
    ],
)
def test_shared_state_checks(settings: Any, overrides: dict[str, Any], expected: set[str]) -> None:
    from cells_oidc.checks import check_shared_state

    settings.CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE = False
    settings.CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS = 0  # W008, tests/test_checks.py
    settings.CACHES = {"default": SHARED}
    for name, value in overrides.items():
        setattr(settings, name, value)
    assert {message.id for message in check_shared_state()} == expected


def test_the_check_has_the_fix_in_its_hint(settings: Any) -> None:
    from cells_oidc.checks import check_shared_state

    settings.CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE = False
    settings.CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS = 0  # W008, tests/test_checks.py
    settings.CACHES = {"default": {"BACKEND": LOCMEM}}
    (error,) = check_shared_state()
    assert error.is_serious() and "RedisCache" in error.hint and "createcachetable" in error.hint
