"""The pages people see: security headers, no inline code, errors, branding, login, consent, OOB."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import Application

from cells_oidc.internal import pages
from cells_oidc.models import Consent
from tests.kit import PASSWORD, SCOPE, Browser, code_from, signed_in

pytestmark = pytest.mark.django_db

THIRD_PARTY_REDIRECT = "https://notes.example.org/callback"


def assert_secure(response: Any, referrer_policy: str = "same-origin") -> None:
    """The headers every page must carry (see cells_oidc.internal.pages)."""
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe" not in csp
    assert response["X-Frame-Options"] == "DENY"
    # same-origin: URLs never leave the site in a Referer, and form POSTs keep their Origin
    # (with no-referrer, browsers send "Origin: null" and Django's CSRF check refuses the form).
    assert response["Referrer-Policy"] == referrer_policy
    assert f'<meta name="referrer" content="{referrer_policy}">' in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def assert_no_inline_code(html: str) -> None:
    """The CSP would block inline code anyway; the templates must not need any."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "javascript:" not in html


@pytest.fixture
def third_party(db: Any) -> Application:
    return Application.objects.create(
        client_id="notes",
        name="Notes App",
        client_type=Application.CLIENT_CONFIDENTIAL,
        client_secret="s3cret-" + "x" * 30,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=THIRD_PARTY_REDIRECT,
        skip_authorization=False,
        algorithm=Application.RS256_ALGORITHM,
    )


def third_party_params(scope: str = "openid profile email", **extra: str) -> dict[str, str]:
    from tests.kit import pkce_pair

    _verifier, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": "notes",
        "redirect_uri": THIRD_PARTY_REDIRECT,
        "scope": scope,
        "state": "st-" + "q" * 13,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


# ---- headers and markup of every page -------------------------------------------------------------
def test_every_page_is_secure_and_has_no_inline_code(
    default_clients: None, alice: Any, third_party: Any
) -> None:
    anonymous = Client()
    browser = Browser(signed_in())
    responses = {
        "login": anonymous.get("/oidc/login/?" + urlencode({"next": "/oidc/account/"})),
        "logged-out": anonymous.get("/oidc/logged-out/"),
        "oob": anonymous.get("/oauth2/oob?code=abcDEF123&state=s"),
        "oob-empty": anonymous.get("/oauth/oob"),
        "error": anonymous.get("/oidc/oauth2/auth?client_id=unknown&response_type=code"),
        "consent": browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params())),
        "device": browser.http.get("/oidc/device"),
        "account": browser.http.get("/oidc/account/"),
        "logout": browser.http.get("/oidc/oauth2/sessions/logout"),
    }
    for name, response in responses.items():
        assert response.status_code in (200, 400), name
        # The out-of-band page's URL holds an authorization code: no referrer at all.
        assert_secure(response, "no-referrer" if name.startswith("oob") else "same-origin")
        assert_no_inline_code(response.content.decode())
        assert b'href="/static/cells_oidc/cells_oidc.css"' in response.content, name


def test_csp_source() -> None:
    assert pages.csp_source("http://localhost:3000/servers/callback?x=1") == "http://localhost:3000"
    assert pages.csp_source("https://app.example.com/cb") == "https://app.example.com"
    assert pages.csp_source("http://[::1]:3636/cb") == "http://[::1]:3636"
    assert pages.csp_source("cellsauth://callback") == "cellsauth:"
    for bad in (
        "javascript:alert(1)",
        "data:text/html,x",
        "https://a.example; script-src *",
        "https://a.example/'unsafe-inline'",
        "https://a.example,evil",
        "",
        None,
        "http://",
        "http://exa mple.com/",
    ):
        assert pages.csp_source(bad) is None, bad


def test_form_action_allows_only_the_validated_redirect_target(
    default_clients: None, alice: Any, third_party: Any
) -> None:
    browser = Browser(signed_in())
    consent = browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params()))
    assert "form-action 'self' https://notes.example.org;" in consent["Content-Security-Policy"]
    # The login page of an authorization request allows the client's redirect URI, no other.
    auth = "/oidc/oauth2/auth?" + urlencode(
        {
            "response_type": "code",
            "client_id": "cells-mobile",
            "redirect_uri": "cellsauth://callback",
            "scope": SCOPE,
            "state": "abcdefgh12345",
        }
    )
    login = Client().get("/oidc/login/?" + urlencode({"next": auth}))
    assert "form-action 'self' cellsauth:;" in login["Content-Security-Policy"]
    forged = auth.replace("cellsauth%3A%2F%2Fcallback", "https%3A%2F%2Fevil.example%2F")
    login = Client().get("/oidc/login/?" + urlencode({"next": forged}))
    assert "form-action 'self';" in login["Content-Security-Policy"]


