"""The demo site's front end: its pages and scripts, the cells-frontend client, its flow over HTTP
(as the page's JavaScript runs it) and, when Chromium is installed, the real page in a browser."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from cells_oidc.models import TokenFamily, policy_for
from tests.conftest import PASSWORD, Browser, code_from, pkce_pair, query, token_request

CALLBACK = "http://testserver/auth/callback"
HOME = "http://testserver/"
SCOPE = "openid profile email pydio offline"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# ---- the pages -----------------------------------------------------------------------------------
def script_tags(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>.*?</script>", html, flags=re.S | re.I)


@pytest.mark.parametrize("path", ["/", "/auth/callback"])
def test_page_is_served_with_its_script_and_a_strict_csp(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    html = response.content.decode()
    # One external module script and no inline code (the CSP below would block it anyway).
    assert script_tags(html) == ['<script type="module" src="/static/project/app.js"></script>']
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert "https://" not in html and "//cdn" not in html
    csp = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["default-src"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert csp["connect-src"] == "'self' http://testserver"
    # The client's configuration, for app.js.
    for attribute, value in {
        "data-issuer": "http://testserver/oidc/",
        "data-client-id": "cells-frontend",
        "data-redirect-uri": CALLBACK,
        "data-post-logout-redirect-uri": HOME,
        "data-api-me": "/a/user/me",
        "data-scope": SCOPE,
    }.items():
        assert f'{attribute}="{value}"' in html


def test_callback_page_is_never_cached_nor_leaks_the_code_as_referer() -> None:
    response = Client().get("/auth/callback?code=abc&state=xyz&iss=http%3A%2F%2Ftestserver%2Foidc%2F")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "same-origin"
    assert b"abc" not in response.content  # the page never echoes the code; its script reads it


def test_page_moves_to_the_configured_site_url() -> None:
    # Tokens and sign-in state are per origin, and the provider redirects only to the site URL.
    response = Client().get("/?x=1", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert response["Location"] == "http://testserver/?x=1"


def test_pages_only_answer_get_and_head() -> None:
    assert Client().post("/").status_code == 405
    assert Client().post("/auth/callback").status_code == 405


@pytest.mark.parametrize(
    "name", ["project/app.js", "project/oidc.js", "project/app.css", "project/api-docs.js"]
)
def test_static_assets_exist_and_are_local(name: str) -> None:
    path = finders.find(name)
    assert path, name
    text = Path(path).read_text()
    assert "http://" not in text and "https://" not in text and "import(" not in text
    if name.endswith(".js"):
        # Text only: no HTML built from data (labels and names are user input), no eval.
        assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(", text)
        assert "localStorage" not in text  # tokens never persist beyond the tab


def test_oidc_client_script_does_what_the_docs_say() -> None:
    source = Path(finders.find("project/oidc.js")).read_text()
    for needle in (
        'code_challenge_method: "S256"',
        'crypto.subtle.digest("SHA-256"',
        "crypto.getRandomValues",
        'params.get("state") !== pending.state',
        'params.get("iss") !== this.issuer',
        "claims.nonce !== nonce",
        'grant_type: "refresh_token"',
        "id_token_hint",
        "post_logout_redirect_uri",
        "sessionStorage.removeItem(PENDING_KEY)",
    ):
        assert needle in source, needle


# ---- the client and its flow over HTTP -----------------------------------------------------------------
@pytest.mark.django_db
def test_fixture_registers_cells_frontend_idempotently(default_clients: None) -> None:
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    before = model.objects.count()
    call_command("loaddata", "default_clients", verbosity=0)
    assert model.objects.count() == before
    app = model.objects.get(client_id="cells-frontend")
    assert app.client_type == model.CLIENT_PUBLIC
    assert app.authorization_grant_type == model.GRANT_AUTHORIZATION_CODE
    assert app.skip_authorization
    assert not app.client_secret
    policy = policy_for(app)
    assert policy.pk is not None and policy.require_pkce
    # The page lives on the site itself: no other app can claim its redirect URI (unlike a
    # native client's loopback port), so a signed-in user is not asked to confirm.
    assert not policy.confirm_existing_session


def authorize_params(challenge: str | None = None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "cells-frontend",
        "redirect_uri": CALLBACK,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
    }
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return params


def claims(jwt: str) -> dict[str, Any]:
    import base64

    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.django_db
def test_full_pkce_flow_of_the_page_over_http(default_clients: None, alice: Any, browser: Browser) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)
    answer = code_from(browser.authorize(params), CALLBACK)
    assert answer["state"] == params["state"]
    assert answer["iss"] == "http://testserver/oidc/"
    page = browser.http.get("/auth/callback?" + urlencode(answer))
    assert page.status_code == 200

    # What oidc.js does: fetch() from the page's origin.
    exchange = token_request(
        {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": CALLBACK,
            "client_id": "cells-frontend",
            "code_verifier": verifier,
        },
        HTTP_ORIGIN="http://testserver",
    )
    assert exchange.status_code == 200, exchange.content
    tokens = exchange.json()
    id_token = claims(tokens["id_token"])
    assert id_token["nonce"] == params["nonce"]
    assert id_token["aud"] in ("cells-frontend", ["cells-frontend"])
    assert id_token["iss"] == "http://testserver/oidc/"

    me = Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert me.status_code == 200 and me.json()["login"] == "alice"

    refreshed = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-frontend",
        },
        HTTP_ORIGIN="http://testserver",
    )
    assert refreshed.status_code == 200, refreshed.content
    tokens = refreshed.json()
    assert claims(tokens["id_token"])["sub"] == id_token["sub"]

    # RP-initiated logout with the hint: no question asked, back to the home page.
    logout = browser.http.get(
        "/oidc/oauth2/sessions/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": HOME,
                "client_id": "cells-frontend",
            }
        )
    )
    assert logout.status_code == 302, logout.content[:500]
    assert logout["Location"] == HOME
    # The sign-in ended with the session: its refresh token is dead.
    dead = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-frontend",
        }
    )
    assert dead.status_code == 400
    # And a silent sign-in (what the page tries on reload) now says login_required.
    silent = browser.http.get("/oidc/oauth2/auth?" + urlencode(authorize_params(challenge, prompt="none")))
    assert silent.status_code == 302
    assert query(silent["Location"])["error"] == "login_required"


@pytest.mark.django_db
def test_silent_sign_in_while_the_provider_session_lasts(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    _verifier, challenge = pkce_pair()
    code_from(browser.authorize(authorize_params(challenge)), CALLBACK)
    # A reload of the page: prompt=none, no page shown, a code straight away.
    silent = browser.http.get("/oidc/oauth2/auth?" + urlencode(authorize_params(challenge, prompt="none")))
    assert "code" in code_from(silent, CALLBACK)


@pytest.mark.django_db
def test_cells_frontend_requires_pkce_and_its_own_redirect_uri(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    without_pkce = browser.authorize(authorize_params())
    assert without_pkce.status_code == 302
    assert query(without_pkce["Location"])["error"] == "invalid_request"
    _verifier, challenge = pkce_pair()
    elsewhere = browser.authorize(
        authorize_params(challenge, redirect_uri="http://evil.example/auth/callback")
    )
    assert elsewhere.status_code == 400  # an error page, never a redirect to an unregistered URI
    assert not elsewhere.has_header("Location")


@pytest.mark.django_db
def test_logout_refuses_an_unregistered_post_logout_redirect(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    verifier, challenge = pkce_pair()
    code = code_from(browser.authorize(authorize_params(challenge)), CALLBACK)["code"]
    tokens = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": "cells-frontend",
            "code_verifier": verifier,
        }
    ).json()
    response = browser.http.get(
        "/oidc/oauth2/sessions/logout?"
        + urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "http://evil.example/"})
    )
    assert not (response.status_code == 302 and response["Location"].startswith("http://evil.example"))


# ---- the real page in Chromium -----------------------------------------------------------------------
@pytest.fixture
def live_site(live_server: Any, settings: Any, transactional_db: Any, monkeypatch: Any) -> str:
    """The demo site on a live server, its URL configured, with the default clients and alice."""
    from django.contrib.auth import get_user_model
    from oauth2_provider.settings import oauth2_settings

    settings.CELLS_OIDC_SITE_URL = live_server.url
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    # Access tokens of 6 s: the page refreshes them half-way through.
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ACCESS_TOKEN_EXPIRE_SECONDS": 6}
    assert oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS == 6
    call_command("loaddata", "default_clients", verbosity=0)
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD, first_name="Alice")
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are the test's own.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return live_server.url


class Page:
    """A Chromium tab on the site, recording script errors and the token requests of the page."""

    def __init__(self, playwright: Any, site: str) -> None:
        self.site = site
        self.chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        self.context = self.chromium.new_context()
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.token_requests: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if request.url.endswith("/oidc/oauth2/token"):
            self.token_requests.append(request.post_data or "")

    def sign_in_session(self, username: str = "alice") -> None:
        """Give the browser a provider session (as if the user had signed in earlier)."""
        client = Client()
        assert client.login(username=username, password=PASSWORD)
        cookie = client.cookies["sessionid"]
        self.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": self.site}])

    def close(self) -> None:
        self.chromium.close()


def assert_signed_in(tab: Page) -> None:
    from playwright.sync_api import expect

    page = tab.page
    expect(page.locator("#signed-in")).to_be_visible(timeout=15000)
    expect(page.locator('#signed-in [data-field="login"]')).to_have_text("alice")
    expect(page.locator('[data-field="email"]')).to_have_text("alice@example.com")
    # The code left the address bar; sessionStorage holds a flag only, no token anywhere.
    assert page.url == tab.site + "/"
    storage = page.evaluate("JSON.stringify({...sessionStorage, ...localStorage})")
    assert json.loads(storage) == {"cells-oidc:signed-in": "1"}
    expect(page.locator("#tokens")).to_contain_text("Cells Web Interface")


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_the_page_signs_in_refreshes_and_signs_out_in_a_browser(live_site: str) -> None:
    from django.contrib.auth import get_user_model
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        tab = Page(playwright, live_site)
        tab.sign_in_session()
        page = tab.page
        page.goto(live_site + "/")
        expect(page.locator("#signed-out")).to_be_visible()
        page.click("#sign-in")
        assert_signed_in(tab)
        exchange = [body for body in tab.token_requests if "grant_type=authorization_code" in body]
        assert (
            len(exchange) == 1
            and "code_verifier=" in exchange[0]
            and "client_id=cells-frontend" in exchange[0]
        )

        # Refreshed before expiry (6 s here), without the user doing anything.
        page.wait_for_timeout(4500)
        assert any("grant_type=refresh_token" in body for body in tab.token_requests), tab.token_requests
        expect(page.locator("#signed-in")).to_be_visible()

        # A reload signs in again silently (prompt=none) with the provider's session.
        page.reload()
        assert_signed_in(tab)

        page.click("#sign-out")
        expect(page.locator("#signed-out")).to_be_visible(timeout=15000)
        assert page.url == live_site + "/"
        page.reload()  # the provider's session ended: a reload stays signed out
        expect(page.locator("#signed-out")).to_be_visible(timeout=15000)
        tab.close()

    assert tab.problems == []
    alice = get_user_model().objects.get(username="alice")
    families = TokenFamily.objects.filter(user=alice, application__client_id="cells-frontend")
    assert families.count() == 2  # the first sign-in and the silent one after the reload
    assert not families.filter(revoked__isnull=True).exists()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_the_page_refuses_an_answer_it_did_not_ask_for(live_site: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        tab = Page(playwright, live_site)
        page = tab.page
        # A code injected by an attacker (login CSRF): no pending state in this tab.
        page.goto(
            live_site
            + "/auth/callback?"
            + urlencode({"code": "x" * 43, "state": "forged", "iss": live_site + "/oidc/"})
        )
        expect(page.locator("#error")).to_contain_text("invalid_state", timeout=15000)
        expect(page.locator("#signed-out")).to_be_visible()
        assert page.url == live_site + "/"
        tab.close()
    assert not tab.token_requests  # the code was never sent anywhere


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_sign_in_through_the_login_form_in_a_browser(live_site: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        tab = Page(playwright, live_site)
        page = tab.page
        page.goto(live_site + "/")
        page.click("#sign-in")
        page.wait_for_url(re.compile(r".*/oidc/login/.*"))
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        try:
            assert_signed_in(tab)
        finally:
            tab.close()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_api_docs_page_renders_the_openapi_document_in_a_browser(live_site: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        tab = Page(playwright, live_site)
        page = tab.page
        page.goto(live_site + "/a/docs")
        operations = page.locator(".operation")
        expect(operations.first).to_be_visible(timeout=15000)
        assert operations.count() == 6  # the operations of /a/
        text = re.sub(r"\s+", "", page.locator("#document").inner_text())
        for needle in ("GET/a/user/me", "POST/a/personal-tokens", "DELETE/a/tokens/{token_id}", "bearer"):
            assert needle in text, needle
        expect(page.locator("#status")).to_be_hidden()
        tab.close()
    assert tab.problems == []
