"""Seed the provider's database (run with ``manage.py shell -c``): a user and a confidential client.

Reads ``CELLS_OIDC_REMOTE_PASSWORD`` and ``CELLS_OIDC_REMOTE_CLIENT_SECRET`` from the environment.
"""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from oauth2_provider.models import get_application_model

user = get_user_model().objects.create_user(
    "alice", "alice@example.com", os.environ["CELLS_OIDC_REMOTE_PASSWORD"], first_name="Alice"
)
application = get_application_model()
application.objects.create(
    client_id="files-api",
    name="Files API (resource server)",
    client_type=application.CLIENT_CONFIDENTIAL,
    authorization_grant_type=application.GRANT_CLIENT_CREDENTIALS,
    client_secret=os.environ["CELLS_OIDC_REMOTE_CLIENT_SECRET"],
    algorithm=application.RS256_ALGORITHM,
)
print(f"seeded user={user.pk}")
