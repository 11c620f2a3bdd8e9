"""The pages speak the browser's language: complete catalogues, every page in fr/de/es/it, RTL.

The catalogues are read from the shipped ``.po`` files; the pages are rendered through HTTP with an
``Accept-Language`` header (``LocaleMiddleware`` and ``LANGUAGES`` of the demo settings), and no
English msgid of the catalogue may show in them.
"""

from __future__ import annotations

import ast
import gettext
import html
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import translation
from oauth2_provider.models import Application

from tests.conftest import PASSWORD, SCOPE, form_post, pkce_pair, query

pytestmark = pytest.mark.django_db

LOCALE = Path(__file__).resolve().parents[1] / "cells_oidc" / "locale"
LANGUAGES = ["fr", "de", "es", "it"]
THIRD_PARTY_REDIRECT = "https://notes.example.org/callback"
CLI_URI = "http://localhost:3000/servers/callback"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


# ---- the catalogues -------------------------------------------------------------------------------
@dataclass
class Entry:
    msgid: str
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def catalogue(lang: str) -> list[Entry]:
    """The entries of ``lang``'s shipped ``django.po`` (the header left out)."""
    entries: list[Entry] = []
    text = (LOCALE / lang / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    for block in text.strip().split("\n\n"):
        entry = Entry(msgid="")
        parts: dict[str, list[str]] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#,"):
                entry.flags |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#~"):
                raise AssertionError(f"{lang}: obsolete entry left in the catalogue: {block[:80]}")
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                parts[key].append(line)
            else:
                key, _, rest = line.partition(" ")
                parts[key] = [rest]
        strings = {k: "".join(ast.literal_eval(s) for s in v) for k, v in parts.items()}
        entry.msgid = strings.pop("msgid")
        entry.msgid_plural = strings.pop("msgid_plural", None)
        for k, v in strings.items():
            entry.msgstr[int(k[7:-1]) if k.startswith("msgstr[") else 0] = v
        if entry.msgid:
            entries.append(entry)
    return entries


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_msgid_is_translated_and_compiled(lang: str) -> None:
    entries = catalogue(lang)
    assert len(entries) > 250
    forms = 3 if lang == "es" else 2  # the Plural-Forms of each language (Django's own catalogues)
    compiled = gettext.GNUTranslations((LOCALE / lang / "LC_MESSAGES" / "django.mo").open("rb"))
    for entry in entries:
        assert "fuzzy" not in entry.flags, (lang, entry.msgid)
        expected = forms if entry.msgid_plural is not None else 1
        assert len(entry.msgstr) == expected, (lang, entry.msgid)
        for text in entry.msgstr.values():
            assert text.strip(), (lang, entry.msgid)
            # Placeholders survive translation (a missing one is a KeyError or a lost value).
            assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(entry.msgid)), (lang, text)
            # HTML in a msgid (a <strong>, a link) is kept, tag for tag.
            assert re.findall(r"</?\w+", text) == re.findall(r"</?\w+", entry.msgid), (lang, entry.msgid)
        # The shipped .mo is compiled from this .po (make messages).
        if entry.msgid_plural is None:
            assert compiled.gettext(entry.msgid) == entry.msgstr[0], (lang, entry.msgid)
        else:
            assert compiled.ngettext(entry.msgid, entry.msgid_plural, 1) == entry.msgstr[0], (
                lang,
                entry.msgid,
            )


