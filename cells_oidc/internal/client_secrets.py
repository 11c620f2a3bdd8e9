"""Confidential clients' secrets: generated with 256 bits of entropy, shown once, stored as SHA-256.

DOT stores ``Application.client_secret`` with Django's password hasher (PBKDF2 by default, hundreds
of milliseconds per check), which the token endpoint would pay on every request. A password hasher
is slow to protect low-entropy secrets chosen by people; a secret of 256 random bits cannot be
guessed however fast the hash, so one SHA-256 is enough (the same reasoning as DOT's own token
checksums, RFC 9700 §4). Secrets live in :class:`cells_oidc.models.ClientSecret`, several per client
during a rotation: the old one keeps working until the end of the overlap.

A client that still has only DOT's hashed ``client_secret`` authenticates through DOT's check, once:
on its first success the secret moves to a ``ClientSecret`` row in the fast form and DOT's column is
made unusable. A secret shorter than :data:`MIN_FAST_LENGTH` (chosen by a person) is not moved: it
keeps DOT's slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import identify_hasher, make_password
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

__all__ = ["FAST_PREFIX", "MIN_FAST_LENGTH", "fast_digest", "generate", "issue", "verify"]

FAST_PREFIX = "sha256$"
#: Shortest secret stored with the fast hash (a DOT secret is 128 random characters; ours 43).
MIN_FAST_LENGTH = 32
#: ``last_used`` is written at most this often per secret.
LAST_USED_RESOLUTION = timedelta(hours=1)


def generate() -> str:
    """A new secret: 32 random bytes (256 bits), URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def fast_digest(secret: str) -> str:
    return FAST_PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _dot_secret_usable(stored: str) -> bool:
    try:
        identify_hasher(stored)
    except ValueError:
        return False
    return True


def _disable_dot_secret(application: Any) -> None:
    """DOT's column: an unusable value (``make_password(None)``), written without DOT's pre_save."""
    type(application)._base_manager.filter(pk=application.pk).update(client_secret=make_password(None))
    application.client_secret = make_password(None)


@transaction.atomic
def issue(application: Any, *, overlap: timedelta = timedelta(0), now: datetime | None = None) -> str:
    """Give ``application`` a new secret and return it (store only its hash; show it once).

    Every other secret of the client, DOT's included, stays valid for ``overlap`` and no longer.
    """
    from cells_oidc.models import ClientSecret

    now = now or timezone.now()
    ends = now + overlap
    existing = ClientSecret.objects.select_for_update().filter(application=application)
    existing.filter(expires__isnull=True).update(expires=ends)
    existing.filter(expires__gt=ends).update(expires=ends)
    stored = application.client_secret or ""
    if _dot_secret_usable(stored):
        # DOT's secret is carried over in its own (slow) form until the overlap ends.
        if overlap > timedelta(0):
            ClientSecret.objects.create(application=application, digest=stored, created=now, expires=ends)
        _disable_dot_secret(application)
    secret = generate()
    ClientSecret.objects.create(
        application=application, digest=fast_digest(secret), hint=secret[:4], created=now
    )
    return secret


def verify(application: Any, secret: str, *, dot_check: Callable[[str, str], bool]) -> bool:
    """Whether ``secret`` is a valid secret of ``application`` now.

    The fast digests are compared in constant time, every live one of the client (no early exit).
    ``dot_check`` is DOT's own check (``OAuth2Validator._check_secret``), for DOT-hashed secrets.
    """
    from cells_oidc.models import ClientSecret

    if not isinstance(secret, str):
        return False
    rows = list(
        ClientSecret.objects.filter(application=application).values("pk", "digest", "expires", "last_used")
    )
    if not rows:
        return _verify_dot_column(application, secret, dot_check)
    if not secret:
        return False
    now = timezone.now()
    live = [row for row in rows if row["expires"] is None or row["expires"] > now]
    presented = fast_digest(secret).encode("ascii")
    matched = None
    for row in live:
        if row["digest"].startswith(FAST_PREFIX):
            if hmac.compare_digest(presented, row["digest"].encode("ascii", "replace")) and matched is None:
                matched = row
    if matched is None:
        for row in live:
            if not row["digest"].startswith(FAST_PREFIX) and dot_check(secret, row["digest"]):
                matched = row
                if len(secret) >= MIN_FAST_LENGTH:
                    # Upgrade the carried-over secret to the fast form on its first use.
                    ClientSecret.objects.filter(pk=row["pk"], digest=row["digest"]).update(
                        digest=fast_digest(secret), hint=secret[:4]
                    )
                break
    if matched is None:
        return False
    if matched["last_used"] is None or matched["last_used"] < now - LAST_USED_RESOLUTION:
        ClientSecret.objects.filter(pk=matched["pk"]).update(last_used=now)
    return True


def _verify_dot_column(application: Any, secret: str, dot_check: Callable[[str, str], bool]) -> bool:
    """A client without ``ClientSecret`` rows: DOT's check of its column, then the upgrade."""
    from cells_oidc.models import ClientSecret

    stored = application.client_secret or ""
    if not dot_check(secret, stored):
        return False
    confidential = application.client_type == type(application).CLIENT_CONFIDENTIAL
    if confidential and secret and len(secret) >= MIN_FAST_LENGTH and _dot_secret_usable(stored):
        with transaction.atomic():
            # Only the request that flips DOT's column creates the row (two at once: one wins).
            model = type(application)._base_manager
            unusable = make_password(None)
            if model.filter(pk=application.pk, client_secret=stored).update(client_secret=unusable):
                application.client_secret = unusable
                ClientSecret.objects.create(
                    application=application,
                    digest=fast_digest(secret),
                    hint=secret[:4],
                    last_used=timezone.now(),
                )
                logger.info("The secret of client %s now has the fast hash.", application.client_id)
    return True
