"""``manage.py cells_oidc_deliver_logouts``: send the queued back-channel logout tokens.

    manage.py cells_oidc_deliver_logouts             # once (cron: every minute)
    manage.py cells_oidc_deliver_logouts --loop 10   # a worker: again every 10 seconds
    manage.py cells_oidc_deliver_logouts --status    # counts of pending, delivered and failed

Each due delivery (OpenID Connect Back-Channel Logout 1.0 §2.5) gets a freshly signed logout
token POSTed to its client's ``backchannel_logout_uri``; 200 or 204 delivers it, anything else is
retried later with exponential backoff (``CELLS_OIDC_BACKCHANNEL_RETRY_DELAY``, doubling) until
``CELLS_OIDC_BACKCHANNEL_MAX_ATTEMPTS``. Several copies may run at once: each delivery is taken by
one (docs/backchannel-logout.md).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Send the queued back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop",
            type=float,
            metavar="SECONDS",
            help="Keep running: send what is due, wait SECONDS, again (a worker instead of cron).",
        )
        parser.add_argument(
            "--limit", type=int, default=500, help="At most this many deliveries per pass (default 500)."
        )
        parser.add_argument(
            "--status", action="store_true", help="Print the counts of the queue and send nothing."
        )

    def handle(self, *args: Any, loop: float | None, limit: int, status: bool, **options: Any) -> None:
        from cells_oidc.internal import backchannel
        from cells_oidc.models import LogoutDelivery

        if limit < 1:
            raise CommandError("--limit: at least 1.")
        if loop is not None and loop <= 0:
            raise CommandError("--loop: a number of seconds above 0.")
        if status:
            deliveries = LogoutDelivery.objects
            self.stdout.write(
                f"pending {deliveries.pending().count()}, due now {deliveries.due().count()}, "
                f"delivered {deliveries.filter(delivered_at__isnull=False).count()}, "
                f"given up {deliveries.failed().count()}"
            )
            return
        while True:
            counts = backchannel.deliver_due(limit=limit)
            if any(counts.values()) or loop is None:
                self.stdout.write(
                    f"delivered {counts['delivered']}, failed {counts['failed']} (retried later or given "
                    f"up), taken by another sender {counts['skipped']}"
                )
            if loop is None:
                return
            time.sleep(loop)
