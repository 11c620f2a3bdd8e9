"""The pages in the browser's language, in headless Chromium: French and German, and right to left.

Chromium's ``locale`` sets its ``Accept-Language``; the demo settings' ``LocaleMiddleware`` and
``LANGUAGES`` pick the page language from it. Screenshots go to ``artifacts/screenshots/i18n-*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser.test_pages_in_chromium import Person, notes_app, notes_url, pkce  # noqa: F401
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: What a French and a German reader see (the shipped catalogues).
WORDS = {
    "fr": {
        "locale": "fr-FR",
        "sign in": "Se connecter",
        "login": "Identifiant ou e-mail",
        "password": "Mot de passe",
        "scopes": ["Vous connecter avec votre compte", "Connaître votre nom et votre identifiant"],
        "connect": "Connecter un appareil",
        "continue": "Continuer",
        "allow": "Autoriser",
        "connected": "Appareil connecté",
        "device scopes": ["Utiliser vos fichiers et dossiers Cells", "Garder l'accès en votre absence"],
    },
    "de": {
        "locale": "de-DE",
        "sign in": "Anmelden",
        "login": "Benutzername oder E-Mail",
        "password": "Passwort",
        "scopes": ["Sie mit Ihrem Konto anmelden", "Ihren Namen und Ihren Benutzernamen kennen"],
        "connect": "Gerät verbinden",
        "continue": "Weiter",
        "allow": "Zulassen",
        "connected": "Gerät verbunden",
        "device scopes": [
            "Ihre Dateien und Ordner in Cells verwenden",
            "Angemeldet bleiben, während Sie nicht da sind",
        ],
    },
}


@pytest.fixture(params=["fr", "de"])
def reader(
    request: pytest.FixtureRequest, chromium: Any, site: Any, alice: Any
) -> Iterator[tuple[str, Person]]:
    lang = request.param
    someone = Person(chromium, site, locale=WORDS[lang]["locale"])
    yield lang, someone
    someone.close()


def test_login_and_consent_in_the_readers_language(
    reader: tuple[str, Person],
    notes_app: Any,  # noqa: F811 (the fixture of test_pages_in_chromium)
    screenshot: Any,
) -> None:
    lang, person = reader
    words = WORDS[lang]
    page = person.page
    _verifier, challenge = pkce()
    page.goto(notes_url(challenge))
    assert page.get_attribute("html", "lang") == lang
    assert page.get_attribute("html", "dir") == "ltr"
    assert page.get_by_role("heading", level=1).inner_text() == words["sign in"]
    screenshot(page, f"i18n-login-{lang}")
    page.get_by_label(words["login"]).fill("alice")
    page.get_by_label(words["password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["sign in"]).click()
    page.wait_for_load_state()
    assert "Notes App" in page.get_by_role("heading", level=1).inner_text()
    scopes = page.locator("ul.scopes li").all_inner_texts()
    assert scopes[:2] == words["scopes"]
    assert page.get_by_role("button", name=words["allow"]).is_visible()
    screenshot(page, f"i18n-consent-{lang}")
    person.assert_fits()


def test_device_pages_in_the_readers_language(reader: tuple[str, Person], site: Any, screenshot: Any) -> None:
    lang, person = reader
    words = WORDS[lang]
    response = requests.post(
        f"{site.url}/oidc/oauth2/device/auth",
        data={"client_id": "cells-client", "scope": "openid profile pydio offline"},
        timeout=10,
    )
    device = response.json()
    page = person.page
    page.goto("/oidc/login/?next=/oidc/device")
    page.get_by_label(words["login"]).fill("alice")
    page.get_by_label(words["password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["sign in"]).click()
    page.wait_for_url("**/oidc/device")
    assert page.get_by_role("heading", level=1).inner_text() == words["connect"]
    screenshot(page, f"i18n-device-{lang}")
    page.locator("#user_code").fill(device["user_code"])
    page.get_by_role("button", name=words["continue"]).click()
    page.wait_for_url("**/oidc/device/confirm")
    scopes = page.locator("ul.scopes li").all_inner_texts()
    assert set(words["device scopes"]) <= set(scopes)
    screenshot(page, f"i18n-device-confirm-{lang}")
    page.get_by_role("button", name=words["allow"]).click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == words["connected"]
    screenshot(page, f"i18n-device-done-{lang}")


def test_right_to_left_page_mirrors(
    chromium: Any,
    site: Any,
    alice: Any,
    notes_app: Any,  # noqa: F811
    settings: Any,
    screenshot: Any,
) -> None:
    """Hebrew: no catalogue (the words stay English), but the layout runs right to left."""
    settings.LANGUAGES = [("en", "English"), ("he", "עברית")]
    person = Person(chromium, site, locale="he-IL")
    try:
        page = person.page
        _verifier, challenge = pkce()
        page.goto(notes_url(challenge))
        assert page.get_attribute("html", "dir") == "rtl"
        assert page.get_attribute("html", "lang") == "he"
        # Django's own Hebrew catalogue names the password field: fill the fields by id.
        page.locator("#id_username").fill("alice")
        page.locator("#id_password").fill(PASSWORD)
        page.locator("button.primary").click()
        page.wait_for_load_state()
        # A short line of text ("Not alice? ...") hugs the right edge of the card, not the left.
        line, card = page.evaluate(
            """() => {
                const range = document.createRange();
                range.selectNodeContents(document.querySelector('main p.note:last-of-type'));
                const text = range.getBoundingClientRect(), card = document.querySelector('main');
                const box = card.getBoundingClientRect();
                const pad = parseFloat(getComputedStyle(card).paddingRight);
                return [[text.left, text.right], [box.left + pad, box.right - pad]];
            }"""
        )
        assert abs(line[1] - card[1]) < 2, (line, card)
        assert line[0] > card[0] + 40, (line, card)
        # The scope list's check mark sits at the inline start, which is the right.
        mark = page.evaluate(
            "() => { const s = getComputedStyle(document.querySelector('ul.scopes li'), '::before');"
            " return [s.right, s.left]; }"
        )
        assert mark[0] == "12px", mark
        screenshot(page, "i18n-consent-rtl")
        person.assert_fits()
    finally:
        person.close()
