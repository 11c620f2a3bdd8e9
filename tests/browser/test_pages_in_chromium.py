"""Every page of cells-oidc, used the way a person uses it, in headless Chromium.

The Cells clients' redirect URIs (``http://localhost:3000``, ``http://localhost:36xx``,
``cellsauth://``) do not exist here: the test intercepts the navigation to them and reads the
code from its URL, then exchanges it at the token endpoint like the real client would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import PASSWORD, SCOPE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
NOTES_REDIRECT = "https://notes.example.org/callback"
NOTES_SECRET = "notes-secret-" + "n" * 30


# ---- helpers ---------------------------------------------------------------------------------------
def params_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Person:
    """A person at a browser: one Chromium context and page, watching for trouble."""

    def __init__(self, chromium: Any, site: Any, **context_options: Any) -> None:
        self.site = site
        self.context = chromium.new_context(base_url=site.url, **context_options)
        self.page = self.context.new_page()
        self.csp_violations: list[str] = []
        self.redirects: list[str] = []
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.navigations: list[str] = []
        self.page.on(
            "framenavigated",
            lambda frame: self.navigations.append(frame.url) if frame == self.page.main_frame else None,
        )

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.csp_violations.append(message.text)

    def _response(self, response: Any) -> None:
        location = response.headers.get("location")
        if location:
            self.redirects.append(location)

    def leave_for(self, prefix: str, action: Any) -> dict[str, str]:
        """Do ``action`` (a click, a key press, a ``goto``), which must end with the provider
        redirecting the browser to ``prefix``; return the parameters of that redirect.

        Playwright does not route redirected navigations, so the browser really goes there and
        fails (nothing listens on the client's loopback port; no app handles ``cellsauth:``);
        the redirect itself is read from the provider's response.
        """
        before, navigated = len(self.redirects), len(self.navigations)
        try:
            action()
        except PlaywrightError as exc:
            if "net::ERR_" not in exc.message and "interrupted" not in exc.message:
                raise
        for _ in range(200):
            found = [url for url in self.redirects[before:] if url.startswith(prefix)]
            if found:
                break
            self.page.wait_for_timeout(50)
        else:
            raise AssertionError(f"no redirect to {prefix}: {self.redirects[before:]}")
        if prefix.startswith("http"):
            # Let the failed navigation to the client settle before the next one.
            for _ in range(200):
                if any(url.startswith(("chrome-error:", prefix)) for url in self.navigations[navigated:]):
                    break
                self.page.wait_for_timeout(50)
            self.page.wait_for_load_state()
        return params_of(found[-1])

    def sign_in(self, username: str = "alice", password: str = PASSWORD) -> None:
        page = self.page
        page.get_by_label("Login or email").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

    def assert_fits(self, width: int = 320) -> None:
        """No horizontal scrolling at ``width`` pixels (WCAG 2.2 §1.4.10 reflow)."""
        self.page.set_viewport_size({"width": width, "height": 720})
        scroll_width = self.page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{self.page.url} is {scroll_width}px wide at {width}px"

    def close(self) -> None:
        assert not self.csp_violations, self.csp_violations
        self.context.close()


@pytest.fixture
def person(chromium: Any, site: Any, alice: Any) -> Iterator[Person]:
    someone = Person(chromium, site)
    yield someone
    someone.close()


def auth_url(client_id: str, redirect_uri: str, **extra: str) -> str:
    return "/oidc/oauth2/auth?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": secrets.token_hex(8),
            **extra,
        }
    )


def token(site: Any, data: dict[str, str], auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(f"{site.url}/oidc/oauth2/token", data=data, auth=auth, timeout=10)


def exchange(site: Any, client_id: str, code: str, redirect_uri: str, **extra: str) -> dict[str, Any]:
    response = token(
        site,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


# ---- sign-in of each default client ----------------------------------------------------------------
@pytest.mark.parametrize(
    "client_id, redirect_uri, use_pkce",
    [
        ("cells-sync", "http://localhost:3651/servers/callback", True),
        ("cells-mobile", "cellsauth://callback", False),
        ("cells-client", "http://localhost:3000/servers/callback", False),
    ],
)
def test_each_default_client_signs_in_through_the_login_page(
    person: Person, site: Any, screenshot: Any, client_id: str, redirect_uri: str, use_pkce: bool
) -> None:
    page = person.page
    verifier, challenge = pkce()
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if use_pkce else {}
    url = auth_url(client_id, redirect_uri, **extra)
    page.goto(url)
    assert urlsplit(page.url).path == "/oidc/login/"
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "Sign in"
    app_names = {
        "cells-sync": "CellsSync Application",
        "cells-mobile": "Mobile Applications",
        "cells-client": "Cells Client CLI Tool",
    }
    assert app_names[client_id] in page.inner_text("main")
    screenshot(page, f"login-{client_id}")
    result = person.leave_for(redirect_uri, person.sign_in)
    assert result["iss"] == f"{site.url}/oidc/"
    assert params_of(url)["state"] == result["state"]
    tokens = exchange(
        site, client_id, result["code"], redirect_uri, **({"code_verifier": verifier} if use_pkce else {})
    )
    assert tokens["refresh_token"] and tokens["id_token"]


def test_wrong_password_keeps_the_request_and_says_nothing_about_the_account(
    person: Person, site: Any, screenshot: Any
) -> None:
    page = person.page
    redirect_uri = "http://localhost:3000/servers/callback"
    page.goto(auth_url("cells-client", redirect_uri))
    person.sign_in(password="not the password")
    alert = page.get_by_role("alert")
    assert "do not match" in alert.inner_text()
    assert page.get_by_label("Login or email").input_value() == "alice"
    screenshot(page, "login-error")
    person.assert_fits()
    screenshot(page, "login-error-320px")
    page.set_viewport_size({"width": 1280, "height": 720})
    # The authorization request survived the failure: the next attempt lands at the client.
    assert "code" in person.leave_for(redirect_uri, lambda: person.sign_in(username="alice@example.com"))


def test_keyboard_only_sign_in_and_confirmation(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    redirect_uri = "http://localhost:3000/servers/callback"
    page.goto(auth_url("cells-client", redirect_uri))
    # The login field has the focus; Tab goes to the password, then to the button.
    assert page.evaluate("document.activeElement.id") == "id_username"
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    assert "code" in person.leave_for(redirect_uri, lambda: page.keyboard.press("Enter"))
    # Signed in already: the next sign-in of a native client asks "Continue as alice?".
    page.goto(auth_url("cells-client", redirect_uri))
    assert page.get_by_role("heading", level=1).inner_text() == "Continue to Cells Client CLI Tool?"
    screenshot(page, "confirm")
    person.assert_fits()
    screenshot(page, "confirm-320px")
    page.set_viewport_size({"width": 1280, "height": 720})
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    for _ in range(5):
        if focused == "Continue as alice":
            break
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Continue as alice"
    assert "code" in person.leave_for(redirect_uri, lambda: page.keyboard.press("Enter"))


# ---- the out-of-band page --------------------------------------------------------------------------
def test_oob_page_copy_button(chromium: Any, site: Any, alice: Any, screenshot: Any) -> None:
    person = Person(chromium, site, permissions=["clipboard-read", "clipboard-write"])
    try:
        page = person.page
        redirect_uri = f"{site.url}/oauth2/oob"
        page.goto(auth_url("cells-client", redirect_uri))
        person.sign_in()
        page.wait_for_url(f"{redirect_uri}?**")
        code = params_of(page.url)["code"]
        field = page.get_by_label("Sign-in code")
        assert field.input_value() == code
        assert field.get_attribute("readonly") is not None
        assert "Cells Client CLI Tool" in page.inner_text("main")
        assert "cec" in page.inner_text("main")
        button = page.get_by_role("button", name="Copy")
        button.wait_for(state="visible")
        screenshot(page, "oob")
        button.click()
        page.get_by_role("status").filter(has_text="Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == code
        # The field selects the whole code when focused (the way to copy without the button).
        page.evaluate("document.getSelection().removeAllRanges()")
        page.get_by_role("heading", level=1).click()
        field.focus()
        assert page.evaluate(
            "[document.activeElement.selectionStart, document.activeElement.selectionEnd]"
        ) == [
            0,
            len(code),
        ]
        person.assert_fits()
        # The whole code is visible in its field, even 320 px wide.
        assert page.evaluate("(e => e.scrollWidth <= e.clientWidth)(document.getElementById('code'))")
        screenshot(page, "oob-320px")
        tokens = exchange(site, "cells-client", code, redirect_uri)
        assert "access_token" not in page.content() and tokens["access_token"] not in page.content()
    finally:
        person.close()


def test_oob_page_without_javascript(chromium: Any, site: Any, alice: Any, screenshot: Any) -> None:
    person = Person(chromium, site, java_script_enabled=False)
    try:
        page = person.page
        redirect_uri = f"{site.url}/oauth2/oob"
        page.goto(auth_url("cells-client", redirect_uri))
        person.sign_in()
        page.wait_for_url(f"{redirect_uri}?**")
        code = params_of(page.url)["code"]
        # No script: no (useless) copy button, the code in a readonly field to select and copy.
        assert not page.get_by_role("button", name="Copy").is_visible()
        assert page.get_by_label("Sign-in code").input_value() == code
        assert "select all" in page.inner_text("main")
        screenshot(page, "oob-no-javascript")
    finally:
        person.close()


# ---- consent for a third-party client ----------------------------------------------------------------
@pytest.fixture
def notes_app(site: Any) -> Any:
    from oauth2_provider.models import Application

    return Application.objects.create(
        client_id="notes",
        name="Notes App",
        client_type=Application.CLIENT_CONFIDENTIAL,
        client_secret=NOTES_SECRET,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=NOTES_REDIRECT,
        skip_authorization=False,
        algorithm=Application.RS256_ALGORITHM,
    )


def notes_url(challenge: str, scope: str = "openid profile email", state: str = "notes-state-1") -> str:
    return "/oidc/oauth2/auth?" + urlencode(
        {
            "response_type": "code",
            "client_id": "notes",
            "redirect_uri": NOTES_REDIRECT,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


def test_consent_allow_is_remembered_and_can_be_withdrawn(
    person: Person, site: Any, notes_app: Any, screenshot: Any
) -> None:
    page = person.page
    verifier, challenge = pkce()
    page.goto(notes_url(challenge))
    person.sign_in()
    assert "Notes App wants to access your" in page.get_by_role("heading", level=1).inner_text()
    items = page.locator("ul.scopes li").all_inner_texts()
    assert items == ["Sign you in with your account", "Know your name and login", "Know your email address"]
    screenshot(page, "consent")
    person.assert_fits()
    screenshot(page, "consent-320px")
    page.set_viewport_size({"width": 1280, "height": 720})
    result = person.leave_for(NOTES_REDIRECT, page.get_by_role("button", name="Allow").click)
    assert result["state"] == "notes-state-1"
    tokens = exchange(
        site, "notes", result["code"], NOTES_REDIRECT, code_verifier=verifier, client_secret=NOTES_SECRET
    )
    assert tokens["access_token"]
    # Remembered: the next request of the same scopes needs no click.
    verifier, challenge = pkce()
    again = person.leave_for(
        NOTES_REDIRECT, lambda: page.goto(notes_url(challenge, scope="openid profile", state="notes-state-2"))
    )
    assert again["state"] == "notes-state-2" and again["code"]
    # The account page lists it; withdrawing makes the application ask again.
    page.goto("/oidc/account/")
    section = page.locator("section", has=page.get_by_role("heading", name="Remembered approvals"))
    assert "Notes App" in section.inner_text()
    section.get_by_role("button", name="Withdraw").click()
    assert "Consent withdrawn" in page.get_by_role("status").inner_text()
    verifier, challenge = pkce()
    page.goto(notes_url(challenge, state="notes-state-3"))
    assert page.get_by_role("button", name="Allow").is_visible()


def test_consent_deny_redirects_with_access_denied(
    person: Person, site: Any, notes_app: Any, screenshot: Any
) -> None:
    page = person.page
    _verifier, challenge = pkce()
    page.goto(notes_url(challenge, state="deny-state-42"))
    person.sign_in()
    result = person.leave_for(NOTES_REDIRECT, page.get_by_role("button", name="Deny").click)
    assert result["error"] == "access_denied"
    assert result["state"] == "deny-state-42"
    assert result["iss"] == f"{site.url}/oidc/"
    assert "code" not in result
    # Nothing was remembered: the next request asks again.
    _verifier, challenge = pkce()
    page.goto(notes_url(challenge, state="deny-state-43"))
    assert page.get_by_role("button", name="Deny").is_visible()


# ---- device flow -----------------------------------------------------------------------------------
def start_device(site: Any) -> dict[str, Any]:
    response = requests.post(
        f"{site.url}/oidc/oauth2/device/auth",
        data={"client_id": "cells-client", "scope": "openid profile pydio offline"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def poll(site: Any, device_code: str) -> requests.Response:
    return token(site, {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "cells-client"})


@pytest.mark.parametrize("decision", ["Allow", "Deny"])
def test_device_flow(person: Person, site: Any, screenshot: Any, decision: str) -> None:
    device = start_device(site)
    assert poll(site, device["device_code"]).json()["error"] == "authorization_pending"
    page = person.page
    page.goto(device["verification_uri_complete"])
    person.sign_in()
    # Back on the verification page, the code filled in from verification_uri_complete.
    field = page.get_by_label("Code")
    assert field.input_value() == device["user_code"]
    if decision == "Allow":
        screenshot(page, "device-code")
        person.assert_fits()
        screenshot(page, "device-code-320px")
        page.set_viewport_size({"width": 1280, "height": 720})
    # Typed by hand, lower case and without the dash, is the same code.
    field.fill(device["user_code"].lower().replace("-", ""))
    page.get_by_role("button", name="Continue").click()
    main = page.inner_text("main")
    assert "Cells Client CLI Tool" in main and device["user_code"] in main
    assert "Use your Cells files and folders" in main
    if decision == "Allow":
        screenshot(page, "device-confirm")
    page.get_by_role("button", name=decision).click()
    heading = page.get_by_role("heading", level=1).inner_text()
    screenshot(page, "device-connected" if decision == "Allow" else "device-denied")
    if decision == "Allow":
        assert heading == "Device connected"
        response = poll(site, device["device_code"])
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"]
    else:
        assert heading == "Device denied"
        assert poll(site, device["device_code"]).json()["error"] == "access_denied"


def test_wrong_device_codes_are_refused(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    page.goto("/oidc/device")
    person.sign_in()
    page.get_by_label("Code").fill("BCDF-GHJK")
    page.get_by_role("button", name="Continue").click()
    assert "not valid or has expired" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Code").get_attribute("aria-invalid") == "true"
    screenshot(page, "device-wrong-code")


# ---- logout, account page, error page --------------------------------------------------------------
def test_logout(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    page.goto("/oidc/account/")
    person.sign_in()
    assert page.get_by_role("heading", level=1).inner_text() == "Your account"
    page.goto("/oidc/oauth2/sessions/logout")
    assert page.get_by_role("heading", level=1).inner_text() == "Sign out?"
    screenshot(page, "logout")
    person.assert_fits()
    page.set_viewport_size({"width": 1280, "height": 720})
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_role("heading", level=1).inner_text() == "You are signed out"
    screenshot(page, "logged-out")
    page.goto("/oidc/account/")
    assert urlsplit(page.url).path == "/oidc/login/"


def test_account_page_revokes_an_application(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    redirect_uri = "http://localhost:3000/servers/callback"
    page.goto(auth_url("cells-client", redirect_uri))
    code = person.leave_for(redirect_uri, person.sign_in)["code"]
    tokens = exchange(site, "cells-client", code, redirect_uri)
    page.goto("/oidc/account/")
    apps = page.locator("section", has=page.get_by_role("heading", name="Applications with access"))
    assert "Cells Client CLI Tool" in apps.inner_text()
    sessions = page.locator("section", has=page.get_by_role("heading", name="Where you are signed in"))
    assert "this browser" in sessions.inner_text()
    screenshot(page, "account")
    person.assert_fits()
    screenshot(page, "account-320px")
    page.set_viewport_size({"width": 1280, "height": 720})
    apps.get_by_role("button", name="Revoke Cells Client CLI Tool").click()
    assert "Access revoked" in page.get_by_role("status").inner_text()
    screenshot(page, "account-revoked")
    refused = token(
        site,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-client",
        },
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_error_page(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    response = page.goto(
        "/oidc/oauth2/auth?client_id=not-a-client&response_type=code&redirect_uri=https://x.example/"
    )
    assert response is not None and response.status == 400
    text = page.inner_text("main")
    assert "Traceback" not in text
    assert response.headers["x-request-id"] in text
    screenshot(page, "error")
    person.assert_fits()
    screenshot(page, "error-320px")


def test_pages_cannot_be_framed(person: Person, site: Any) -> None:
    page = person.page
    page.goto("/static/cells_oidc/cells_oidc.css")
    page.set_content(f'<iframe id="f" src="{site.url}/oidc/login/"></iframe>')
    page.wait_for_timeout(500)
    frame = page.frame_locator("#f")
    assert frame.locator("input").count() == 0
    person.csp_violations.clear()  # the refusal itself is reported on the console
