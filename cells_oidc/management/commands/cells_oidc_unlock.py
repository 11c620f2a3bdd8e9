"""``manage.py cells_oidc_unlock [LOGIN ...] [--ip ADDRESS ...]``: lift sign-in locks."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cells_oidc.internal import throttle


def logins_of(user: Any) -> list[str]:
    """Every login a person may type for ``user``: the username and the email address."""
    logins = [user.get_username()]
    email = getattr(user, "email", "") or ""
    if email:
        logins.append(email)
    return logins


class Command(BaseCommand):
    help = (
        "Lift the sign-in lock (too many failed passwords) of logins and client IP addresses. "
        "A login that names an account also unlocks its email address. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("logins", nargs="*", help="Usernames or email addresses, as typed.")
        parser.add_argument("--ip", action="append", default=[], help="A client IP address (repeatable).")

    def handle(self, *args: Any, logins: list[str], ip: list[str], **options: Any) -> None:
        if not logins and not ip:
            raise CommandError("Name at least one login or --ip address.")
        model = get_user_model()
        expanded: list[str] = []
        for login in logins:
            expanded.append(login)
            user = model._default_manager.filter(**{model.USERNAME_FIELD: login}).first()
            if user is not None:
                expanded.extend(logins_of(user))
        try:
            throttle.unlock(logins=dict.fromkeys(expanded), ips=ip)
        except throttle.ThrottleUnavailable as exc:
            raise CommandError(f"The throttle cache is unavailable: {exc}") from None
        for login in dict.fromkeys(expanded):
            self.stdout.write(f"Unlocked login {login!r}.")
        for address in ip:
            self.stdout.write(f"Unlocked IP {throttle.ip_identity(address)}.")
