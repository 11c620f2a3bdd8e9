"""``manage.py cells_oidc_cleanup``: what goes, what stays, in batches, on 100,000+ rows."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken, DeviceGrant, Grant, RefreshToken

from cells_oidc.internal import revocation
from cells_oidc.models import Client, Consent, PersonalAccessToken, TokenFamily, checksum
from tests.conftest import Browser, code_from, pkce_pair, token_request

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("cells_oidc_cleanup", *args, stdout=out)
    return out.getvalue()


def seed(alice: Any, app: Any, n_expired: int, n_live: int, n_grants: int) -> None:
    now = timezone.now()
    old = now - timedelta(days=2)
    soon = now + timedelta(hours=1)
    AccessToken.objects.bulk_create(
        [
            AccessToken(user=alice, application=app, token=f"old-{i}", expires=old, scope="openid")
            for i in range(n_expired)
        ]
        + [
            AccessToken(user=alice, application=app, token=f"live-{i}", expires=soon, scope="openid")
            for i in range(n_live)
        ],
        batch_size=5000,
    )
    Grant.objects.bulk_create(
        [
            Grant(user=alice, application=app, code=f"c{i}", expires=old if i % 2 else soon, redirect_uri="x")
            for i in range(n_grants)
        ],
        batch_size=5000,
    )


def test_cleanup_of_100k_rows_in_batches(default_clients: None, alice: Any) -> None:
    app = Client.objects.get(client_id="cells-client")
    seed(alice, app, n_expired=20_000, n_live=5_000, n_grants=80_000)
    assert AccessToken.objects.count() + Grant.objects.count() >= 100_000
    started = time.monotonic()
    dry = run("--dry-run")
    assert "Would delete     20000 access tokens" in dry
    assert "Would delete     40000 authorization codes" in dry
    assert AccessToken.objects.count() == 25_000  # nothing deleted by a dry run

    with CaptureQueriesContext(connection) as queries:
        out = run("--batch-size", "2000")
    assert "Deleted     20000 access tokens" in out
    assert "Deleted     40000 authorization codes" in out
    # Progress lines every 10 batches, counts at the end.
    assert "authorization codes: 40000 deleted" in out
    # Every delete is bounded by the batch: one SELECT … LIMIT 2000 per batch, never a bulk DELETE
    # of the whole table.
    limits = [q["sql"] for q in queries.captured_queries if "LIMIT 2000" in q["sql"]]
    assert (
        len([sql for sql in limits if sql.startswith('SELECT "oauth2_provider_accesstoken"."id"')])
        == 20_000 // 2000 + 1
    )
    assert AccessToken.objects.count() == 5_000
    assert not AccessToken.objects.filter(token__startswith="old-").exists()
    assert Grant.objects.count() == 40_000
    assert not Grant.objects.filter(expires__lt=timezone.now()).exists()
    assert time.monotonic() - started < 120  # a shared CI machine: a bound, not a benchmark
    assert "Deleted         0" in run()  # idempotent


def test_what_is_kept_and_what_goes(default_clients: None, alice: Any, make_user: Any) -> None:
    now = timezone.now()
    app = Client.objects.get(client_id="cells-client")
    bob = make_user("bob")

    # An access token expired a moment ago may still verify (leeway): kept for now.
    just_expired = AccessToken.objects.create(
        user=alice, application=app, token="just", expires=now - timedelta(seconds=5)
    )
    expired_with_live_refresh = AccessToken.objects.create(
        user=alice, application=app, token="with-rt", expires=now - timedelta(days=1)
    )
    live_rt = RefreshToken.objects.create(
        user=alice, application=app, token="rt-live", access_token=expired_with_live_refresh
    )
    recently_revoked_rt = RefreshToken.objects.create(user=alice, application=app, token="rt-recent")
    RefreshToken.objects.filter(pk=recently_revoked_rt.pk).update(revoked=now - timedelta(days=1))
    old_revoked_rt = RefreshToken.objects.create(user=alice, application=app, token="rt-old")
    RefreshToken.objects.filter(pk=old_revoked_rt.pk).update(revoked=now - timedelta(days=30))
    too_old_rt = RefreshToken.objects.create(user=alice, application=app, token="rt-too-old")
    RefreshToken.objects.filter(pk=too_old_rt.pk).update(created=now - timedelta(days=365))

    DeviceGrant.objects.create(
        device_code="dead", user_code="AAAA", client_id="cells-client", expires=now - timedelta(minutes=1)
    )
    DeviceGrant.objects.create(
        device_code="alive", user_code="BBBB", client_id="cells-client", expires=now + timedelta(minutes=5)
    )
    Consent.objects.create(user=alice, application=app, scope="openid", expires=now - timedelta(seconds=1))
    Consent.objects.create(user=bob, application=app, scope="openid", expires=now + timedelta(days=1))

    def pat(label: str, **fields: Any) -> PersonalAccessToken:
        fields.setdefault("expires", now + timedelta(days=1))
        return PersonalAccessToken.objects.create(
            user=alice, label=label, token_checksum=checksum(label), hint=label[:8], **fields
        )

    pat("live")
    pat("revoked-yesterday", revoked=now - timedelta(days=1))
    pat("revoked-long-ago", revoked=now - timedelta(days=30))
    pat("expired-long-ago", expires=now - timedelta(days=30))

    def family(**fields: Any) -> TokenFamily:
        row = TokenFamily.objects.create(application=app, user=alice, auth_time=now)
        TokenFamily.objects.filter(pk=row.pk).update(**fields)
        return row

    dead_family = family(revoked=now - timedelta(days=30), created=now - timedelta(days=30))
    idle_empty_family = family(created=now - timedelta(days=30))
    recent_family = family(revoked=now - timedelta(days=1))
    family_with_tokens = family(revoked=now - timedelta(days=30), created=now - timedelta(days=30))
    RefreshToken.objects.create(
        user=alice, application=app, token="rt-fam", token_family=family_with_tokens.pk
    )

    out = run()
    assert "Deleted         1 consents" in out
    assert AccessToken.objects.filter(pk=just_expired.pk).exists()
    assert AccessToken.objects.filter(pk=expired_with_live_refresh.pk).exists()
    assert set(RefreshToken.objects.values_list("token", flat=True)) == {"rt-live", "rt-recent", "rt-fam"}
    assert RefreshToken.objects.get(pk=live_rt.pk).access_token_id == expired_with_live_refresh.pk
    assert list(DeviceGrant.objects.values_list("device_code", flat=True)) == ["alive"]
    assert list(Consent.objects.values_list("user__username", flat=True)) == ["bob"]
    assert set(PersonalAccessToken.objects.values_list("label", flat=True)) == {"live", "revoked-yesterday"}
    families = set(TokenFamily.objects.values_list("pk", flat=True))
    assert dead_family.pk not in families and idle_empty_family.pk not in families
    assert {recent_family.pk, family_with_tokens.pk} <= families

    # A smaller margin lets the recently revoked go too.
    run("--margin", "1h")
    assert set(RefreshToken.objects.values_list("token", flat=True)) == {"rt-live", "rt-fam"}
    assert set(PersonalAccessToken.objects.values_list("label", flat=True)) == {"live"}


def test_live_sign_in_survives_and_deleted_tokens_are_not_deny_listed(
    default_clients: None, alice: Any, browser: Browser, django_capture_on_commit_callbacks: Any
) -> None:
    redirect_uri = "http://localhost:3651/servers/callback"
    verifier, challenge = pkce_pair()
    params = code_from(
        browser.authorize(
            {
                "response_type": "code",
                "client_id": "cells-sync",
                "redirect_uri": redirect_uri,
                "scope": "openid offline",
                "state": "0123456789abcdef",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        ),
        redirect_uri,
    )
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "client_id": "cells-sync",
            "code_verifier": verifier,
        }
    )
    tokens = json.loads(exchange.content)
    app = Client.objects.get(client_id="cells-client")
    expired = AccessToken.objects.create(
        user=alice, application=app, token="expired-jwt", expires=timezone.now() - timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run()
    assert not AccessToken.objects.filter(pk=expired.pk).exists()
    assert not revocation.revocation_cache().get(revocation.KEY_PREFIX + checksum("expired-jwt"))
    # The sign-in still refreshes.
    refreshed = token_request(
        {"grant_type": "refresh_token", "client_id": "cells-sync", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.content


def test_bad_arguments() -> None:
    with pytest.raises(CommandError, match="batch-size"):
        run("--batch-size", "0")
    with pytest.raises(CommandError, match="Not a duration"):
        run("--margin", "forever")


def test_audit_events_past_retention_go(settings: Any) -> None:
    from cells_oidc.models import AuditEvent

    settings.CELLS_OIDC_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        [AuditEvent(event="sign_in_failed", time=now - timedelta(days=31)) for _ in range(3)]
        + [AuditEvent(event="sign_in_failed", time=now - timedelta(days=29))]
    )
    assert "Would delete         3 audit events" in run("--dry-run")
    assert "Deleted         3 audit events" in run("--batch-size", "2")
    assert AuditEvent.objects.count() == 1
    settings.CELLS_OIDC_AUDIT_RETENTION_DAYS = 0  # kept for ever
    AuditEvent.objects.update(time=now - timedelta(days=3650))
    assert "Deleted         0 audit events" in run()


def test_back_channel_logout_deliveries_made_or_given_up_long_ago_go(default_clients: None) -> None:
    from cells_oidc.models import LogoutDelivery

    app = Client.objects.get(client_id="cells-client")
    now = timezone.now()
    long_ago, lately = now - timedelta(days=8), now - timedelta(days=1)

    def delivery(**fields: Any) -> LogoutDelivery:
        return LogoutDelivery.objects.create(application=app, sid="s", sub="1", **fields)

    gone = [
        delivery(delivered_at=long_ago, last_attempt=long_ago, attempts=1),
        delivery(last_attempt=long_ago, attempts=5, error="HTTP 500"),  # given up
    ]
    kept = [
        delivery(delivered_at=lately, last_attempt=lately, attempts=1),
        delivery(last_attempt=lately, attempts=5, error="HTTP 500"),
        # Still pending, however old: the sender has not finished with it.
        delivery(next_attempt=now, last_attempt=long_ago, attempts=2, created=long_ago),
    ]
    assert "Would delete         2 back-channel logout deliveries" in run("--dry-run")
    assert "Deleted         2 back-channel logout deliveries" in run()
    remaining = set(LogoutDelivery.objects.values_list("pk", flat=True))
    assert remaining == {row.pk for row in kept}
    assert not remaining & {row.pk for row in gone}
