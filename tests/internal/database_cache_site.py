"""Django configured for the cache processes of tests/internal/test_caches.py: ``database`` (a
``DATABASES`` entry) with a ``cells_oidc.caches.DatabaseCache`` on ``table``."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings


def configure(database: dict[str, Any], table: str) -> None:
    settings.configure(
        DATABASES={"default": database},
        USE_TZ=True,
        CACHES={
            "default": {
                "BACKEND": "cells_oidc.caches.DatabaseCache",
                "LOCATION": table,
                "OPTIONS": {"MAX_ENTRIES": 1_000_000},
            }
        },
    )
    django.setup()
