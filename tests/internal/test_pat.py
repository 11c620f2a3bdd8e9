"""Personal access tokens: format, the management command, use as a bearer token, expiry modes,
"last used" bookkeeping without a write per request, introspection and the admin."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cells_oidc.internal import pat
from cells_oidc.internal.jws import InvalidToken
from cells_oidc.models import PersonalAccessToken
from tests.kit import PASSWORD, basic, bearer_get, form_post

pytestmark = pytest.mark.django_db

ME = "/a/user/me"


def command(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command("cells_oidc_token", *args, stdout=out, **options)
    return out.getvalue()


def create(*args: str) -> tuple[str, PersonalAccessToken]:
    """Mint with the command (-v 0 prints only the secret) and return the secret and its row."""
    secret = command("create", "-v", "0", *args).strip()
    return secret, PersonalAccessToken.objects.get(token_checksum=hashlib.sha256(secret.encode()).hexdigest())


def stored_text() -> str:
    """Every value of every personal-token row, as text (to look for a leaked secret)."""
    return json.dumps(list(PersonalAccessToken.objects.values()), default=str)


# ---- the format --------------------------------------------------------------------------------
def test_format_has_prefix_random_body_and_checksum_a_scanner_can_verify() -> None:
    tokens = {pat.generate() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert re.fullmatch(pat.TOKEN_PATTERN, token)
        assert len(token) == pat.TOKEN_LENGTH == 54
        assert pat.is_well_formed(token)
    token = tokens.pop()
    # One changed character anywhere (here in the random part) breaks the CRC.
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert not pat.is_well_formed(flipped)
    assert not pat.is_well_formed(token[:-1])
    assert not pat.is_well_formed("gh" + token)
    assert not pat.is_well_formed(None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("24h", 86400), ("30d", 2592000), ("2w", 1209600), ("1h30m", 5400)],
)
def test_durations_like_cells(text: str, seconds: int) -> None:
    assert pat.parse_duration(text) == timedelta(seconds=seconds)
    assert pat.parse_duration(pat.format_duration(seconds)) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "10x", "-5m", "0s", "1h 30m", "h", "99999999999d", "1e3s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(pat.PersonalTokenError):
        pat.parse_duration(text)


# ---- the lifecycle through the command ------------------------------------------------------------
def test_command_lifecycle_created_used_listed_revoked_refused(alice: Any) -> None:
    out = command("create", "--user", "alice", "--expires", "24h", "--label", "backup script")
    secrets = re.findall(pat.TOKEN_PATTERN, out)
    assert len(secrets) == 1, out  # shown once
    secret = secrets[0]
    assert "cannot be shown again" in out
    token = PersonalAccessToken.objects.get()
    # Only the checksum is stored, nothing from which the secret could be read back.
    assert token.token_checksum == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in stored_text()
    assert secret[len(pat.PAT_PREFIX) + 4 :] not in stored_text()
    assert token.hint == secret[:9]
    assert token.label == "backup script"
    assert token.scope == "profile email pydio"
    assert abs((token.expires - timezone.now()) - timedelta(hours=24)) < timedelta(seconds=5)

    response = bearer_get(ME, secret)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["login"] == "alice"
    assert body["token"] == {
        "kind": "pat",
        "client_id": None,
        "scope": "email profile pydio",
        "expires_at": int(token.expires.timestamp()),
    }
    token.refresh_from_db()
    assert token.last_used is not None

    listing = command("list", "--user", "alice")
    assert f"{token.pk} " in listing and "backup script" in listing and token.hint in listing
    assert secret not in listing
    assert "active" in listing

    assert "Revoked token" in command("revoke", str(token.pk))
    refused = bearer_get(ME, secret)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused["WWW-Authenticate"]
    assert "already revoked" in command("revoke", str(token.pk))
    assert "No active personal access tokens." in command("list", "--user", "alice")
    assert "revoked" in command("list", "--user", "alice", "--all")


def test_secret_is_printed_once_and_never_again(alice: Any) -> None:
    secret, token = create("--user", "alice", "--expires", "1h")
    assert re.fullmatch(pat.TOKEN_PATTERN, secret)
    assert secret not in command("list", "--all") + command("revoke", str(token.pk))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--expires", "1h"], "No user"),
        (["--user", "alice", "--expires", "soon"], "not a duration"),
        (["--user", "alice", "--expires", "1h", "--max-lifetime", "2h"], "only applies"),
        (["--user", "alice", "--expires", "400d"], "at most"),
        (["--user", "alice", "--auto-refresh", "10m", "--max-lifetime", "400d"], "at most"),
        (["--user", "alice", "--auto-refresh", "30s"], "at least 1m"),
        (["--user", "alice", "--auto-refresh", "2h", "--max-lifetime", "1h"], "longer than"),
        (["--user", "alice", "--expires", "1h", "--scope", "pydio admin"], "Unknown"),
        (["--user", "alice", "--expires", "1h", "--scope", "offline"], "unsupported"),
        (["--user", "alice", "--expires", "1h", "--label", "a\nb"], "printable"),
    ],
)
def test_command_refuses_impossible_tokens(alice: Any, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        command("create", *args)
    assert not PersonalAccessToken.objects.exists()


def test_command_needs_exactly_one_expiry_mode(alice: Any) -> None:
    with pytest.raises(CommandError):
        command("create", "--user", "alice")
    with pytest.raises(CommandError):
        command("create", "--user", "alice", "--expires", "1h", "--auto-refresh", "10m")


def test_command_refuses_inactive_user_and_unknown_ids(make_user: Any) -> None:
    make_user("bob", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        command("create", "--user", "bob", "--expires", "1h")
    with pytest.raises(CommandError, match="No personal access token with id 999"):
        command("revoke", "999")


def test_scope_option(alice: Any) -> None:
    secret, token = create("--user", "alice", "--expires", "1h", "--scope", "pydio")
    assert token.scope == "pydio"
    # /a/user/me needs "profile": the token works, but not there.
    response = bearer_get(ME, secret)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert Client().get("/a/tokens", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


# ---- refusals ----------------------------------------------------------------------------------
def test_fixed_expiry_in_the_past_is_refused(alice: Any) -> None:
    secret, token = create("--user", "alice", "--expires", "1h")
    assert bearer_get(ME, secret).status_code == 200
    PersonalAccessToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert bearer_get(ME, secret).status_code == 401
    # A fixed expiry is never pushed forward by use.
    assert PersonalAccessToken.objects.get(pk=token.pk).expires < timezone.now()


def test_inactive_user_unknown_and_malformed_tokens_are_refused(alice: Any) -> None:
    secret, _token = create("--user", "alice", "--expires", "1h")
    alice.is_active = False
    alice.save()
    assert bearer_get(ME, secret).status_code == 401
    unknown = pat.generate()
    with pytest.raises(InvalidToken):
        pat.authenticate_pat(unknown)
    assert bearer_get(ME, unknown).status_code == 401


def test_malformed_token_costs_no_query(alice: Any, django_assert_num_queries: Any) -> None:
    secret, _token = create("--user", "alice", "--expires", "1h")
    forged = secret[:-1] + ("0" if secret[-1] != "0" else "1")  # wrong CRC
    with django_assert_num_queries(0):
        for token in (forged, "cpat_short", pat.PAT_PREFIX + "x" * 49, secret + "A"):
            with pytest.raises(InvalidToken):
                pat.authenticate_pat(token)


# ---- auto-refresh ------------------------------------------------------------------------------
def test_auto_refresh_window_extends_on_use_but_never_past_max(alice: Any) -> None:
    secret, token = create("--user", "alice", "--auto-refresh", "10m", "--max-lifetime", "30d")
    assert token.auto_refresh_seconds == 600
    assert abs(token.max_expires - (token.created + timedelta(days=30))) < timedelta(seconds=5)
    window = timedelta(minutes=10)

    # Half of the window has gone by unused: a use pushes the expiry to now + 10 minutes.
    now = timezone.now()
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        expires=now + timedelta(minutes=5), last_used=now - timedelta(minutes=5)
    )
    assert bearer_get(ME, secret).status_code == 200
    token.refresh_from_db()
    assert abs(token.expires - (timezone.now() + window)) < timedelta(seconds=5)

    # Close to the absolute maximum: the push stops there.
    cap = timezone.now() + timedelta(minutes=3)
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        expires=timezone.now() + timedelta(minutes=1), max_expires=cap, last_used=None
    )
    assert bearer_get(ME, secret).status_code == 200
    token.refresh_from_db()
    assert token.expires == cap

    # Past the maximum: refused even though "expires" is still ahead.
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        expires=timezone.now() + timedelta(minutes=5), max_expires=timezone.now() - timedelta(seconds=1)
    )
    assert bearer_get(ME, secret).status_code == 401


def test_auto_refresh_token_left_unused_longer_than_its_window_expires(alice: Any) -> None:
    secret, token = create("--user", "alice", "--auto-refresh", "10m")
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        expires=timezone.now() - timedelta(seconds=1), last_used=timezone.now() - timedelta(minutes=11)
    )
    assert bearer_get(ME, secret).status_code == 401
    # And using it does not bring it back.
    assert PersonalAccessToken.objects.get(pk=token.pk).expires < timezone.now()


# ---- no write on every request --------------------------------------------------------------------
def updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_last_used_is_written_at_most_once_a_minute(alice: Any, django_assert_num_queries: Any) -> None:
    secret, token = create("--user", "alice", "--expires", "1h")
    # First use: one SELECT (token and user together) and one UPDATE of last_used.
    with django_assert_num_queries(2), CaptureQueriesContext(connection) as queries:
        pat.authenticate_pat(secret)
    assert len(updates(queries)) == 1
    first = PersonalAccessToken.objects.get(pk=token.pk).last_used
    # Right after: only the SELECT.
    for _ in range(3):
        with django_assert_num_queries(1):
            user, info = pat.authenticate_pat(secret)
    assert user == alice and info.kind == "pat" and info.token_id == str(token.pk)
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used == first
    # A minute later: written again.
    PersonalAccessToken.objects.filter(pk=token.pk).update(last_used=timezone.now() - timedelta(seconds=61))
    with django_assert_num_queries(2):
        pat.authenticate_pat(secret)
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used > first


def test_auto_refresh_push_is_not_a_write_per_request(alice: Any, django_assert_num_queries: Any) -> None:
    secret, token = create("--user", "alice", "--auto-refresh", "10m")
    pat.authenticate_pat(secret)
    pushed = PersonalAccessToken.objects.get(pk=token.pk).expires
    with django_assert_num_queries(1):
        pat.authenticate_pat(secret)
    assert PersonalAccessToken.objects.get(pk=token.pk).expires == pushed
    # Once the expiry lags more than a step (a minute) behind now + window, one UPDATE pushes it.
    PersonalAccessToken.objects.filter(pk=token.pk).update(expires=pushed - timedelta(seconds=90))
    with django_assert_num_queries(2):
        pat.authenticate_pat(secret)
    assert PersonalAccessToken.objects.get(pk=token.pk).expires >= pushed


def test_use_does_not_resurrect_a_token_revoked_meanwhile(alice: Any) -> None:
    secret, token = create("--user", "alice", "--auto-refresh", "10m")
    stale = PersonalAccessToken.objects.get(pk=token.pk)  # as read by a request in flight
    pat.revoke(PersonalAccessToken.objects.get(pk=token.pk))
    pat._touch(stale, timezone.now())
    fresh = PersonalAccessToken.objects.get(pk=token.pk)
    assert fresh.revoked is not None
    assert fresh.last_used is None  # the in-flight request's UPDATE matched no row


# ---- introspection -----------------------------------------------------------------------------
def test_introspect_answers_for_personal_tokens(alice: Any) -> None:
    secret, token = create("--user", "alice", "--expires", "1h", "--scope", "profile pydio")
    assert pat.introspect("eyJhbGciOi.not.a-pat") is None  # not ours to answer: other token types
    data = pat.introspect(secret)
    assert data is not None
    assert data["active"] is True
    assert data["scope"] == "profile pydio"
    assert data["sub"] == str(alice.pk) and data["username"] == "alice"
    assert data["exp"] == int(token.expires.timestamp())
    assert data["iss"] == "http://testserver/oidc/"
    assert "client_id" not in data
    pat.revoke(token)
    assert pat.introspect(secret) == {"active": False}
    assert pat.introspect(pat.generate()) == {"active": False}


def test_introspection_endpoint_answers_for_personal_tokens(alice: Any) -> None:
    from oauth2_provider.models import get_application_model

    get_application_model().objects.create(
        client_id="api-server",
        client_secret="s3cret-s3cret",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        name="A resource server",
    )
    secret, token = create("--user", "alice", "--expires", "1h")
    answer = form_post(
        "/oidc/oauth2/introspect", {"token": secret}, HTTP_AUTHORIZATION=basic("api-server", "s3cret-s3cret")
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["active"] is True and answer.json()["username"] == "alice"
    pat.revoke(token)
    answer = form_post(
        "/oidc/oauth2/introspect", {"token": secret}, HTTP_AUTHORIZATION=basic("api-server", "s3cret-s3cret")
    )
    assert answer.json() == {"active": False}


# ---- the admin ---------------------------------------------------------------------------------
@pytest.fixture
def admin_client(make_user: Any) -> Client:
    make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    return client


def test_admin_mints_a_token_and_shows_the_secret_once(admin_client: Client, alice: Any) -> None:
    form = admin_client.get("/admin/cells_oidc/personalaccesstoken/add/")
    assert form.status_code == 200
    response = admin_client.post(
        "/admin/cells_oidc/personalaccesstoken/add/",
        {
            "user": str(alice.pk),
            "label": "from the admin",
            "scope": "profile pydio",
            "mode": "auto",
            "duration": "10m",
            "max_lifetime": "7d",
        },
    )
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    secrets = re.findall(pat.TOKEN_PATTERN, response.content.decode())
    assert len(secrets) == 1
    token = PersonalAccessToken.objects.get()
    assert token.user == alice and token.auto_refresh_seconds == 600 and token.created_by.username == "root"
    assert secrets[0] not in stored_text()
    assert bearer_get(ME, secrets[0]).status_code == 200

    listing = admin_client.get("/admin/cells_oidc/personalaccesstoken/")
    change = admin_client.get(f"/admin/cells_oidc/personalaccesstoken/{token.pk}/change/")
    assert listing.status_code == change.status_code == 200
    for page in (listing, change):
        assert secrets[0] not in page.content.decode()
        assert token.hint in page.content.decode()

    # Only the label can be changed afterwards.
    edited = admin_client.post(
        f"/admin/cells_oidc/personalaccesstoken/{token.pk}/change/",
        {"label": "renamed", "scope": "openid offline", "expires": "2099-01-01 00:00:00"},
    )
    assert edited.status_code == 302, edited.content[:2000]
    token.refresh_from_db()
    assert token.label == "renamed" and token.scope == "profile pydio" and token.auto_refresh_seconds == 600

    revoked = admin_client.post(
        "/admin/cells_oidc/personalaccesstoken/",
        {"action": "revoke_selected", "_selected_action": [str(token.pk)]},
    )
    assert revoked.status_code == 302
    assert bearer_get(ME, secrets[0]).status_code == 401


def test_admin_form_refuses_impossible_tokens(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(
        "/admin/cells_oidc/personalaccesstoken/add/",
        {"user": str(alice.pk), "scope": "nonsense", "mode": "fixed", "duration": "1h"},
    )
    assert response.status_code == 200
    assert b"Unknown or unsupported scope" in response.content
    response = admin_client.post(
        "/admin/cells_oidc/personalaccesstoken/add/",
        {"user": str(alice.pk), "scope": "", "mode": "fixed", "duration": "forever"},
    )
    assert b"not a duration" in response.content
    assert not PersonalAccessToken.objects.exists()
