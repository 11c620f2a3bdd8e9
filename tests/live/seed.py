"""Seed the live provider's database (``manage.py shell -c``): the user of the races."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model

get_user_model().objects.create_user(
    "alice", "alice@example.com", os.environ["CELLS_OIDC_LIVE_PASSWORD"], first_name="Alice"
)
print("seeded")