# ---- the error page -------------------------------------------------------------------------------
def test_error_page_explains_and_gives_a_request_id(db: Any) -> None:
    response = Client().get("/oidc/oauth2/auth?client_id=nobody&response_type=code&redirect_uri=x")
    assert response.status_code == 400
    html = response.content.decode()
    rid = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert rid in html
    assert "Traceback" not in html and "File &quot;" not in html
    assert "not registered" in html or "malformed" in html
    # A sane request id from the proxy is reused, so that logs of both match; a hostile one is not.
    given = Client().get("/oidc/oauth2/auth?client_id=nobody", HTTP_X_REQUEST_ID="edge-1234abcd")
    assert given["X-Request-ID"] == "edge-1234abcd"
    hostile = Client().get("/oidc/oauth2/auth?client_id=nobody", HTTP_X_REQUEST_ID="<script>x</script>")
    assert "<script>x" not in hostile.content.decode()
    assert hostile["X-Request-ID"] != "<script>x</script>"


# ---- branding -------------------------------------------------------------------------------------
def test_branding_comes_from_settings(db: Any, settings: Any) -> None:
    page = Client().get("/oidc/logged-out/")
    assert b"brand.css" not in page.content
    # The package's base template (the demo site overrides its brand block).
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]
    settings.CELLS_OIDC_SITE_NAME = "Acme Files"
    settings.CELLS_OIDC_LOGO_URL = "https://cdn.acme.example/logo.svg"
    settings.CELLS_OIDC_BRAND_COLORS = {"accent": "#0b6e4f", "text": "red; } body { x", "nope": "#fff"}
    page = Client().get("/oidc/logged-out/")
    html = page.content.decode()
    assert "Acme Files" in html
    assert '<img src="https://cdn.acme.example/logo.svg" alt="Acme Files">' in html
    assert "img-src 'self' https://cdn.acme.example;" in page["Content-Security-Policy"]
    assert 'href="/oidc/brand.css"' in html
    css = Client().get("/oidc/brand.css")
    assert css.status_code == 200
    assert css["Content-Type"].startswith("text/css")
    assert css.content.decode() == ":root {\n  --accent: #0b6e4f;\n}\n"


# ---- login ----------------------------------------------------------------------------------------
def auth_url(
    client_id: str = "cells-client", redirect_uri: str = "http://localhost:3000/servers/callback"
) -> str:
    return "/oidc/oauth2/auth?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": "a1b2c3d4e5f6g7h8",
        }
    )


def test_login_page_names_the_application_and_the_site(default_clients: None, alice: Any) -> None:
    page = Client().get("/oidc/login/?" + urlencode({"next": auth_url()}))
    html = page.content.decode()
    assert "Cells Client CLI Tool" in html
    assert "Cells demo" in html and "(testserver)" in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_login_failures_look_the_same_and_keep_the_request(default_clients: None, alice: Any) -> None:
    def attempt(username: str, password: str) -> str:
        response = Client().post(
            "/oidc/login/", {"username": username, "password": password, "next": auth_url()}
        )
        assert response.status_code == 200
        html = response.content.decode()
        assert 'role="alert"' in html and 'aria-invalid="true"' in html
        assert auth_url().replace("&", "&amp;") in html
        # Only the CSRF token and the echoed login may differ.
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        return html.replace(f'value="{username}"', 'value=""')

    assert attempt("alice", "wrong") == attempt("nobody", "wrong") == attempt("nobody@example.com", "x")


def test_login_page_says_who_is_signed_in(default_clients: None, alice: Any) -> None:
    browser = Browser(signed_in())
    html = browser.http.get("/oidc/login/?" + urlencode({"next": auth_url()})).content.decode()
    assert "signed in as <strong>alice</strong> — not you?" in html
    assert 'href="/oidc/oauth2/sessions/logout"' in html


def test_login_post_is_answered_with_303_and_reaches_the_client(default_clients: None, alice: Any) -> None:
    response = Client().post(
        "/oidc/login/", {"username": "alice@example.com", "password": PASSWORD, "next": auth_url()}
    )
    assert response.status_code == 303
    assert response["Location"] == auth_url()


# ---- consent for a third-party client -------------------------------------------------------------
def test_consent_page_lists_scopes_in_plain_words(
    default_clients: None, alice: Any, third_party: Any
) -> None:
    browser = Browser(signed_in())
    page = browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params()))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Notes App" in html and "wants to access your" in html
    for words in ("Sign you in with your account", "Know your name and login", "Know your email address"):
        assert words in html
    assert ">Allow<" in html and ">Deny<" in html
    assert "remembered for 90 days" in html


def answer(browser: Browser, params: dict[str, str], allow: bool) -> Any:
    url = "/oidc/oauth2/auth?" + urlencode(params)
    page = browser.http.get(url)
    assert page.status_code == 200, page.content
    assert page.context["page"] == "consent"
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["cells_oidc_step"] = "consent"
    if allow:
        data["allow"] = "on"
    return browser.http.post(url, data)


