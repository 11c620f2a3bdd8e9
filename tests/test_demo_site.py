"""The demo site's own commands (project/)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command


def demo_user(settings: Any, tmp_path: Path) -> str:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("cells_oidc_demo_user", stdout=out)
    return out.getvalue()


def test_the_demo_user_is_created_once_and_its_credentials_sign_in(
    db: Any, settings: Any, tmp_path: Path
) -> None:
    first = demo_user(settings, tmp_path)
    password = first.split()[-1]
    assert "login: demo" in first
    assert get_user_model().objects.get(username="demo").check_password(password)
    again = demo_user(settings, tmp_path)
    assert again.strip() == f"Demo account: login: demo password: {password}"


def test_credentials_of_another_database_are_not_printed(db: Any, settings: Any, tmp_path: Path) -> None:
    # var/demo-credentials.txt written for another database (DATABASE_URL changed since).
    (tmp_path / "demo-credentials.txt").write_text("login: demo  password: stale-password\n")
    get_user_model().objects.create_user("demo", password="the-real-one")
    output = demo_user(settings, tmp_path)
    assert "stale-password" not in output
    assert "no demo user created" in output


def _manage(tmp_path: Path, **env: str) -> Any:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", VAR_DIR=str(tmp_path), **env)
    environment.pop("CELLS_OIDC_SIGNING_KEY_FILE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_checkout_of_the_demo_starts_with_a_development_key(tmp_path: Path) -> None:
    # Any manage.py command, not only `make run`, works before cells_oidc_keygen ran (DEBUG on).
    result = _manage(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    key = tmp_path / "signing-key.pem"
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left
    first = key.read_bytes()
    assert _manage(tmp_path).returncode == 0
    assert key.read_bytes() == first  # kept, never replaced


def test_with_debug_off_a_missing_key_stays_an_error(tmp_path: Path) -> None:
    result = _manage(tmp_path, DEBUG="0", SECRET_KEY="s" * 50)
    assert result.returncode != 0
    assert "cells_oidc.E005" in result.stdout + result.stderr
    assert not (tmp_path / "signing-key.pem").exists()
