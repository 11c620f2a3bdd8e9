"""``manage.py cells_oidc_keys list|create|rotate|retire|revoke|import|reencrypt|kek``: the signing keys.

See docs/keys.md. Every action that changes a key reaches every server process at its next token
(the shared key-set version), is in every process's JWKS when the command returns, and sends
``cells_oidc.signals.key_changed``. Bad input exits non-zero
with a message; ``rotate --if-older-than 30d`` is safe to run from cron as often as wanted.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cells_oidc.internal import keys

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` or a number of seconds."""
    match = _DURATION.fullmatch(value.strip().lower())
    if not match:
        raise CommandError(f"{value!r} is not a duration such as 30d, 12h, 90m or 3600s.")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class Command(BaseCommand):
    help = "List, create, rotate, retire, revoke and import the keys that sign ID and access tokens."
    # It is how a key problem reported by the checks (cells_oidc.E005, E018) gets fixed.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help="Show the stored keys (never private material).")
        listing.add_argument(
            "--all", action="store_true", help="Also keys retired long ago and revoked keys."
        )

        create = actions.add_parser(
            "create", help="A new key: current when its algorithm has none, else next (published first)."
        )
        create.add_argument("--algorithm", default=keys.ALGORITHM, help="RS256 (default), ES256 or EdDSA.")
        create.add_argument("--use", default="both", help="both (default), id_token or access_token.")
        create.add_argument("--bits", type=int, default=2048, help="RSA size: 2048, 3072 or 4096.")

        rotate = actions.add_parser(
            "rotate", help="Promote next → current, current → retired, and publish a new next key."
        )
        rotate.add_argument("--algorithm", default=None, help="Only this algorithm (default: every one).")
        rotate.add_argument(
            "--if-older-than",
            default=None,
            metavar="DURATION",
            help="Leave a current key younger than this alone (e.g. 30d): safe from cron.",
        )
        rotate.add_argument(
            "--force",
            action="store_true",
            help="Promote a next key even if it was published for less than CELLS_OIDC_KEY_PUBLISH_SECONDS.",
        )

        retire = actions.add_parser(
            "retire", help="Stop signing with a key; published until its tokens expire."
        )
        kid_help = "The key's kid (a kid starting with '-' follows '--': retire -- -Xy…)."
        retire.add_argument("kid", help=kid_help)
        revoke = actions.add_parser("revoke", help="Withdraw a key at once: its tokens fail everywhere.")
        revoke.add_argument("kid", help=kid_help)

        imported = actions.add_parser("import", help="Store a PEM private key, or the settings' keys.")
        imported.add_argument("path", nargs="?", help="A PEM private key file (RSA, EC P-256 or Ed25519).")
        imported.add_argument(
            "--from-settings",
            action="store_true",
            help="The settings' signing key as the current key (same kid), its inactive keys as retired.",
        )
        imported.add_argument("--use", default="both", help="both (default), id_token or access_token.")
        imported.add_argument("--state", default=None, choices=["current", "next", "retired"])

        actions.add_parser(
            "reencrypt", help="Encrypt every stored key with the first CELLS_OIDC_KEY_ENCRYPTION_KEY."
        )
        actions.add_parser("kek", help="Print a new key-encryption key (a Fernet key) for the settings.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except (keys.KeyOperationError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        # When the command returns, every server's discovery and JWKS show the change (a process
        # may serve its copy for CELLS_OIDC_KEYS_DOCUMENT_SECONDS after confirming it).
        keys.wait_for_documents()

    # ---- actions ---------------------------------------------------------------------------------
    def do_list(self, *, all: bool = False, **options: Any) -> None:  # noqa: A002 - the option's name
        from cells_oidc.models import SigningKey

        rows = list(SigningKey.objects.order_by("algorithm", "use", "-created_at"))
        if not rows:
            source = "the settings (OIDC_RSA_PRIVATE_KEY)"
            self.stdout.write(
                f"No key is stored: tokens are signed with the key of {source}. "
                "Run 'cells_oidc_keys import --from-settings' to manage it here."
            )
            return
        published = set(keys.key_set().by_kid)
        if not all:
            rows = [row for row in rows if row.kid in published or row.state in ("current", "next")]
        table = keys.describe(rows)
        for entry in table:
            entry["in JWKS"] = "yes" if entry["kid"] in published else "no"
        self._table(table)

    def do_create(self, *, algorithm: str, use: str, bits: int, **options: Any) -> None:
        row = keys.create_key(algorithm, use=use, bits=bits)
        note = "signs from now on" if row.state == "current" else "published; signs after the next 'rotate'"
        self.stdout.write(self.style.SUCCESS(f"Created {row.algorithm} key {row.kid} ({row.state}: {note})."))

    def do_rotate(
        self, *, algorithm: str | None, if_older_than: str | None, force: bool, **options: Any
    ) -> None:
        older_than = parse_duration(if_older_than) if if_older_than else None
        for result in keys.rotate(algorithm=algorithm, older_than=older_than, force=force):
            ring = f"{result.algorithm} ({result.use})"
            if result.promoted:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{ring}: {result.promoted} now signs; {result.retired} retired (published until "
                        f"its tokens expire); new next key {result.created}."
                    )
                )
            elif result.created:
                self.stdout.write(f"{ring}: published a next key {result.created}; {result.skipped}.")
            else:
                self.stdout.write(f"{ring}: nothing to do: {result.skipped}.")

    def do_retire(self, *, kid: str, **options: Any) -> None:
        row, replacement = keys.retire(kid)
        self.stdout.write(
            self.style.SUCCESS(f"Retired {row.kid}; it stays published until its tokens expire.")
        )
        if replacement:
            self.stdout.write(f"{replacement} now signs {row.algorithm} tokens.")

    def do_revoke(self, *, kid: str, **options: Any) -> None:
        row, replacement = keys.revoke(kid)
        self.stdout.write(
            self.style.SUCCESS(f"Revoked {row.kid}: it left the JWKS and every token it signed is refused.")
        )
        if replacement:
            self.stdout.write(f"{replacement} now signs {row.algorithm} tokens.")

    def do_import(
        self, *, path: str | None, from_settings: bool, use: str, state: str | None, **options: Any
    ) -> None:
        if from_settings == bool(path):
            raise CommandError("Give either a PEM file or --from-settings.")
        if from_settings:
            imported = keys.import_from_settings()
            if not imported:
                self.stdout.write("The settings' keys are already stored; nothing to do.")
            for row in imported:
                self.stdout.write(self.style.SUCCESS(f"Imported {row.kid} ({row.algorithm}, {row.state})."))
            if imported:
                self.stdout.write(
                    "The database now holds the signing keys: OIDC_RSA_PRIVATE_KEY is no longer used "
                    "(docs/keys.md)."
                )
            return
        assert path is not None
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"{path} cannot be read: {exc.strerror or exc}.") from None
        row = keys.import_key(pem, use=use, state=state)
        self.stdout.write(self.style.SUCCESS(f"Imported {row.kid} ({row.algorithm}, {row.state})."))

    def do_reencrypt(self, **options: Any) -> None:
        count = keys.reencrypt()
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {count} key(s) with the first key-encryption key.")
        )

    def do_kek(self, **options: Any) -> None:
        from cryptography.fernet import Fernet

        self.stdout.write(Fernet.generate_key().decode("ascii"))

    def _table(self, rows: list[dict[str, str]]) -> None:
        columns = list(rows[0])
        widths = {name: max(len(name), *(len(str(row[name])) for row in rows)) for name in columns}
        self.stdout.write("  ".join(name.upper().ljust(widths[name]) for name in columns).rstrip())
        for row in rows:
            self.stdout.write("  ".join(str(row[name]).ljust(widths[name]) for name in columns).rstrip())