def test_allow_is_remembered_per_user_client_and_scopes(
    default_clients: None, alice: Any, make_user: Any, third_party: Any
) -> None:
    browser = Browser(signed_in())
    params = third_party_params("openid profile")
    assert "code" in code_from(answer(browser, params, allow=True), THIRD_PARTY_REDIRECT)
    remembered = Consent.objects.get(user=alice, application=third_party)
    assert set(remembered.scope.split()) == {"openid", "profile"}
    assert remembered.expires > timezone.now() + timedelta(days=89)
    # Same scopes (or fewer): no page, a code straight away; prompt=none works too.
    again = browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params("openid")))
    assert "code" in code_from(again, THIRD_PARTY_REDIRECT)
    silent = browser.http.get(
        "/oidc/oauth2/auth?" + urlencode(third_party_params("openid profile", prompt="none"))
    )
    assert "code" in code_from(silent, THIRD_PARTY_REDIRECT)
    # A new scope asks again; prompt=consent always asks.
    more = browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params("openid profile email")))
    assert more.status_code == 200 and more.context["page"] == "consent"
    forced = browser.http.get(
        "/oidc/oauth2/auth?" + urlencode(third_party_params("openid", prompt="consent"))
    )
    assert forced.status_code == 200 and forced.context["page"] == "consent"
    # Another user is asked.
    make_user("bob")
    bob = Browser()
    bob.http.login(username="bob", password=PASSWORD)
    other = bob.http.get("/oidc/oauth2/auth?" + urlencode(params))
    assert other.status_code == 200 and other.context["page"] == "consent"
    # An expired consent asks again.
    Consent.objects.filter(pk=remembered.pk).update(expires=timezone.now() - timedelta(seconds=1))
    expired = browser.http.get("/oidc/oauth2/auth?" + urlencode(params))
    assert expired.status_code == 200 and expired.context["page"] == "consent"


def test_deny_redirects_with_access_denied_state_and_iss(
    default_clients: None, alice: Any, third_party: Any
) -> None:
    browser = Browser(signed_in())
    params = third_party_params()
    result = code_from(answer(browser, params, allow=False), THIRD_PARTY_REDIRECT)
    assert result["error"] == "access_denied"
    assert result["state"] == params["state"]
    assert result["iss"] == "http://testserver/oidc/"
    assert "code" not in result
    assert not Consent.objects.exists()


def test_consent_lifetime_zero_remembers_nothing(
    default_clients: None, alice: Any, third_party: Any, settings: Any
) -> None:
    settings.CELLS_OIDC_CONSENT_LIFETIME = 0
    browser = Browser(signed_in())
    code_from(answer(browser, third_party_params(), allow=True), THIRD_PARTY_REDIRECT)
    assert not Consent.objects.exists()
    again = browser.http.get("/oidc/oauth2/auth?" + urlencode(third_party_params()))
    assert again.status_code == 200 and again.context["page"] == "consent"


# ---- the out-of-band page -------------------------------------------------------------------------
def test_oob_page_shows_the_code_the_application_and_the_validity(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    redirect_uri = "http://testserver/oauth2/oob"
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": "a1b2c3d4e5f6g7h8",
        }
    )
    code = code_from(response, redirect_uri)["code"]
    page = browser.http.get(response["Location"])
    assert page.status_code == 200
    assert_secure(page, "no-referrer")
    html = page.content.decode()
    assert re.search(rf'<input id="code" class="code" type="text" readonly value="{code}"', html)
    assert "Cells Client CLI Tool" in html
    assert "where you ran <code>cec</code>" in html
    assert "valid for 10 minutes" in html
    # The copy button needs the script, so it is hidden until the script shows it.
    assert re.search(r'<button type="button"[^>]*data-copy="code"[^>]*hidden>', html)
    assert '<script src="/static/cells_oidc/copy.js" defer></script>' in html
    assert "access_token" not in html and "refresh_token" not in html
    # An unknown (or used) code still shows, without an application.
    unknown = Client().get("/oauth2/oob?code=Zz9" + "a" * 27)
    assert unknown.status_code == 200 and b"Cells Client CLI Tool" not in unknown.content


def test_oob_page_refuses_markup_in_the_code(db: Any) -> None:
    response = Client().get("/oauth2/oob?" + urlencode({"code": '"><script>alert(1)</script>'}))
    assert response.status_code == 400
    assert b"<script>alert" not in response.content
    assert_secure(response, "no-referrer")


def test_static_script_and_styles_are_served(db: Any) -> None:
    from django.contrib.staticfiles import finders

    assert finders.find("cells_oidc/copy.js")
    assert finders.find("cells_oidc/cells_oidc.css")
    script = open(finders.find("cells_oidc/copy.js")).read()
    assert "navigator.clipboard" in script and "data-copy" in script and "eval(" not in script


def test_csrf_failure_page(default_clients: None, alice: Any, settings: Any) -> None:
    settings.CSRF_FAILURE_VIEW = "cells_oidc.views.csrf_failure"
    client = Client(enforce_csrf_checks=True)
    response = client.post("/oidc/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    html = response.content.decode()
    assert "The form expired or was sent from another page" in html
    assert response["X-Request-ID"] in html
    assert_secure(response)


def test_logout_page_offers_to_stay_signed_in(default_clients: None, alice: Any) -> None:
    browser = Browser(signed_in())
    page = browser.http.get("/oidc/oauth2/sessions/logout")
    html = page.content.decode()
    assert '<a class="button secondary" href="/oidc/account/">Stay signed in</a>' in html
    assert_secure(page)
    assert_no_inline_code(html)
    assert "_auth_user_id" in browser.http.session
