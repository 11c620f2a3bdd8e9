"""Password hashing for a login-heavy service (docs/performance.md): Argon2id first in the demo,
and an older hash rewritten with it at the user's next successful login (Django's must_update)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import Argon2PasswordHasher, get_hasher, make_password
from django.utils.module_loading import import_string

from project import settings as demo_settings
from tests.conftest import PASSWORD, Browser

pytestmark = pytest.mark.django_db


def test_the_demo_hashes_new_passwords_with_argon2() -> None:
    first = import_string(demo_settings.PASSWORD_HASHERS[0])()
    assert isinstance(first, Argon2PasswordHasher)
    # OWASP's minimum for Argon2id: 19 MiB, 2 passes, one lane (a login costs tens of ms).
    assert (first.memory_cost, first.time_cost, first.parallelism) == (19 * 1024, 2, 1)
    # The others only check the hashes of before: PBKDF2 (Django's default until now) among them.
    assert "django.contrib.auth.hashers.PBKDF2PasswordHasher" in demo_settings.PASSWORD_HASHERS


@pytest.fixture
def demo_hashers(settings: Any) -> None:
    settings.PASSWORD_HASHERS = demo_settings.PASSWORD_HASHERS


@pytest.mark.usefixtures("demo_hashers")
def test_a_pbkdf2_user_signs_in_and_the_stored_hash_becomes_argon2(browser: Browser) -> None:
    user = get_user_model().objects.create(
        username="legacy", password=make_password(PASSWORD, hasher=get_hasher("pbkdf2_sha256"))
    )
    assert user.password.startswith("pbkdf2_sha256$")

    # A wrong password changes nothing.
    refused = browser.sign_in("/oidc/account/", username="legacy", password="not the password")
    assert refused.status_code == 200
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")

    response = browser.sign_in("/oidc/account/", username="legacy")
    assert response.status_code == 303, response.content[:300]
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert user.check_password(PASSWORD)
    # And the next sign-in checks the new hash.
    assert Browser().sign_in("/oidc/account/", username="legacy").status_code == 303


@pytest.mark.usefixtures("demo_hashers")
def test_a_new_user_gets_an_argon2_hash() -> None:
    user = get_user_model().objects.create_user("fresh", password=PASSWORD)
    assert user.password.startswith("argon2$argon2id$")


@pytest.mark.usefixtures("demo_hashers")
def test_an_argon2_hash_of_other_parameters_is_rewritten_at_login(browser: Browser) -> None:
    # Django's own Argon2 defaults (100 MiB, 8 lanes): same algorithm, other parameters.
    user = get_user_model().objects.create(
        username="heavy", password=Argon2PasswordHasher().encode(PASSWORD, Argon2PasswordHasher().salt())
    )
    assert "m=102400" in user.password
    assert browser.sign_in("/oidc/account/", username="heavy").status_code == 303
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")


@pytest.mark.parametrize("limit", [1, 2])
def test_a_process_hashes_at_most_its_limit_of_passwords_at_once(settings: Any, limit: int) -> None:
    """project/hashers.py: more logins than cores wait their turn instead of thrashing the cores."""
    import threading
    import time
    from unittest import mock

    from project.hashers import LoginHeavyArgon2PasswordHasher

    settings.PASSWORD_HASHING_CONCURRENCY = limit
    hasher = LoginHeavyArgon2PasswordHasher()
    encoded = hasher.encode(PASSWORD, hasher.salt())
    active, most, lock = [0], [0], threading.Lock()
    real_verify = Argon2PasswordHasher.verify

    def counting_verify(self: Any, password: str, stored: str) -> bool:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)
            return bool(real_verify(self, password, stored))
        finally:
            with lock:
                active[0] -= 1

    results: list[bool] = []
    with mock.patch.object(Argon2PasswordHasher, "verify", counting_verify):
        threads = [
            threading.Thread(target=lambda: results.append(hasher.verify(PASSWORD, encoded)))
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [True] * 6
    assert most[0] == limit


def test_the_demo_shares_the_cores_among_gunicorn_workers(monkeypatch: Any) -> None:
    import os

    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert demo_settings._processes() == 2
    monkeypatch.setenv("WEB_CONCURRENCY", "not a number")
    assert demo_settings._processes() == 1
    assert demo_settings.PASSWORD_HASHING_CONCURRENCY >= 1
    assert demo_settings.PASSWORD_HASHING_CONCURRENCY <= (os.cpu_count() or 1)
