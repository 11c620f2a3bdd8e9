"""The pages' Content-Security-Policy allows the origin the site's static files come from (a CDN)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cells_oidc.checks import check_pages

LOGIN = "/oidc/login/"


def directives(response: Any) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";"))}


def test_same_site_static_files_allow_only_self(db: Any) -> None:
    csp = directives(Client().get(LOGIN))
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["default-src"] == ["'none'"]


@pytest.mark.parametrize(
    ("static_url", "origin"),
    [
        ("https://cdn.example/static/", "https://cdn.example"),
        ("https://cdn.example:8443/cells/static/", "https://cdn.example:8443"),
        ("//assets.example/static/", "https://assets.example"),
    ],
)
def test_a_cdn_static_url_is_allowed_for_scripts_styles_and_images(
    db: Any, settings: Any, static_url: str, origin: str
) -> None:
    settings.STATIC_URL = static_url
    page = Client().get(LOGIN)
    assert page.status_code == 200
    # The page really loads its stylesheet and script from there, and the policy lets it.
    assert f'href="{origin}/'.encode() in page.content or f'href="{static_url}'.encode() in page.content
    csp = directives(page)
    for directive in ("script-src", "style-src", "img-src"):
        assert csp[directive] == ["'self'", origin], directive
    assert csp["default-src"] == ["'none'"]
    assert csp["form-action"][0] == "'self'" and origin not in csp["form-action"]
    assert check_pages() == []


def test_configured_origins_are_added(db: Any, settings: Any) -> None:
    settings.CELLS_OIDC_CSP_STATIC_ORIGINS = "https://cdn-a.example, https://cdn-b.example:444/"
    csp = directives(Client().get(LOGIN))
    assert csp["style-src"] == ["'self'", "https://cdn-a.example", "https://cdn-b.example:444"]
    assert csp["script-src"] == csp["style-src"]
    assert check_pages() == []


@pytest.mark.parametrize(
    "value",
    [
        "cdn.example",
        "https://cdn.example/static/",
        "https://cdn.example?x=1",
        "https://cdn.example; script-src *",
        "javascript:alert(1)",
        "https://user@cdn.example",
        ["https://ok.example", "*"],
        42,
    ],
)
def test_a_bad_origin_is_an_error_and_never_reaches_the_policy(db: Any, settings: Any, value: Any) -> None:
    settings.CELLS_OIDC_CSP_STATIC_ORIGINS = value
    messages = check_pages()
    assert [m.id for m in messages] == ["cells_oidc.E016"]
    page = Client().get(LOGIN)
    assert page.status_code == 200
    csp = directives(page)
    allowed = {"'self'", "https://ok.example"}
    assert set(csp["script-src"]) <= allowed
    assert set(csp["style-src"]) <= allowed
    assert "*" not in page["Content-Security-Policy"].split()


def test_the_demo_serves_collected_static_files_without_runserver(
    db: Any, settings: Any, tmp_path: Any
) -> None:
    # Under gunicorn (DEBUG off) nothing but the site serves /static/: the demo's whitenoise serves
    # what collectstatic put in STATIC_ROOT, so the pages are styled.
    from django.core.management import call_command

    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    settings.STATIC_ROOT = str(tmp_path)
    call_command("collectstatic", "--noinput", verbosity=0)
    http = Client()  # a new handler: the middleware reads STATIC_ROOT now
    page = http.get(LOGIN)
    for asset in ("/static/cells_oidc/cells_oidc.css", "/static/cells_oidc/copy.js"):
        response = http.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["Content-Type"].split(";")[0] in ("text/css", "text/javascript")
    assert b"/static/cells_oidc/cells_oidc.css" in page.content
