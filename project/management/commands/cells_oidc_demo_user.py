"""``manage.py cells_oidc_demo_user``: create the demo user if there is no user yet, print its login."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a demo superuser (login 'demo') when the database has no user, and print its password."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        credentials = Path(settings.VAR_DIR) / "demo-credentials.txt"
        if users.objects.exists():
            # The file may belong to another database (DATABASE_URL changed): print it only when
            # its password still signs the demo user in here.
            saved = credentials.read_text().split() if credentials.exists() else []
            password = saved[-1] if len(saved) == 4 else ""
            demo = users.objects.filter(username="demo").first()
            if demo is not None and password and demo.check_password(password):
                self.stdout.write(f"Demo account: {' '.join(saved)}")
            else:
                self.stdout.write(
                    "Users exist already in this database; no demo user created "
                    "(create one with: manage.py createsuperuser)."
                )
            return
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(
            "demo", "demo@example.com", password, first_name="Demo", last_name="User"
        )
        line = f"login: demo  password: {password}"
        credentials.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(line + "\n")
        self.stdout.write(self.style.SUCCESS(f"Demo user created. {line}"))
