"""Personal access tokens on the account page: listed without secrets, revoked by their owner,
minted (when CELLS_OIDC_PAT_SELF_SERVICE is on) with the secret shown once."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from cells_oidc.internal import pat
from cells_oidc.internal.views.account import describe_duration
from cells_oidc.models import PersonalAccessToken, checksum
from tests.kit import bearer_get, signed_in
from tests.test_pages import assert_no_inline_code, assert_secure

pytestmark = pytest.mark.django_db

ACCOUNT = "/oidc/account/"
MINT = "/oidc/account/tokens/new"
ME = "/a/user/me"
SECRET_RE = re.compile(pat.TOKEN_PATTERN)


def tokens_section(html: str) -> str:
    start = html.index('<section aria-labelledby="tokens-heading"')
    return html[start : html.index("</section>", start)]


def mint_form(client: Client) -> dict[str, Any]:
    """The mint form of the account page, filled as the page fills it (defaults and nonce)."""
    html = client.get(ACCOUNT).content.decode()
    nonce = re.search(r'name="nonce" value="([A-Za-z0-9_-]+)"', html)
    assert nonce, "no mint form on the page"
    return {
        "nonce": nonce.group(1),
        "label": "nightly backup",
        "scope": ["profile", "pydio"],
        "mode": "fixed",
        "expires_in": "7d",
        "auto_refresh": "1d",
    }


@pytest.fixture
def self_service(settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True


# ---- the list --------------------------------------------------------------------------------------
def test_tokens_are_listed_without_secret_or_checksum(alice: Any, make_user: Any) -> None:
    fixed = pat.mint(alice, expires_in=timedelta(days=2), label="nightly backup", scope="profile pydio")
    refreshing = pat.mint(
        alice, auto_refresh=timedelta(minutes=10), max_lifetime=timedelta(days=30), label="sync script"
    )
    revoked = pat.mint(alice, expires_in=timedelta(days=2), label="old laptop")
    pat.revoke(revoked.token)
    forgotten = pat.mint(alice, expires_in=timedelta(days=2), label="long gone")
    PersonalAccessToken.objects.filter(pk=forgotten.token.pk).update(
        expires=timezone.now() - timedelta(days=31)
    )
    admin = make_user("root", is_staff=True)
    by_admin = pat.mint(alice, expires_in=timedelta(days=2), label="from the admin", created_by=admin)
    bobs = pat.mint(make_user("bob"), expires_in=timedelta(days=2), label="bob's secret script")
    bearer_get(ME, fixed.secret)  # "last used"

    response = signed_in().get(ACCOUNT)
    html = response.content.decode()
    section = tokens_section(html)
    assert response.status_code == 200
    assert_secure(response)
    assert_no_inline_code(html)
    for minted in (fixed, refreshing, revoked, by_admin, bobs, forgotten):
        assert minted.secret not in html
        assert minted.token.token_checksum not in html
        assert minted.secret[pat.HINT_LENGTH :][:12] not in html
    assert "bob's secret script" not in html and f"/tokens/{bobs.token.pk}/" not in html
    assert "long gone" not in section  # ended more than 30 days ago
    assert "nightly backup" in section and f"<code>{fixed.secret[: pat.HINT_LENGTH]}…</code>" in section
    assert "Know your name and login · Use your Cells files and folders" in section
    assert "last used" in section and "never used" in section
    assert "Expires after 10 minutes without use" in section
    assert "created for you by an administrator" in section
    # Active tokens have a Revoke button; a revoked one shows its status instead.
    for minted in (fixed, refreshing, by_admin):
        assert f'action="/oidc/account/tokens/{minted.token.pk}/revoke"' in section
    assert f"/tokens/{revoked.token.pk}/revoke" not in section
    entry = section[section.index("old laptop") :]
    assert 'class="badge ended">revoked<' in entry[: entry.index("</li>")]
    # Active tokens come first.
    assert section.index("nightly backup") < section.index("old laptop")


def test_a_user_without_tokens_is_told_so(alice: Any) -> None:
    assert "You have no personal access token." in signed_in().get(ACCOUNT).content.decode()


# ---- revoking --------------------------------------------------------------------------------------
def test_revoking_an_own_token_makes_it_refused(alice: Any) -> None:
    minted = pat.mint(alice, expires_in=timedelta(days=2), label="nightly backup")
    assert bearer_get(ME, minted.secret).status_code == 200
    client = signed_in()
    response = client.post(f"/oidc/account/tokens/{minted.token.pk}/revoke")
    assert response.status_code == 303
    assert response["Location"] == "/oidc/account/?done=token-revoked#tokens"
    refused = bearer_get(ME, minted.secret)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused["WWW-Authenticate"]
    page = client.get(response["Location"]).content.decode()
    assert "Personal access token revoked." in page
    assert 'class="badge ended">revoked<' in tokens_section(page)
    # Revoking again changes nothing and says the same.
    again = client.post(f"/oidc/account/tokens/{minted.token.pk}/revoke")
    assert again.status_code == 303 and bearer_get(ME, minted.secret).status_code == 401


def test_nobody_revokes_someone_elses_token(alice: Any, make_user: Any) -> None:
    bobs = pat.mint(make_user("bob"), expires_in=timedelta(days=2), label="bob's script")
    client = signed_in()
    response = client.post(f"/oidc/account/tokens/{bobs.token.pk}/revoke")
    assert response.status_code == 404
    assert_secure(response)
    assert "does not exist or is not yours" in response.content.decode()
    assert PersonalAccessToken.objects.get(pk=bobs.token.pk).revoked is None
    assert bearer_get(ME, bobs.secret).status_code == 200
    # Unknown ids get the same answer, whatever their size.
    for pk in (bobs.token.pk + 1000, 10**30):
        assert client.post(f"/oidc/account/tokens/{pk}/revoke").status_code == 404


def test_anonymous_visitors_cannot_mint_or_revoke(alice: Any, settings: Any) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    minted = pat.mint(alice, expires_in=timedelta(days=2))
    anonymous = Client()
    for path in (f"/oidc/account/tokens/{minted.token.pk}/revoke", MINT):
        response = anonymous.post(
            path, {"label": "x", "scope": "profile", "mode": "fixed", "expires_in": "1h"}
        )
        assert response.status_code == 302 and response["Location"].startswith("/oidc/login/?next=")
    assert PersonalAccessToken.objects.count() == 1
    assert bearer_get(ME, minted.secret).status_code == 200


def test_account_token_forms_need_csrf(alice: Any, self_service: None) -> None:
    minted = pat.mint(alice, expires_in=timedelta(days=2))
    client = signed_in(enforce_csrf_checks=True)
    form = mint_form(client)
    assert client.post(f"/oidc/account/tokens/{minted.token.pk}/revoke").status_code == 403
    assert client.get(f"/oidc/account/tokens/{minted.token.pk}/revoke").status_code == 405
    assert client.post(MINT, form).status_code == 403
    assert PersonalAccessToken.objects.count() == 1 and bearer_get(ME, minted.secret).status_code == 200
    # With the token the page's forms carry, both work.
    html = client.get(ACCOUNT).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', tokens_section(html)).group(1)
    assert client.post(MINT, {**form, "csrfmiddlewaretoken": csrf}).status_code == 200
    revoke = client.post(f"/oidc/account/tokens/{minted.token.pk}/revoke", {"csrfmiddlewaretoken": csrf})
    assert revoke.status_code == 303 and bearer_get(ME, minted.secret).status_code == 401


# ---- minting ---------------------------------------------------------------------------------------
def test_minting_shows_the_secret_once_and_it_works(
    alice: Any, self_service: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = signed_in()
    form = mint_form(client)
    response = client.post(MINT, form)
    html = response.content.decode()
    assert response.status_code == 200
    assert_secure(response)
    assert_no_inline_code(html)
    secrets_shown = SECRET_RE.findall(html)
    assert len(set(secrets_shown)) == 1
    secret = secrets_shown[0]
    assert pat.is_well_formed(secret)
    assert html.count(secret) == 1  # in the field to copy, nowhere else (not in the title, not twice)
    assert 'data-copy="secret"' in html and "/static/cells_oidc/copy.js" in html
    assert "shown only this once" in html
    # Only its checksum is stored; it works as a bearer token with the chosen scopes.
    token = PersonalAccessToken.objects.get(user=alice)
    assert token.token_checksum == checksum(secret) and secret[pat.HINT_LENGTH :] not in token.hint
    assert token.label == "nightly backup" and token.scope == "profile pydio"
    assert token.auto_refresh_seconds is None
    assert abs((token.expires - timezone.now()) - timedelta(days=7)) < timedelta(minutes=1)
    assert token.created_by == alice
    profile = bearer_get(ME, secret)
    assert profile.status_code == 200
    assert profile.json()["login"] == "alice" and profile.json()["token"]["kind"] == "pat"
    assert profile.json()["token"]["scope"] == "profile pydio"
    # Never in the session (nor its stored form), never in a log.
    assert secret not in repr(dict(client.session.items()))
    for row in Session.objects.all():
        assert secret not in row.get_decoded().__repr__() and secret not in row.session_data
    logged = [record.getMessage() + repr(record.args) for record in caplog.records]
    assert logged and not [line for line in logged if secret in line or secret[9:25] in line]
    # A reload sends the same form again: no second token, no secret.
    reload = client.post(MINT, form)
    assert reload.status_code == 409
    assert not SECRET_RE.search(reload.content.decode())
    assert "was already shown" in reload.content.decode() and "nightly backup" in reload.content.decode()
    assert PersonalAccessToken.objects.filter(user=alice).count() == 1
    # Opening the address again, or the account page, shows no secret either.
    again = client.get(MINT)
    assert again.status_code == 303 and again["Location"] == "/oidc/account/#tokens"
    page = client.get(ACCOUNT).content.decode()
    assert secret not in page and not SECRET_RE.search(page)
    assert "nightly backup" in tokens_section(page)


def test_minting_an_auto_refreshing_token(alice: Any, self_service: None, settings: Any) -> None:
    settings.CELLS_OIDC_PAT_MAX_LIFETIME = 90 * 86400
    client = signed_in()
    form = {**mint_form(client), "mode": "auto_refresh", "auto_refresh": "1h", "scope": ["email"]}
    response = client.post(MINT, form)
    assert response.status_code == 200
    assert "after 1 hour without use" in response.content.decode()
    secret = SECRET_RE.search(response.content.decode()).group(0)
    token = PersonalAccessToken.objects.get(user=alice)
    assert token.auto_refresh_seconds == 3600 and token.scope == "email"
    assert abs(token.max_expires - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    # "email" alone does not open the profile endpoint: the token has exactly the chosen scopes.
    assert bearer_get(ME, secret).status_code == 403


def test_each_form_mints_once_but_a_new_form_mints_again(alice: Any, self_service: None) -> None:
    client = signed_in()
    first, second = mint_form(client), mint_form(client)
    assert first["nonce"] != second["nonce"]
    assert client.post(MINT, first).status_code == 200
    assert client.post(MINT, second).status_code == 200
    assert client.post(MINT, first).status_code == 409
    assert PersonalAccessToken.objects.filter(user=alice).count() == 2
    # A double click: the second POST arrives before the session of the first one is saved (here,
    # another session of the same user); the cache claim of the form refuses it all the same.
    third = mint_form(client)
    assert client.post(MINT, third).status_code == 200
    racing = signed_in().post(MINT, third)
    assert racing.status_code == 409 and not SECRET_RE.search(racing.content.decode())
    assert PersonalAccessToken.objects.filter(user=alice).count() == 3


def test_minting_is_refused_when_the_setting_is_off(alice: Any) -> None:
    client = signed_in()
    page = client.get(ACCOUNT).content.decode()
    section = tokens_section(page)
    assert "does not let you create personal access tokens yourself" in section
    assert MINT not in section and 'name="nonce"' not in section
    form = {
        "nonce": "A" * 22,
        "label": "sneaky",
        "scope": ["profile"],
        "mode": "fixed",
        "expires_in": "1h",
        "auto_refresh": "1d",
    }
    response = client.post(MINT, form)
    assert response.status_code == 403
    assert_secure(response)
    assert "Nothing was created." in response.content.decode()
    assert not SECRET_RE.search(response.content.decode())
    assert not PersonalAccessToken.objects.exists()


def test_impossible_tokens_are_refused_and_the_form_kept(
    alice: Any, self_service: None, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_MAX_LIFETIME = 45 * 86400
    client = signed_in()
    form = mint_form(client)
    html = client.get(ACCOUNT).content.decode()
    # Only durations within the maximum lifetime are offered (and the maximum itself).
    assert '<option value="45d">45 days</option>' in html and 'value="90d"' not in html
    cases: list[tuple[dict[str, Any], str]] = [
        ({"label": ""}, "Say what the token is for"),
        ({"scope": []}, "Choose at least one permission."),
        ({"scope": ["profile", "offline"]}, "Select a valid choice."),
        ({"scope": ["profile", "made-up"]}, "Select a valid choice."),
        ({"expires_in": "90d"}, "Select a valid choice."),
        ({"mode": "auto_refresh", "auto_refresh": "90d"}, "Select a valid choice."),
        ({"mode": "forever"}, "Select a valid choice."),
        ({"label": "x" * 101}, "at most 100 characters"),
        ({"label": "bell\x07"}, "The label must be at most 100 printable characters."),
        ({"nonce": "not-a-nonce"}, "This form was out of date."),
    ]
    for change, message in cases:
        response = client.post(MINT, {**form, **change})
        html = response.content.decode()
        assert response.status_code == 400, change
        assert message in html, (change, html[html.find("mint-errors") :][:600])
        assert 'role="alert"' in html and not SECRET_RE.search(html)
        if "label" not in change:
            assert 'value="nightly backup"' in html  # what the user typed is kept
        if "nonce" in change:
            assert "not-a-nonce" not in html and re.search(r'name="nonce" value="[A-Za-z0-9_-]{22}"', html)
    assert not PersonalAccessToken.objects.exists()
    # The fixed and auto-refresh durations of a valid request are those of the chosen mode only.
    ok = client.post(MINT, {**form, "expires_in": "45d", "auto_refresh": "not a duration"})
    assert ok.status_code == 400  # a tampered field of the other mode is still refused
    ok = client.post(MINT, {**form, "expires_in": "45d"})
    assert ok.status_code == 200
    token = PersonalAccessToken.objects.get(user=alice)
    assert abs((token.expires - timezone.now()) - timedelta(days=45)) < timedelta(minutes=1)


def test_inactive_or_signed_out_users_mint_nothing(alice: Any, self_service: None) -> None:
    client = signed_in()
    form = mint_form(client)
    alice.is_active = False
    alice.save()
    response = client.post(MINT, form)
    # Django's ModelBackend ends the session of an inactive user: back to the login page.
    assert response.status_code == 302 and "/oidc/login/" in response["Location"]
    assert not PersonalAccessToken.objects.exists()


@pytest.mark.parametrize(
    "seconds, words",
    [
        (60, "1 minute"),
        (600, "10 minutes"),
        (5400, "90 minutes"),
        (3600, "1 hour"),
        (86400, "1 day"),
        (90000, "25 hours"),
        (7 * 86400, "1 week"),
        (30 * 86400, "30 days"),
        (365 * 86400, "1 year"),
        (61, "61 seconds"),
    ],
)
def test_durations_in_plain_words(seconds: int, words: str) -> None:
    assert describe_duration(seconds) == words
