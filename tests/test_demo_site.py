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
