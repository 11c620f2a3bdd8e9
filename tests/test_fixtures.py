"""The default_clients fixture, registration validation on every save path, and the key command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.base import DeserializationError
from oauth2_provider.models import Application

from cells_oidc.models import ClientPolicy

pytestmark = pytest.mark.django_db


def snapshot() -> list[tuple[Any, ...]]:
    apps = Application.objects.order_by("client_id").values_list(
        "pk", "client_id", "redirect_uris", "allowed_origins", "client_type", "skip_authorization"
    )
    policies = ClientPolicy.objects.order_by("pk").values_list(
        "pk", "require_pkce", "confirm_existing_session"
    )
    return [*apps, *policies]


def test_loading_twice_changes_nothing() -> None:
    call_command("loaddata", "default_clients", verbosity=0)
    first = snapshot()
    call_command("loaddata", "default_clients", verbosity=0)
    assert snapshot() == first
    assert {row[1] for row in first[:4]} == {"cells-sync", "cells-mobile", "cells-client", "cells-frontend"}


def test_default_clients_are_public_and_carry_both_uri_forms(default_clients: None) -> None:
    sync = Application.objects.get(client_id="cells-sync")
    mobile = Application.objects.get(client_id="cells-mobile")
    cli = Application.objects.get(client_id="cells-client")
    assert {app.client_type for app in (sync, mobile, cli)} == {"public"}
    assert {"http://localhost:[3636-3666]", "http://localhost:[3636-3666]/servers/callback"} <= set(
        sync.redirect_uris.split()
    )
    assert {"cellsauth://serverName", "cellsauth://callback"} == set(mobile.redirect_uris.split())
    assert {
        "http://localhost:3636",
        "http://serverName/oauth/oob",
        "http://serverName/oauth2/oob",
        "http://localhost:3000/servers/callback",
    } <= set(cli.redirect_uris.split())
    # No host is hard-coded: serverName is resolved from CELLS_OIDC_SITE_URL when a redirect is checked.
    assert "testserver" not in " ".join(app.redirect_uris for app in (sync, mobile, cli))
    assert ClientPolicy.objects.get(pk=sync.pk).require_pkce is True
    assert ClientPolicy.objects.get(pk=cli.pk).require_pkce is False
    assert ClientPolicy.objects.get(pk=mobile.pk).require_pkce is False


def test_a_fixture_with_a_bad_redirect_uri_is_refused(tmp_path: Path) -> None:
    bad = [
        {
            "model": "oauth2_provider.application",
            "fields": {
                "client_id": "bad-client",
                "name": "Bad",
                "client_type": "public",
                "authorization_grant_type": "authorization-code",
                "client_secret": "",
                "hash_client_secret": False,
                "redirect_uris": "http://localhost:[3666-3636]/cb",
                "created": "2026-01-01T00:00:00Z",
                "updated": "2026-01-01T00:00:00Z",
            },
        }
    ]
    fixture = tmp_path / "bad_clients.json"
    fixture.write_text(json.dumps(bad))
    with pytest.raises((ValidationError, DeserializationError)) as raised:
        call_command("loaddata", str(fixture), verbosity=0)
    assert "3666-3636" in str(raised.value)
    assert not Application.objects.filter(client_id="bad-client").exists()


def test_code_that_saves_without_full_clean_is_refused_too() -> None:
    app = Application(
        client_id="scripted",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://example.com/cb https://evil.example.com:[1-2]/x",
    )
    with pytest.raises(ValidationError):
        app.save()
    assert not Application.objects.filter(client_id="scripted").exists()


def test_keygen_writes_a_private_key_once(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "signing.pem"
    call_command("cells_oidc_keygen", str(target), verbosity=0)
    pem = target.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(CommandError):
        call_command("cells_oidc_keygen", str(target))
    call_command("cells_oidc_keygen", str(target), "--if-missing")
    assert target.read_text() == pem
