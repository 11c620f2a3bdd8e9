"""``manage.py cells_oidc_cleanup``: delete what has expired, in short batches (docs/operations.md).

    manage.py cells_oidc_cleanup [--batch-size 1000] [--margin 7d] [--dry-run]

Deletes, kind by kind: expired authorization codes (DOT ``Grant``), refresh tokens past their
lifetime or revoked more than ``--margin`` ago, expired access tokens no refresh token points to,
expired ID tokens without an access token, expired device codes (DOT ``DeviceGrant``), expired
consents, personal access tokens expired or revoked more than ``--margin`` ago, sign-ins
(``TokenFamily``) revoked or idle more than ``--margin`` ago with no token left, back-channel logout
deliveries made or given up more than ``--margin`` ago, and audit events past
``CELLS_OIDC_AUDIT_RETENTION_DAYS``.

Each batch selects at most ``--batch-size`` primary keys with ``LIMIT`` and deletes them by key in
its own short transaction: no lock is held across batches, and the token endpoint waits at most
one batch. Safe to run from cron while the site serves; running it twice deletes nothing more.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.utils import timezone


#: A deletion of an access token puts it on the deny-list (internal.revocation) while it could
#: still be accepted; past its expiry plus the verification leeway and that module's margin, the
#: receiver writes nothing. Access tokens are deleted only after this long.
def _access_token_grace() -> timedelta:
    from cells_oidc.conf import app_settings
    from cells_oidc.internal.revocation import MARGIN_SECONDS

    return timedelta(seconds=app_settings.RESOURCE_LEEWAY + MARGIN_SECONDS + 1)


_DURATION_RE = re.compile(r"([0-9]{1,6})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise CommandError(f"Not a duration: {text!r} (e.g. 3600, 90m, 12h, 7d).")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class Kind:
    """One kind of row to delete: a label and a function giving its queryset at ``now``."""

    def __init__(self, label: str, queryset: Callable[[datetime], models.QuerySet[Any] | None]) -> None:
        self.label = label
        self.queryset = queryset


class Command(BaseCommand):
    help = "Delete expired codes, tokens, device codes, consents, sign-ins and old audit events, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Rows deleted per transaction (default 1000; 1-100000).",
        )
        parser.add_argument(
            "--margin",
            default="7d",
            help="Keep revoked refresh tokens, personal tokens and sign-ins this long after they were "
            "revoked or expired (default 7d): a replayed refresh token is still recognised as reuse "
            "(RFC 9700 §4.14.2) and users still see recently revoked tokens.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

    def handle(self, *args: Any, batch_size: int, margin: str, dry_run: bool, **options: Any) -> None:
        if not 1 <= batch_size <= 100_000:
            raise CommandError("--batch-size must be between 1 and 100000.")
        self.verbosity = int(options.get("verbosity", 1))
        keep = parse_duration(margin)
        now = timezone.now()
        totals: dict[str, int] = {}
        for kind in self.kinds(keep):
            queryset = kind.queryset(now)
            if queryset is None:
                continue
            if dry_run:
                totals[kind.label] = queryset.count()
                continue
            totals[kind.label] = self.delete_in_batches(kind.label, queryset, batch_size)
        verb = "Would delete" if dry_run else "Deleted"
        width = max((len(label) for label in totals), default=0)
        for label, count in totals.items():
            self.stdout.write(f"{verb} {count:>9} {label:{width}}")
        self.stdout.write(self.style.SUCCESS(f"{verb} {sum(totals.values())} rows in all."))

    # ---- batches --------------------------------------------------------------------------
    def batches(self, queryset: models.QuerySet[Any], batch_size: int) -> Iterator[list[Any]]:
        """Primary keys of ``queryset``, at most ``batch_size`` at a time, until none is left."""
        while True:
            pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
            if not pks:
                return
            yield pks

    def delete_in_batches(self, label: str, queryset: models.QuerySet[Any], batch_size: int) -> int:
        model = queryset.model
        deleted = 0
        started = time.monotonic()
        for number, pks in enumerate(self.batches(queryset, batch_size), start=1):
            with transaction.atomic():
                # Only this batch's rows (and what cascades from them) are locked, briefly.
                model._base_manager.filter(pk__in=pks).delete()
            deleted += len(pks)
            if self.verbosity >= 2 or (self.verbosity >= 1 and number % 10 == 0):
                rate = deleted / max(time.monotonic() - started, 1e-6)
                self.stdout.write(f"  {label}: {deleted} deleted ({rate:.0f}/s)…")
        return deleted

    # ---- what goes ------------------------------------------------------------------------
    def kinds(self, keep: timedelta) -> list[Kind]:
        from oauth2_provider.models import (
            get_access_token_model,
            get_grant_model,
            get_id_token_model,
            get_refresh_token_model,
        )
        from oauth2_provider.settings import oauth2_settings

        from cells_oidc.models import Consent, LogoutDelivery, PersonalAccessToken, TokenFamily

        refresh_model = get_refresh_token_model()

        def grants(now: datetime) -> Any:
            return get_grant_model().objects.filter(expires__lt=now)

        def refresh_tokens(now: datetime) -> Any:
            # Revoked ones are kept for the margin: a rotated-out token presented again is reuse
            # (RFC 9700 §4.14.2) and revokes its sign-in; after that it is only invalid_grant.
            gone = models.Q(revoked__lt=now - keep)
            lifetime = oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS
            if lifetime:
                gone |= models.Q(created__lt=now - timedelta(seconds=int(lifetime)))
            return refresh_model.objects.filter(gone)

        def access_tokens(now: datetime) -> Any:
            # Past expiry + leeway + the deny-list's margin: deleting them writes no deny-list
            # entry (internal.revocation.deny_checksum skips a token that can no longer verify).
            # One a live refresh token points to goes with that refresh token (as in DOT).
            return get_access_token_model().objects.filter(
                expires__lt=now - _access_token_grace(), refresh_token__isnull=True
            )

        def id_tokens(now: datetime) -> Any:
            return get_id_token_model().objects.filter(expires__lt=now, access_token__isnull=True)

        def device_codes(now: datetime) -> Any:
            from oauth2_provider.models import get_device_grant_model

            return get_device_grant_model().objects.filter(expires__lt=now)

        def consents(now: datetime) -> Any:
            return Consent.objects.filter(expires__lt=now)

        def personal_tokens(now: datetime) -> Any:
            cutoff = now - keep
            return PersonalAccessToken.objects.filter(
                models.Q(revoked__lt=cutoff) | models.Q(expires__lt=cutoff) | models.Q(max_expires__lt=cutoff)
            )

        def families(now: datetime) -> Any:
            cutoff = now - keep
            tokens_left = refresh_model.objects.filter(token_family=models.OuterRef("pk"))
            return (
                TokenFamily.objects.filter(models.Q(revoked__lt=cutoff) | models.Q(created__lt=cutoff))
                .filter(access_token__isnull=True, personal_tokens__isnull=True)
                .exclude(models.Exists(tokens_left))
            )

        def logout_deliveries(now: datetime) -> Any:
            # Back-channel logout notices delivered or given up more than the margin ago; one still
            # pending is never touched (cells_oidc_deliver_logouts has not finished with it).
            cutoff = now - keep
            return LogoutDelivery.objects.filter(next_attempt__isnull=True).filter(
                models.Q(delivered_at__lt=cutoff)
                | models.Q(delivered_at__isnull=True, last_attempt__lt=cutoff)
                | models.Q(delivered_at__isnull=True, last_attempt__isnull=True, created__lt=cutoff)
            )

        return [
            Kind("authorization codes", grants),
            Kind("refresh tokens", refresh_tokens),
            Kind("access tokens", access_tokens),
            Kind("ID tokens", id_tokens),
            Kind("device codes", device_codes),
            Kind("consents", consents),
            Kind("personal access tokens", personal_tokens),
            Kind("sign-ins", families),
            Kind("back-channel logout deliveries", logout_deliveries),
            Kind("audit events", self.audit_events),
        ]

    def audit_events(self, now: datetime) -> Any:
        # The audit log is optional (another part of the app); without it there is nothing to do.
        from cells_oidc import models as app_models

        model = getattr(app_models, "AuditEvent", None)
        expired = getattr(getattr(model, "objects", None), "expired", None)
        if model is None or not callable(expired):
            self.stdout.write("audit events: no audit log in this version, skipped.")
            return None
        return expired(now)
