"""Benchmarks of the bearer-token hot path; prints ratios measured in one run (`make bench`).

The targets (issue 4: "verifies it fast without a database query per request"):
- verifying a JWT access token costs no database query, and a personal access token one;
- "last used" of a personal access token is written at most once a minute, not on every use;
- local JWT verification is a small part of a whole API request.

Absolute times depend on the (shared, noisy) machine; the ratios and the counts are what to read.
Nothing here is a pass/fail test: the test suite asserts the query counts.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

ROUNDS = 5
PER_ROUND = 300


def per_op(func: Callable[[], object]) -> float:
    """Median over rounds of the mean time of one call, in microseconds."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            func()
        samples.append((time.perf_counter() - start) / PER_ROUND * 1e6)
    return statistics.median(samples)


def queries(func: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        func()
    return len(captured.captured_queries)


def access_token() -> str:
    """A real access token, from the sign-in a Cells client makes."""
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD, SCOPE, Browser, code_from, token_request

    get_user_model().objects.create_user("bench", password=PASSWORD, email="bench@example.com")
    redirect_uri = "http://localhost:3000/servers/callback"
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": "b" * 16,
    }
    code = code_from(Browser().authorize(params, username="bench"), redirect_uri)["code"]
    response = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": "cells-client",
        }
    )
    import json

    return json.loads(response.content)["access_token"]


def main() -> None:
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    call_command("loaddata", "default_clients", verbosity=0)
    from django.contrib.auth import get_user_model

    from cells_oidc.internal import jws, pat, resource, tokens
    from cells_oidc.internal.validators import CellsOAuth2Validator

    jwt = access_token()
    user = get_user_model().objects.get(username="bench")
    personal = pat.mint(user, expires_in=timedelta(hours=24), scope="profile email pydio").secret
    http = Client()

    class OAuthRequest:
        uri = "http://testserver/a/user/me"

    def dot_lookup() -> object:
        return CellsOAuth2Validator().validate_bearer_token(jwt, [], OAuthRequest())

    def api_call() -> object:
        return http.get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {jwt}")

    def anonymous_call() -> object:
        return http.get("/a/user/me")

    from cells_oidc.conf import app_settings
    from cells_oidc.internal.endpoints import issuer

    def verify_only() -> object:
        return jws.verify(
            jwt,
            key_for=tokens.local_key_for,
            typ=jws.ACCESS_TOKEN_TYP,
            issuer=issuer(),
            audiences=app_settings.RESOURCE_AUDIENCE,
            required=jws.ACCESS_TOKEN_CLAIMS,
        )

    def authenticate_jwt() -> object:
        return resource.authenticate_token(jwt)

    def authenticate_pat() -> object:
        return resource.authenticate_token(personal)

    verify_us = per_op(verify_only)
    auth_us = per_op(authenticate_jwt)
    dot_us = per_op(dot_lookup)
    pat_us = per_op(authenticate_pat)
    api_us = per_op(api_call)
    anon_us = per_op(anonymous_call)
    with CaptureQueriesContext(connection) as captured:
        for _ in range(1000):
            authenticate_pat()
    pat_writes = sum(1 for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE"))

    rows = [
        ("JWT signature + claims, local", verify_us, queries(verify_only)),
        ("JWT + deny-list + user (DRF class)", auth_us, queries(authenticate_jwt)),
        ("DOT's database lookup of the token", dot_us, queries(dot_lookup)),
        ("personal access token (steady state)", pat_us, queries(authenticate_pat)),
        ("GET /a/user/me with the JWT", api_us, None),
        ("GET /a/user/me without a token (401)", anon_us, None),
    ]
    print("bearer-token hot path: microseconds per operation (median of rounds), queries per operation")
    for label, micros, count in rows:
        print(f"  {label:40} {micros:9.1f}" + (f"   queries: {count}" if count is not None else ""))
    print("ratios")
    print(f"  {'verification share of an API request':40} {verify_us / api_us:9.2f}")
    print(f"  {'authenticated / unauthenticated call':40} {api_us / anon_us:9.2f}")
    print(f"  {'local JWT / DOT database lookup':40} {verify_us / dot_us:9.2f}   (in-memory SQLite here)")
    print(f"  {'last-used writes per 1000 PAT uses':40} {pat_writes:9d}   (at most one a minute)")
    connection.creation.destroy_test_db(":memory:", verbosity=0)


if __name__ == "__main__":
    main()
