"""``manage.py cells_oidc_client``: clients registered from the command line, validated like the admin."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from oauth2_provider.models import Application

from cells_oidc.models import ClientPolicy
from tests.conftest import basic, code_from, pkce_pair, token_request

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("cells_oidc_client", *args, stdout=out)
    return out.getvalue()


def test_set_creates_then_updates_only_what_is_given() -> None:
    output = run(
        "set", "files-app", "--name", "Files", "--redirect-uri", "https://files.example.com/cb", "--no-pkce"
    )
    assert "Created files-app" in output
    app = Application.objects.get(client_id="files-app")
    assert app.client_type == "public"
    assert ClientPolicy.objects.get(application=app).require_pkce is False
    before = (app.name, app.redirect_uris)
    output = run("set", "files-app", "--origin", "https://files.example.com")
    assert "Updated files-app" in output
    app.refresh_from_db()
    assert (app.name, app.redirect_uris) == before
    assert app.allowed_origins == "https://files.example.com"
    assert ClientPolicy.objects.get(application=app).require_pkce is False
    run("set", "files-app", "--origin", "https://files.example.com")  # idempotent
    assert Application.objects.filter(client_id="files-app").count() == 1


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost:[3666-3636]/cb",
        "http://files.example.com/cb",
        "https://files.example.com/cb#x",
        "javascript:x",
    ],
)
def test_set_refuses_malformed_registrations(uri: str) -> None:
    with pytest.raises(CommandError) as raised:
        run("set", "bad-app", "--redirect-uri", uri)
    assert "redirect_uris" in str(raised.value)
    assert not Application.objects.filter(client_id="bad-app").exists()


def test_confidential_client_secret_is_shown_once_and_works(alice: Any, browser: Any) -> None:
    output = run(
        "set",
        "partner",
        "--confidential",
        "--redirect-uri",
        "https://partner.example.com/cb",
        "--first-party",
    )
    secret = re.search(r"shown once, only its hash is stored\): (\S+)", output).group(1)
    app = Application.objects.get(client_id="partner")
    assert secret not in app.client_secret  # hashed at rest
    assert "partner" in run("list")
    shown = run("show", "partner")
    assert secret not in shown and "https://partner.example.com/cb" in shown

    redirect_uri = "https://partner.example.com/cb"
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "partner",
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "x" * 16,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    code = code_from(browser.authorize(params), redirect_uri)["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    assert token_request(data, HTTP_AUTHORIZATION=basic("partner", "wrong")).status_code == 401
    response = token_request(data, HTTP_AUTHORIZATION=basic("partner", secret))
    assert response.status_code == 200, response.content
    assert "access_token" in json.loads(response.content)

    rotated = re.search(r"shown once\): (\S+)", run("rotate-secret", "partner")).group(1)
    assert rotated != secret
    with pytest.raises(CommandError):
        run("rotate-secret", "nobody")


def test_remove_deletes_the_client() -> None:
    run("set", "temp-app", "--redirect-uri", "https://t.example.com/cb")
    assert "Removed temp-app" in run("remove", "temp-app")
    assert not Application.objects.filter(client_id="temp-app").exists()
    with pytest.raises(CommandError):
        run("show", "temp-app")


def test_public_clients_have_no_secret_to_rotate(default_clients: None) -> None:
    with pytest.raises(CommandError) as raised:
        run("rotate-secret", "cells-sync")
    assert "public" in str(raised.value)