# ---- visible text of a page -----------------------------------------------------------------------
class _Text(HTMLParser):
    """The text a person reads: element text and the attributes shown or spoken, minus protocol
    values (``<code>``, field values: scope names, error codes, tokens, user codes)."""

    SPOKEN = ("alt", "title", "placeholder", "aria-label", "data-copied", "data-copy-failed")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("code", "script", "style", "textarea"):
            self.skip += 1
        self.parts.extend(value for name, value in attrs if name in self.SPOKEN and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "script", "style", "textarea"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def visible_text(response: Any) -> str:
    parser = _Text()
    parser.feed(response.content.decode())
    return " ".join(" ".join(parser.parts).split())


def english_leaks(text: str, lang: str) -> list[str]:
    """The English msgids of the catalogue that show in ``text`` (of a page in ``lang``).

    A msgid is looked for piece by piece between its placeholders and tags; a piece that the
    language writes the same way (``Code``, ``Password`` in Italian...) is skipped, and so is a
    msgid that the active catalogues translate to itself (Django's own French catalogue, which
    comes first in INSTALLED_APPS, has "Permissions" for "Permissions").
    """
    entries = catalogue(lang)
    translated = " ".join(" ".join(e.msgstr.values()) for e in entries)
    leaks = []
    for entry in entries:
        with translation.override(lang):
            if entry.msgid_plural is None and translation.gettext(entry.msgid) == entry.msgid:
                continue
        for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
            plain = html.unescape(re.sub(r"<[^>]+>", " ", msgid))
            for piece in PLACEHOLDER.split(plain):
                piece = " ".join(piece.split()).strip(" .,:;?!·()“”'")
                if len(piece) < 4 or piece in translated:
                    continue
                if re.search(rf"(?<!\w){re.escape(piece)}(?!\w)", text):
                    leaks.append(piece)
    return leaks


# ---- the pages ------------------------------------------------------------------------------------
@pytest.fixture
def third_party(db: Any) -> Application:
    return Application.objects.create(
        client_id="notes",
        name="Notes",
        client_type=Application.CLIENT_CONFIDENTIAL,
        client_secret="s3cret-" + "x" * 30,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=THIRD_PARTY_REDIRECT,
        skip_authorization=False,
        algorithm=Application.RS256_ALGORITHM,
    )


def consent_url() -> str:
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "notes",
        "redirect_uri": THIRD_PARTY_REDIRECT,
        "scope": "openid profile email",
        "state": "st-" + "q" * 13,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return "/oidc/oauth2/auth?" + urlencode(params)


def cli_url(redirect_uri: str = CLI_URI) -> str:
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": "a1b2c3d4e5f6g7h8",
    }
    return "/oidc/oauth2/auth?" + urlencode(params)


def answer(client: Client, url: str, page: Any) -> Any:
    """Press "Allow" (or "Continue as") on the consent or confirmation ``page`` of ``url``."""
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"allow": "on", "cells_oidc_step": page.context["page"]})
    return client.post(url, data)


