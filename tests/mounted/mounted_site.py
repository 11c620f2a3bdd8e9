"""cells-oidc mounted by a minimal site under ``auth/sso/`` with a public URL that has a path.

Collected only when named on the command line (`make test` does), with
``--ds=tests.mounted.settings``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db
SITE = "https://portal.example.com/cells"


@pytest.fixture
def site(db: None) -> None:
    call_command("loaddata", "default_clients", verbosity=0)
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("bob", password="pw-bob-123456")


def test_discovery_and_issuer_follow_the_mount_and_the_public_url(site: None) -> None:
    response = Client().get("/auth/sso/.well-known/openid-configuration")
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["issuer"] == f"{SITE}/auth/sso/"
    assert data["authorization_endpoint"] == f"{SITE}/auth/sso/oauth2/auth"
    assert data["token_endpoint"] == f"{SITE}/auth/sso/oauth2/token"
    assert data["jwks_uri"] == f"{SITE}/auth/sso/.well-known/jwks.json"
    assert data["end_session_endpoint"] == f"{SITE}/auth/sso/oauth2/sessions/logout"
    assert Client().get("/oidc/.well-known/openid-configuration").status_code == 404
    assert Client().get("/").content == b"the site's own home page"


def test_cells_client_signs_in_through_the_prefixed_mount(site: None) -> None:
    browser = Client()
    redirect_uri = f"{SITE}/oauth2/oob"  # http://serverName/oauth2/oob resolved against the public URL
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": redirect_uri,
        "scope": "openid email profile pydio offline",
        "state": "state-of-sixteen",
    }
    url = "/auth/sso/oauth2/auth?" + urlencode(params)
    response = browser.get(url)
    assert response.status_code == 302
    login = urlsplit(response["Location"])
    assert login.path == "/auth/sso/login/"
    next_url = parse_qs(login.query)["next"][0]
    response = browser.post(login.path, {"username": "bob", "password": "pw-bob-123456", "next": next_url})
    assert response.status_code == 303
    response = browser.get(response["Location"])
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(redirect_uri + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["iss"] == f"{SITE}/auth/sso/"
    assert browser.get("/oauth2/oob?" + urlencode({"code": query["code"]})).status_code == 200
    token = Client().post(
        "/auth/sso/oauth2/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": redirect_uri,
                "client_id": "cells-client",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert token.status_code == 200, token.content
    body = json.loads(token.content)
    info = Client().get("/auth/sso/userinfo", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert json.loads(info.content)["name"] == "bob"


def test_server_name_takes_the_public_urls_scheme_port_and_path(site: None) -> None:
    params = {"response_type": "code", "client_id": "cells-client", "scope": "openid", "state": "s" * 16}
    # The Cells documentation's form http://serverName/oauth/oob stands for {public URL}/oauth/oob ...
    params["redirect_uri"] = f"{SITE}/oauth/oob"
    response = Client().get("/auth/sso/oauth2/auth?" + urlencode(params))
    assert response.status_code == 302  # to the login page: the request is valid
    assert urlsplit(response["Location"]).path == "/auth/sso/login/"
    # ... and never for another scheme or the bare host without the site's path.
    for wrong in ("http://portal.example.com/cells/oauth/oob", "https://portal.example.com/oauth/oob"):
        params["redirect_uri"] = wrong
        response = Client().get("/auth/sso/oauth2/auth?" + urlencode(params))
        assert response.status_code == 400, wrong
        assert not response.has_header("Location")
