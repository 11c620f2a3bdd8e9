"""``manage.py cells_oidc_demo_user``: create the demo user if there is no user yet."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a demo superuser (login 'demo') when the database has no user, and print its password."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.exists():
            self.stdout.write("Users exist already; no demo user created.")
            return
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(
            "demo", "demo@example.com", password, first_name="Demo", last_name="User"
        )
        self.stdout.write(self.style.SUCCESS(f"Demo user created. Login: demo  Password: {password}"))
