"""``manage.py cells_oidc_token``: mint, list and revoke personal access tokens (Cells' ``admin user token``).

::

    manage.py cells_oidc_token create --user alice --expires 24h
    manage.py cells_oidc_token create --user alice --auto-refresh 10m --max-lifetime 30d --label backup
    manage.py cells_oidc_token list --user alice
    manage.py cells_oidc_token revoke 12

The secret of a new token is printed once and never stored; with ``-v 0`` only the secret is printed
(for scripts: ``TOKEN=$(manage.py cells_oidc_token create -v 0 --user alice --expires 1h)``).
A token never carries the administrative scope ``cells_oidc:admin``; ``list`` shows a token minted
through a sign-in that was since revoked as revoked.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from cells_oidc.internal import pat
from cells_oidc.models import PersonalAccessToken


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return timezone.localtime(value, timezone.get_fixed_timezone(0)).strftime("%Y-%m-%d %H:%M UTC")


def _duration(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return pat.parse_duration(text)
    except pat.PersonalTokenError as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = "Mint, list and revoke personal access tokens (the secret of a new token is shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="{create,list,revoke}", required=True)

        create = actions.add_parser("create", help="Mint a token for a user and print it once.")
        create.add_argument("--user", "-u", required=True, help="The login of the token's owner.")
        mode = create.add_mutually_exclusive_group(required=True)
        mode.add_argument("--expires", "-e", metavar="DURATION", help="Fixed expiry, e.g. 24h or 30d.")
        mode.add_argument(
            "--auto-refresh",
            "-a",
            metavar="DURATION",
            help="Expire after DURATION without use; every use pushes the expiry forward (e.g. 10m).",
        )
        create.add_argument(
            "--max-lifetime",
            metavar="DURATION",
            help="With --auto-refresh: never valid longer than this after creation "
            "(default and upper bound: CELLS_OIDC_PAT_MAX_LIFETIME).",
        )
        create.add_argument(
            "--scope", "-s", help="Space-separated scopes (default: CELLS_OIDC_PAT_DEFAULT_SCOPE)."
        )
        create.add_argument("--label", "-l", default="", help="What the token is for (shown in lists).")

        listing = actions.add_parser("list", help="List tokens (never their secrets).")
        listing.add_argument("--user", "-u", help="Only this user's tokens.")
        listing.add_argument("--all", action="store_true", help="Include revoked and expired tokens.")

        revoke = actions.add_parser("revoke", help="Revoke tokens by id (as shown by list).")
        revoke.add_argument("ids", nargs="+", type=int, metavar="ID")

        # -v also after the action (``create -v 0``); SUPPRESS keeps a -v given before it.
        for sub in (create, listing, revoke):
            sub.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=argparse.SUPPRESS)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action.replace('-', '_')}")(**options)

    # ---- create ---------------------------------------------------------------------------
    def handle_create(
        self,
        *,
        user: str,
        expires: str | None,
        auto_refresh: str | None,
        max_lifetime: str | None,
        scope: str | None,
        label: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        owner = self._user(user)
        try:
            minted = pat.mint(
                owner,
                expires_in=_duration(expires),
                auto_refresh=_duration(auto_refresh),
                max_lifetime=_duration(max_lifetime),
                scope=scope,
                label=label,
            )
        except pat.PersonalTokenError as exc:
            raise CommandError(str(exc)) from exc
        token = minted.token
        if verbosity == 0:
            self.stdout.write(minted.secret)
            return
        self.stdout.write(
            self.style.SUCCESS(f"Personal access token {token.pk} for {owner.get_username()} created.")
        )
        self.stdout.write(f"  label:   {token.label or '-'}")
        self.stdout.write(f"  scope:   {token.scope}")
        if token.auto_refresh_seconds:
            window = pat.format_duration(token.auto_refresh_seconds)
            self.stdout.write(
                f"  expires: {window} after its last use (now {_when(token.expires)}), "
                f"never after {_when(token.max_expires)}"
            )
        else:
            self.stdout.write(f"  expires: {_when(token.expires)}")
        self.stdout.write("")
        self.stdout.write(f"  {minted.secret}")
        self.stdout.write("")
        self.stdout.write(
            self.style.WARNING("Copy it now: only its checksum is stored, it cannot be shown again.")
        )
        self.stdout.write(f"Use it as an HTTP header: Authorization: Bearer {token.hint}…")

    # ---- list -----------------------------------------------------------------------------
    def handle_list(self, *, user: str | None, all: bool, **options: Any) -> None:
        tokens = PersonalAccessToken.objects.select_related("user", "token_family").order_by(
            "-created", "-pk"
        )
        if user:
            tokens = tokens.filter(user=self._user(user, active_only=False))
        if not all:
            tokens = pat.live(tokens)
        now = timezone.now()
        rows = [
            (
                str(t.pk),
                t.user.get_username(),
                t.hint + "…",
                t.label or "-",
                t.scope,
                _when(t.created),
                _when(t.last_used),
                _when(t.expires)
                + (
                    f" (auto-refresh {pat.format_duration(t.auto_refresh_seconds)})"
                    if t.auto_refresh_seconds
                    else ""
                ),
                pat.status(t, now),
            )
            for t in tokens
        ]
        if not rows:
            self.stdout.write("No personal access tokens." if all else "No active personal access tokens.")
            return
        header = ("ID", "USER", "STARTS WITH", "LABEL", "SCOPE", "CREATED", "LAST USED", "EXPIRES", "STATUS")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )

    # ---- revoke ---------------------------------------------------------------------------
    def handle_revoke(self, *, ids: list[int], **options: Any) -> None:
        found = {t.pk: t for t in PersonalAccessToken.objects.select_related("user").filter(pk__in=ids)}
        missing = [str(i) for i in ids if i not in found]
        for token_id in dict.fromkeys(ids):
            token = found.get(token_id)
            if token is None:
                continue
            owner = token.user.get_username()
            if pat.revoke(token):
                self.stdout.write(self.style.SUCCESS(f"Revoked token {token.pk} of {owner} ({token.hint}…)."))
            else:
                self.stdout.write(f"Token {token.pk} of {owner} ({token.hint}…) was already revoked.")
        if missing:
            raise CommandError(f"No personal access token with id {', '.join(missing)}.")

    def _user(self, login: str, *, active_only: bool = True) -> Any:
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: login}).first()
        if user is None:
            raise CommandError(f"No user with the login {login!r}.")
        if active_only and not user.is_active:
            raise CommandError(f"The account {login!r} is inactive.")
        return user