def pages_in(lang: str) -> dict[str, Any]:
    """Every page of the provider, as a browser asking for ``lang`` gets it."""
    headers = {"HTTP_ACCEPT_LANGUAGE": f"{lang},en;q=0.5"}
    anonymous = Client(**headers)
    user = Client(**headers)
    assert user.login(username="alice", password=PASSWORD)
    pages: dict[str, Any] = {}

    login_redirect = anonymous.get(cli_url())
    pages["login"] = anonymous.get(login_redirect["Location"])
    next_url = query(login_redirect["Location"])["next"]
    pages["login failed"] = anonymous.post(
        "/oidc/login/", {"username": "alice", "password": "nope", "next": next_url}
    )
    # A session that existed before the request: "Continue as alice?" (RFC 8252 §8.6).
    pages["confirm"] = user.get(cli_url())
    pages["consent"] = user.get(consent_url())
    assert answer(user, consent_url(), pages["consent"]).status_code == 302

    device = json.loads(
        form_post("/oidc/oauth2/device/auth", {"client_id": "cells-client", "scope": SCOPE}).content
    )
    pages["device"] = user.get("/oidc/device")
    pages["device wrong code"] = user.post("/oidc/device", {"user_code": "BCDF-GHJK"})
    entered = user.post("/oidc/device", {"user_code": device["user_code"]})
    assert entered.status_code == 303, entered.content.decode()[-900:]
    pages["device confirm"] = user.get(entered["Location"])
    pages["device done"] = user.post("/oidc/device/confirm", {"action": "approve"})

    oob = answer(
        user, cli_url("http://testserver/oauth2/oob"), user.get(cli_url("http://testserver/oauth2/oob"))
    )
    pages["oob"] = user.get(oob["Location"])
    pages["oob empty"] = anonymous.get("/oauth/oob")
    pages["oob error"] = anonymous.get("/oauth2/oob?error=access_denied&state=s")
    pages["error"] = anonymous.get("/oidc/oauth2/auth?client_id=unknown&response_type=code")

    html_page = user.get("/oidc/account/").content.decode()
    nonce = re.search(r'name="nonce" value="([A-Za-z0-9_-]+)"', html_page)
    assert nonce, "no mint form on the account page"
    mint = {
        "nonce": nonce.group(1),
        "label": "rsync",
        "scope": ["profile"],
        "mode": "fixed",
        "expires_in": "7d",
    }
    pages["token created"] = user.post("/oidc/account/tokens/new", mint)
    pages["account"] = user.get("/oidc/account/")
    pages["logout"] = user.get("/oidc/oauth2/sessions/logout")
    pages["logged out"] = anonymous.get("/oidc/logged-out/")
    return pages


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_speaks_the_browsers_language(
    default_clients: None, alice: Any, third_party: Any, settings: Any, lang: str
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    for name, response in pages_in(lang).items():
        assert response.status_code in (200, 400, 429), (name, response.status_code)
        body = response.content.decode()
        assert f'<html lang="{lang}" dir="ltr">' in body, name
        assert response["Content-Language"] == lang, name
        assert english_leaks(visible_text(response), lang) == [], (lang, name)


def test_the_leak_check_finds_english(default_clients: None, alice: Any) -> None:
    """The check above can fail: an English page is full of the catalogue's msgids."""
    page = Client(HTTP_ACCEPT_LANGUAGE="en").get(Client().get(cli_url())["Location"])
    assert '<html lang="en" dir="ltr">' in page.content.decode()
    leaks = english_leaks(visible_text(page), "fr")
    assert {"Sign in", "Login or email", "Password"} <= set(leaks)


def test_an_unknown_language_gets_the_sites_default(default_clients: None) -> None:
    page = Client(HTTP_ACCEPT_LANGUAGE="ja,zh;q=0.8").get("/oidc/logged-out/")
    assert '<html lang="en" dir="ltr">' in page.content.decode()
    assert "You are signed out" in page.content.decode()


def test_a_site_offers_only_its_languages(default_clients: None, settings: Any) -> None:
    settings.LANGUAGES = [("en", "English"), ("de", "Deutsch")]
    page = Client(HTTP_ACCEPT_LANGUAGE="fr,de;q=0.7").get("/oidc/logged-out/")
    assert '<html lang="de" dir="ltr">' in page.content.decode()
    assert "Sie sind abgemeldet" in page.content.decode()


def test_consent_page_in_french_describes_the_scopes_in_french(
    default_clients: None, alice: Any, third_party: Any
) -> None:
    user = Client(HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9")
    assert user.login(username="alice", password=PASSWORD)
    page = user.get(consent_url())
    assert page.status_code == 200
    scopes = re.search(r'<ul class="scopes">(.*?)</ul>', page.content.decode(), re.S)
    assert scopes
    items = re.findall(r"<li>(.*?)</li>", html.unescape(scopes.group(1)))
    assert items == [
        "Vous connecter avec votre compte",
        "Connaître votre nom et votre identifiant",
        "Connaître votre adresse e-mail",
    ]


def test_device_page_in_german_describes_the_scopes_in_german(default_clients: None, alice: Any) -> None:
    device = json.loads(
        form_post("/oidc/oauth2/device/auth", {"client_id": "cells-client", "scope": SCOPE}).content
    )
    user = Client(HTTP_ACCEPT_LANGUAGE="de")
    assert user.login(username="alice", password=PASSWORD)
    entered = user.post("/oidc/device", {"user_code": device["user_code"]})
    page = user.get(entered["Location"]).content.decode()
    assert "<li>Ihre Dateien und Ordner in Cells verwenden</li>" in page
    assert "<li>Angemeldet bleiben, während Sie nicht da sind</li>" in page


def test_discovery_and_json_answers_stay_protocol_values(default_clients: None) -> None:
    """Scope names and error codes are never translated; nothing lazy reaches a JSON encoder."""
    english = json.loads(Client().get("/oidc/.well-known/openid-configuration").content)
    french = json.loads(
        Client(HTTP_ACCEPT_LANGUAGE="fr").get("/oidc/.well-known/openid-configuration").content
    )
    assert french == english
    assert {"openid", "profile", "email", "pydio", "offline"} <= set(french["scopes_supported"])
    refused = form_post("/oidc/oauth2/token", {"grant_type": "nope"}, HTTP_ACCEPT_LANGUAGE="de")
    assert json.loads(refused.content)["error"] == "unsupported_grant_type"


def test_admin_explains_a_bad_redirect_uri_in_german(default_clients: None, make_user: Any) -> None:
    from tests.test_admin import change_url, form_data

    make_user("root", is_staff=True, is_superuser=True)
    admin = Client(HTTP_ACCEPT_LANGUAGE="de")
    assert admin.login(username="root", password=PASSWORD)
    page = admin.get(change_url("cells-sync"))
    data = form_data(page)
    data["redirect_uris"] = "http://cells.example.com/cb\nhttp://localhost:[3666-3636]/cb"
    response = admin.post(change_url("cells-sync"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["redirect_uris"]
    assert errors == [
        "Ungültige Weiterleitungs-URI 'http://cells.example.com/cb': http ist nur für Loopback-Hosts "
        "erlaubt (localhost, 127.0.0.1, [::1]); verwenden Sie https.",
        "Ungültige Weiterleitungs-URI 'http://localhost:[3666-3636]/cb': der Portbereich [3666-3636] "
        "ist vertauscht: schreiben Sie [3636-3666].",
    ]
    assert "Ungültige Weiterleitungs-URI" in response.content.decode()


def test_validation_messages_stay_english_without_a_translator() -> None:
    """The system checks and the pure module speak English (the module never imports Django)."""
    from cells_oidc.internal.redirects import validation_errors

    assert validation_errors("https://a.example/cb#x") == [
        "Invalid redirect URI 'https://a.example/cb#x': a fragment ('#') is not allowed (RFC 6749 §3.1.2)."
    ]


# ---- right to left --------------------------------------------------------------------------------
def test_a_right_to_left_language_sets_dir_rtl(default_clients: None, alice: Any, settings: Any) -> None:
    """Hebrew has no catalogue here, but the page's direction flips with the language."""
    settings.LANGUAGES = [("en", "English"), ("he", "עברית")]
    anonymous = Client(HTTP_ACCEPT_LANGUAGE="he")
    page = anonymous.get(anonymous.get(cli_url())["Location"])
    body = page.content.decode()
    assert '<html lang="he" dir="rtl">' in body
    assert urlsplit(page.request["PATH_INFO"]).path == "/oidc/login/"


def test_the_stylesheet_has_no_physical_left_or_right() -> None:
    """Logical properties only (margin-inline-start ...), so the layout mirrors under dir="rtl"."""
    css = (
        Path(__file__).resolve().parents[1] / "cells_oidc" / "static" / "cells_oidc" / "cells_oidc.css"
    ).read_text()
    rules = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    assert not re.search(r"(?<![\w-])(left|right)\s*:|-(left|right)\b|\bfloat\s*:", rules)


def test_an_untranslated_error_description_is_marked_as_english(default_clients: None) -> None:
    """oauthlib's error_description is English: the page says so (lang="en") and escapes it."""
    page = Client(HTTP_ACCEPT_LANGUAGE="it").get(
        "/oidc/oauth2/auth?" + urlencode({"client_id": "unknown", "response_type": "code"})
    )
    body = page.content.decode()
    assert page.status_code == 400
    assert '<html lang="it" dir="ltr">' in body
    description = re.search(r'<p lang="en" dir="ltr">([^<]+)</p>', body)
    assert description and "redirect_uri" in description.group(1)
    assert "L&#x27;applicazione ha inviato una richiesta di accesso incompleta o non valida." in body


def test_a_translated_error_description_is_shown_in_the_readers_language(
    default_clients: None, alice: Any, make_user: Any
) -> None:
    """A description written with gettext_lazy reaches the page in the reader's language."""
    from cells_oidc.internal import pat

    bobs = pat.mint(make_user("bob"), expires_in=timedelta(days=1), label="bob's")
    user = Client(HTTP_ACCEPT_LANGUAGE="es")
    assert user.login(username="alice", password=PASSWORD)
    page = user.post(f"/oidc/account/tokens/{bobs.token.pk}/revoke")
    body = page.content.decode()
    assert page.status_code == 404
    assert "<p>No se ha cambiado nada.</p>" in body
    assert "Este token de acceso personal no existe o no es suyo." in body
    assert 'lang="en"' not in body.split("<body>", 1)[1]


def test_a_catalogued_error_description_is_translated_on_the_page(default_clients: None, alice: Any) -> None:
    """A description marked with gettext_noop stays English for the protocol, not on the page."""
    user = Client(HTTP_ACCEPT_LANGUAGE="fr")
    assert user.login(username="alice", password=PASSWORD)
    page = user.post(cli_url(), {"authorization": "altered", "allow": "on", "cells_oidc_step": "confirm"})
    body = html.unescape(page.content.decode())
    assert page.status_code == 400
    assert "<p>Cette page a expiré ou a été modifiée. Recommencez depuis l'application.</p>" in body
    assert "This page has expired" not in body
