"""Confidential clients' secrets: fast hash, shown once, rotation with an overlap, DOT's secrets upgraded."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from oauth2_provider.models import Application

from cells_oidc.internal import client_secrets
from cells_oidc.models import ClientSecret
from tests.conftest import basic, token_request

pytestmark = pytest.mark.django_db

CLIENT = "service"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("cells_oidc_client", *args, stdout=out)
    return out.getvalue()


def create_service() -> str:
    output = run("set", CLIENT, "--confidential", "--client-credentials")
    return re.search(r"shown once, only its hash is stored\): (\S+)", output).group(1)


def rotate(*args: str) -> tuple[str, str]:
    output = run("rotate-secret", CLIENT, *args)
    return re.search(r"shown once\): (\S+)", output).group(1), output


def authenticates(secret: str, *, body: bool = False) -> bool:
    data = {"grant_type": "client_credentials"}
    if body:
        response = token_request({**data, "client_id": CLIENT, "client_secret": secret})
    else:
        response = token_request(data, HTTP_AUTHORIZATION=basic(CLIENT, secret))
    if response.status_code == 200:
        assert json.loads(response.content)["access_token"]
        return True
    assert response.status_code == 401, response.content
    assert json.loads(response.content)["error"] == "invalid_client"
    return False


def test_a_new_secret_is_random_shown_once_and_stored_as_sha256() -> None:
    secret = create_service()
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    row = ClientSecret.objects.get(application__client_id=CLIENT)
    assert row.digest == client_secrets.fast_digest(secret) and secret not in row.digest
    app = Application.objects.get(client_id=CLIENT)
    assert secret not in app.client_secret and app.client_secret.startswith("!")  # DOT's column unusable
    assert secret not in run("show", CLIENT) and secret not in run("list")
    assert authenticates(secret) and authenticates(secret, body=True)
    assert not authenticates(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not authenticates("")
    assert not authenticates(app.client_secret)  # the stored value is not a secret


def test_rotation_without_overlap_stops_the_old_secret_at_once() -> None:
    old = create_service()
    new, output = rotate()
    assert new != old and output.count(new) == 1
    assert "no longer works" in output
    assert authenticates(new) and not authenticates(old)


def test_rotation_with_overlap_keeps_the_old_secret_until_it_ends(time_machine: Any) -> None:
    old = create_service()
    new, output = rotate("--overlap", "7d")
    assert output.count(new) == 1 and old not in output
    assert "keeps working for 7 days" in output
    assert authenticates(old) and authenticates(new)
    time_machine.move_to(timezone.now() + timedelta(days=6, hours=23))
    assert authenticates(old)
    time_machine.move_to(timezone.now() + timedelta(hours=2))
    assert not authenticates(old)  # the overlap is over
    assert authenticates(new)
    # A second rotation shortens the first one's overlap, never extends an expired secret.
    newer, _ = rotate("--overlap", "1h")
    assert authenticates(new) and authenticates(newer) and not authenticates(old)


def test_rotate_refuses_bad_input() -> None:
    create_service()
    with pytest.raises(CommandError, match="Not a duration"):
        run("rotate-secret", CLIENT, "--overlap", "a week")
    with pytest.raises(CommandError, match="No client"):
        run("rotate-secret", "nobody")


def test_a_dot_hashed_secret_works_and_is_upgraded_on_first_use() -> None:
    legacy = "L" * 20 + "egacy-secret-of-dot-0123456789"  # DOT's own secrets are 128 random characters
    Application.objects.create(
        client_id=CLIENT,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=legacy,
        hash_client_secret=True,
        algorithm=Application.RS256_ALGORITHM,
    )
    stored = Application.objects.get(client_id=CLIENT).client_secret
    assert stored.startswith("md5$") or stored.startswith("pbkdf2")  # DOT's password hasher
    assert not authenticates("wrong")
    assert not ClientSecret.objects.exists()
    assert authenticates(legacy)
    row = ClientSecret.objects.get()
    assert row.digest == client_secrets.fast_digest(legacy)
    assert Application.objects.get(client_id=CLIENT).client_secret.startswith("!")
    assert authenticates(legacy)  # now through the fast hash
    assert ClientSecret.objects.count() == 1


def test_a_dot_secret_carried_over_by_a_rotation_with_overlap() -> None:
    legacy = "x" * 64
    app = Application.objects.create(
        client_id=CLIENT,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=legacy,
        algorithm=Application.RS256_ALGORITHM,
    )
    new, _ = rotate("--overlap", "1d")
    assert authenticates(legacy) and authenticates(new)
    # The carried-over secret was upgraded on its use, and keeps its end.
    carried = ClientSecret.objects.get(application=app, expires__isnull=False)
    assert carried.digest == client_secrets.fast_digest(legacy)
    assert carried.expires < timezone.now() + timedelta(days=1, minutes=1)


def test_public_clients_are_unchanged(default_clients: None) -> None:
    """The Cells clients (public) identify themselves with an empty Basic password, as before."""
    response = token_request(
        {"grant_type": "refresh_token", "refresh_token": "nope"}, HTTP_AUTHORIZATION=basic("cells-sync", "")
    )
    assert json.loads(response.content)["error"] == "invalid_grant"
    assert not ClientSecret.objects.exists()


def test_the_token_endpoint_does_not_pay_a_password_hash(settings: Any) -> None:
    # With the real PBKDF2 hasher a DOT check costs tens of milliseconds; the fast path does not.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    secret = create_service()
    app = Application.objects.get(client_id=CLIENT)
    from django.contrib.auth.hashers import check_password, make_password

    hashed = make_password(secret)
    started = time.perf_counter()
    assert check_password(secret, hashed)
    password_hasher = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        assert client_secrets.verify(app, secret, dot_check=lambda s, d: pytest.fail("slow path"))
    fast = (time.perf_counter() - started) / 20
    # Relative, so that a loaded machine slows both alike.
    assert fast < password_hasher / 5, (fast, password_hasher)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every live digest of the client is compared with hmac.compare_digest, a match or not."""
    import hmac

    secret = create_service()
    rotate("--overlap", "1d")
    app = Application.objects.get(client_id=CLIENT)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(client_secrets.hmac, "compare_digest", spy)
    assert client_secrets.verify(app, secret, dot_check=lambda s, d: False)
    assert len(calls) == 2  # both live secrets, not stopping at the match
    calls.clear()
    assert not client_secrets.verify(app, "guess", dot_check=lambda s, d: False)
    assert len(calls) == 2
