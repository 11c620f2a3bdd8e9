"""Admin tools: the redirect-URI tester on the client page, searchable sign-ins, read-only consents
and client secrets (never a token or secret value shown)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from cells_oidc.internal.redirects import explain
from cells_oidc.models import Client as OAuthClient
from cells_oidc.models import ClientSecret, Consent, TokenFamily
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(default_clients: None, make_user: Any) -> Client:
    make_user("root", is_staff=True, is_superuser=True)
    http = Client()
    assert http.login(username="root", password=PASSWORD)
    return http


def change_url(client_id: str) -> str:
    return f"/admin/cells_oidc/client/{OAuthClient.objects.get(client_id=client_id).pk}/change/"


def shown_result(response: Any) -> str:
    match = re.search(r'<p id="redirect-test-result"[^>]*>(.*?)</p>', response.content.decode(), re.S)
    assert match, "no result shown"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_the_client_page_shows_the_tester_box(admin_client: Client) -> None:
    page = admin_client.get(change_url("cells-sync"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="redirect-tester"' in html and 'name="test_redirect_uri"' in html
    # A separate form after the change form, never nested in it.
    assert html.index('id="redirect-tester"') > html.index("</form>")
    assert 'id="redirect-test-result"' not in html


@pytest.mark.parametrize(
    ("uri", "allowed", "says"),
    [
        (
            "http://localhost:3651/servers/callback",
            True,
            "Allowed. Matches http://localhost:[3636-3666]/servers/callback: the port is within its range.",
        ),
        ("http://localhost:4000/servers/callback", False, "outside the range"),
        ("http://localhost:3651/servers/callback#frag", False, "fragment"),
        ("https://evil.example/servers/callback", False, "No registered redirect URI has this host"),
        ("http://localhost:3651/servers/callbackX", False, "compared exactly"),
    ],
)
def test_submitting_a_uri_says_whether_it_matches_and_why(
    admin_client: Client, uri: str, allowed: bool, says: str
) -> None:
    page = admin_client.get(change_url("cells-sync") + "?" + urlencode({"test_redirect_uri": uri}))
    assert page.status_code == 200
    result = shown_result(page)
    assert result.startswith("Allowed." if allowed else "Refused."), result
    assert says in result
    assert f'value="{uri}"' in page.content.decode().replace("&amp;", "&")
    # The verdict is the authorization endpoint's own.
    assert explain(uri, OAuthClient.objects.get(client_id="cells-sync").redirect_uris, []).matched is allowed


def test_server_name_is_explained_with_the_site_url(admin_client: Client) -> None:
    page = admin_client.get(change_url("cells-client") + "?test_redirect_uri=http://testserver/oauth2/oob")
    assert "serverName stands for this site" in shown_result(page)


def test_the_tester_escapes_what_it_shows(admin_client: Client) -> None:
    uri = 'https://x.example/"><script>alert(1)</script>'
    page = admin_client.get(change_url("cells-sync") + "?" + urlencode({"test_redirect_uri": uri}))
    assert page.status_code == 200
    assert b"<script>alert(1)</script>" not in page.content
    assert shown_result(page).startswith("Refused.")


def test_the_change_form_still_saves(admin_client: Client) -> None:
    from tests.test_admin import form_data

    page = admin_client.get(change_url("cells-sync") + "?test_redirect_uri=cellsauth://x")
    response = admin_client.post(change_url("cells-sync"), form_data(page))
    assert response.status_code == 302, response.content[:2000]


def test_staff_without_permission_cannot_use_the_tester(default_clients: None, make_user: Any) -> None:
    make_user("clerk", is_staff=True)
    http = Client()
    assert http.login(username="clerk", password=PASSWORD)
    assert http.get(change_url("cells-sync") + "?test_redirect_uri=x").status_code == 403


def test_sign_ins_are_searchable_by_user_and_client(admin_client: Client, make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob", email="bob@corp.example")
    sync = OAuthClient.objects.get(client_id="cells-sync")
    mobile = OAuthClient.objects.get(client_id="cells-mobile")
    now = timezone.now()
    a = TokenFamily.objects.create(application=sync, user=alice, auth_time=now)
    b = TokenFamily.objects.create(application=mobile, user=bob, auth_time=now)

    def found(q: str) -> set[str]:
        page = admin_client.get("/admin/cells_oidc/tokenfamily/?" + urlencode({"q": q}))
        assert page.status_code == 200
        return {str(row.pk) for row in page.context["cl"].result_list}

    assert found("alice") == {str(a.pk)}
    assert found("corp.example") == {str(b.pk)}
    assert found("cells-mobile") == {str(b.pk)}
    assert found("nobody") == set()


def test_consents_are_read_only_and_can_be_withdrawn(admin_client: Client, make_user: Any) -> None:
    alice = make_user("alice")
    consent = Consent.objects.create(
        user=alice,
        application=OAuthClient.objects.get(client_id="cells-client"),
        scope="openid",
        expires=timezone.now() + timedelta(days=1),
    )
    listing = admin_client.get("/admin/cells_oidc/consent/?q=alice")
    assert listing.status_code == 200 and b"cells" in listing.content
    assert admin_client.get("/admin/cells_oidc/consent/add/").status_code == 403
    page = admin_client.get(f"/admin/cells_oidc/consent/{consent.pk}/change/")
    assert page.status_code == 200
    assert b'name="scope"' not in page.content  # shown, not editable
    response = admin_client.post(f"/admin/cells_oidc/consent/{consent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Consent.objects.exists()


def test_client_secrets_are_listed_never_shown(admin_client: Client) -> None:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("cells_oidc_client", "set", "partner", "--confidential", "--client-credentials", stdout=out)
    secret = re.search(r"stored\): (\S+)", out.getvalue()).group(1)
    page = admin_client.get(change_url("partner"))
    assert page.status_code == 200
    html = page.content.decode()
    row = ClientSecret.objects.get()
    assert secret not in html and row.digest not in html and row.digest.split("$")[1] not in html
    assert "rotate-secret" in html  # how to get a new one
