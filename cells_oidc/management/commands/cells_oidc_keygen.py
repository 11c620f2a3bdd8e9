"""``manage.py cells_oidc_keygen PATH``: write a new RSA signing key (PEM, mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cells_oidc.internal.keys import generate_private_key_pem


class Command(BaseCommand):
    help = "Write a new RSA private key for signing tokens to PATH (refuses to overwrite one)."
    requires_system_checks: list[str] = []  # it is how a missing key (cells_oidc.E005) gets fixed

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Where to write the PEM file.")
        parser.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
        parser.add_argument(
            "--if-missing", action="store_true", help="Do nothing (and succeed) if PATH exists."
        )

    def handle(self, *args: Any, path: str, bits: int, if_missing: bool, **options: Any) -> None:
        target = Path(path)
        if target.exists():
            if if_missing:
                self.stdout.write(f"Signing key {target} already exists; left as it is.")
                return
            raise CommandError(
                f"{target} exists; move it away first (rotating keys is described in docs/keys.md)."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        pem = generate_private_key_pem(bits)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        self.stdout.write(self.style.SUCCESS(f"Wrote a new {bits}-bit RSA signing key to {target}."))
