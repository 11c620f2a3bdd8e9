"""Personal access tokens on the account page, in headless Chromium: mint one, copy its secret
(shown once), use it, revoke it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cells_oidc.internal import pat
from cells_oidc.models import PersonalAccessToken
from tests.browser.test_pages_in_chromium import Person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def person(chromium: Any, site: Any, alice: Any, settings: Any) -> Iterator[Person]:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    someone = Person(chromium, site, permissions=["clipboard-read", "clipboard-write"])
    yield someone
    someone.close()


def profile(site: Any, token: str) -> requests.Response:
    return requests.get(f"{site.url}/a/user/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_mint_copy_use_and_revoke_a_personal_token(person: Person, site: Any, screenshot: Any) -> None:
    page = person.page
    page.goto("/oidc/account/")
    person.sign_in()
    tokens = page.locator("section", has=page.get_by_role("heading", name="Personal access tokens"))
    assert "You have no personal access token." in tokens.inner_text()

    # The keyboard goes through the form in reading order: label, permissions, expiry, button.
    page.get_by_label("What is it for?").focus()
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert order == [
        "scope-openid",
        "scope-profile",
        "scope-email",
        "scope-pydio",
        "mode-fixed",
        "id_expires_in",
        "id_auto_refresh",
        "Create token",
    ]
    page.get_by_label("What is it for?").fill("nightly backup")
    page.get_by_label("Know your email address").uncheck()
    page.get_by_label("Auto-refresh: expires when left unused").check()
    page.get_by_label("Expires after being unused for").select_option(label="1 hour")
    screenshot(page, "account-tokens-form")
    page.get_by_role("button", name="Create token").click()

    assert page.get_by_role("heading", level=1).inner_text() == "Your new personal access token"
    field = page.get_by_label("Token “nightly backup”")
    secret = field.input_value()
    assert re.fullmatch(pat.TOKEN_PATTERN, secret) and pat.is_well_formed(secret)
    assert field.get_attribute("readonly") is not None
    copy = page.get_by_role("button", name="Copy")
    copy.wait_for(state="visible")
    screenshot(page, "account-token-created")
    copy.click()
    page.get_by_role("status").filter(has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    person.assert_fits()
    # The whole secret is visible in its field, even 320 px wide.
    assert page.evaluate("(e => e.scrollHeight <= e.clientHeight + 1)(document.getElementById('secret'))")
    screenshot(page, "account-token-created-320px")
    page.set_viewport_size({"width": 1280, "height": 720})

    me = profile(site, secret)
    assert me.status_code == 200, me.text
    assert me.json()["login"] == "alice" and me.json()["token"]["scope"] == "profile pydio"

    # A reload sends the form again: the page then says the token was shown, and shows no secret.
    reloaded = page.reload()
    assert reloaded is not None and reloaded.request.method == "POST" and reloaded.status == 409
    assert page.get_by_role("heading", level=1).inner_text() == "This token was already shown"
    assert secret not in page.content() and not re.search(pat.TOKEN_PATTERN, page.content())
    assert PersonalAccessToken.objects.count() == 1  # and no second token
    screenshot(page, "account-token-reloaded")

    # Back on the account page: listed without its secret, then revoked.
    page.get_by_role("link", name="Back to your account").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Your account"
    assert secret not in page.content()
    listed = tokens.inner_text()
    assert "nightly backup" in listed and "Expires after 1 hour without use" in listed
    assert secret[: pat.HINT_LENGTH] in listed
    tokens.get_by_role("button", name="Revoke nightly backup").click()
    assert "Personal access token revoked" in page.get_by_role("status").inner_text()
    assert "revoked" in tokens.inner_text()
    screenshot(page, "account-token-revoked")
    refused = profile(site, secret)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
