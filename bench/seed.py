"""Seed the benchmark's database (run inside the server's settings by bench/run.py, through
``manage.py shell``): authorization codes, live refresh tokens and filler sign-ins.

The rows are what the provider itself stores (``validators.save_authorization_code`` and the
token endpoint): a ``Grant`` with an S256 challenge and its ``TokenFamily`` for a code; a
``TokenFamily``, an ``AccessToken`` and a ``RefreshToken`` (SHA-256 checksums, RFC 9700 §4) for a
sign-in. Minting them directly is only faster than the browser flow; the benchmark then spends
each one through the real token endpoint, once.

Environment: ``BENCH_SEED_OUT`` (JSON written there), ``BENCH_SEED_CODES``, ``BENCH_SEED_REFRESH``,
``BENCH_SEED_FILLER`` (sign-ins nobody uses, for P4), ``BENCH_SEED_BATCH``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)

from cells_oidc.models import TokenFamily, checksum

CLIENT_ID = "cells-client"
SCOPE = "openid email profile pydio offline"
USERNAME = "alice"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def seed_codes(count: int, *, client: Any, user: Any, redirect_uri: str, verifier: str) -> list[str]:
    """``count`` authorization codes of ``user`` for ``client``, each with its sign-in row."""
    now = timezone.now()
    codes = [secrets.token_urlsafe(24) for _ in range(count)]
    grants = [
        get_grant_model()(
            application=client,
            user=user,
            code=code,
            expires=now + timedelta(hours=2),
            redirect_uri=redirect_uri,
            scope=SCOPE,
            code_challenge=_s256(verifier),
            code_challenge_method="S256",
            nonce="",
            claims="{}",
            resource=[],
        )
        for code in codes
    ]
    families = [
        TokenFamily(
            application=client,
            user=user,
            code_checksum=checksum(code),
            auth_time=now,
            scope=SCOPE,
            redirect_uri=redirect_uri,
        )
        for code in codes
    ]
    with transaction.atomic():
        get_grant_model().objects.bulk_create(grants, batch_size=2000)
        TokenFamily.objects.bulk_create(families, batch_size=2000)
    return codes


def seed_sign_ins(count: int, *, client: Any, user: Any, batch: int, keep: bool) -> list[str]:
    """``count`` live sign-ins (family, access token, refresh token); their refresh tokens when
    ``keep`` (else random filler whose values nobody knows)."""
    access_model = get_access_token_model()
    refresh_model = get_refresh_token_model()
    kept: list[str] = []
    done = 0
    while done < count:
        size = min(batch, count - done)
        now = timezone.now()
        families = [
            TokenFamily(
                id=uuid.uuid4(),
                application=client,
                user=user,
                auth_time=now,
                redeemed=now,
                scope=SCOPE,
            )
            for _ in range(size)
        ]
        accesses = [
            access_model(
                user=user,
                application=client,
                token="",
                token_checksum=secrets.token_hex(32),
                expires=now + timedelta(hours=2),
                scope=SCOPE,
                resource=[],
            )
            for _ in range(size)
        ]
        values = [secrets.token_urlsafe(30) for _ in range(size)]
        with transaction.atomic():
            TokenFamily.objects.bulk_create(families)
            access_model.objects.bulk_create(accesses)
            if accesses[0].pk is None:  # a backend that returns no ids (not SQLite 3.35+, not PG)
                raise RuntimeError("bulk_create returned no primary keys")
            refresh_model.objects.bulk_create(
                [
                    refresh_model(
                        user=user,
                        application=client,
                        token="",
                        token_checksum=checksum(value),
                        access_token=access,
                        token_family=family.pk,
                        resource=[],
                    )
                    for value, access, family in zip(values, accesses, families, strict=True)
                ]
            )
        if keep:
            kept.extend(values)
        done += size
    return kept


def settle(models: list[Any]) -> None:
    """Bring the database to the steady state a site's is in, after a bulk load: statistics up to
    date and the load's maintenance done (VACUUM ANALYZE and a checkpoint on PostgreSQL, ANALYZE
    and a WAL checkpoint on SQLite, then the machine's dirty pages written out), so that P4 measures
    the tables' size, not the autovacuum, checkpoint and writeback the load itself set off."""
    from django.db import DatabaseError, connection

    tables = [connection.ops.quote_name(model._meta.db_table) for model in models]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
            try:
                cursor.execute("CHECKPOINT")
            except DatabaseError:  # needs superuser or pg_checkpoint: the vacuum is what matters
                pass
        elif connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # The load's files are written by then, but the kernel's writeback of them would still run
    # during the measurement (a server without fsync leaves it all to the kernel): flush it now.
    os.sync()


def main() -> None:
    started = time.monotonic()
    client = get_application_model().objects.get(client_id=CLIENT_ID)
    user = get_user_model().objects.get(username=USERNAME)
    redirect_uri = os.environ["BENCH_SEED_REDIRECT_URI"]
    verifier = secrets.token_urlsafe(48)
    batch = int(os.environ.get("BENCH_SEED_BATCH", "5000"))
    out: dict[str, Any] = {"verifier": verifier, "redirect_uri": redirect_uri, "client_id": CLIENT_ID}
    out["codes"] = seed_codes(
        int(os.environ.get("BENCH_SEED_CODES", "0")),
        client=client,
        user=user,
        redirect_uri=redirect_uri,
        verifier=verifier,
    )
    out["refresh"] = seed_sign_ins(
        int(os.environ.get("BENCH_SEED_REFRESH", "0")), client=client, user=user, batch=batch, keep=True
    )
    filler = int(os.environ.get("BENCH_SEED_FILLER", "0"))
    seed_sign_ins(filler, client=client, user=user, batch=batch, keep=False)
    if filler:
        settle([TokenFamily, get_access_token_model(), get_refresh_token_model(), get_grant_model()])
    with open(os.environ["BENCH_SEED_OUT"], "w") as handle:
        json.dump(out, handle)
    print(
        f"seeded {len(out['codes'])} codes, {len(out['refresh'])} refresh tokens, {filler} filler"
        f" sign-ins in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
