"""README's "Mount it in your Django site", tested as a newcomer follows it.

The fast tests check the settings helper the recipe relies on (a key file read at first use). The
literal test (``make test-recipe``; CI runs it, ``make test`` skips it unless CELLS_OIDC_TEST_RECIPE=1)
builds the wheel, installs it in a fresh virtualenv, creates a site with ``django-admin startproject``,
appends the README's settings and URLs exactly as printed (between ``<!-- recipe:… -->`` markers),
runs the README's commands, serves the site and signs in with Authlib against the client the README
registers.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

from cells_oidc.checks import check_settings
from cells_oidc.conf import KeyFile, oauth2_provider_settings
from tests.conftest import Browser
from tests.test_tokens import sign_in, verified_claims

ROOT = Path(__file__).resolve().parent.parent


# ---- the settings helper: signing_key_file= is read at first use -----------------------------------
def test_a_key_file_named_before_it_exists_is_read_at_first_use(
    tmp_path: Path, settings: Any, default_clients: None, alice: Any
) -> None:
    path = tmp_path / "etc" / "signing-key.pem"
    # The settings module loads before the key exists: no FileNotFoundError.
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(signing_key_file=path)
    problems = [m for m in check_settings() if m.id == "cells_oidc.E005"]
    assert len(problems) == 1
    assert str(path) in problems[0].msg and "cells_oidc_keygen" in problems[0].msg

    call_command("cells_oidc_keygen", str(path), verbosity=0)
    assert "cells_oidc.E005" not in {m.id for m in check_settings()}
    jwks = Client().get("/oidc/.well-known/jwks.json").json()
    from jwcrypto import jwk

    on_disk = jwk.JWK.from_pem(path.read_bytes())
    assert [key["kid"] for key in jwks["keys"]] == [on_disk.thumbprint()]
    claims = verified_claims(sign_in(Browser())["id_token"])
    assert claims["name"] == "alice"


def test_a_key_file_never_shows_the_key(tmp_path: Path) -> None:
    path = tmp_path / "signing-key.pem"
    call_command("cells_oidc_keygen", str(path), verbosity=0)
    key = KeyFile(path)
    assert key.startswith("-----BEGIN PRIVATE KEY")  # read on first use
    for shown in (repr(key), repr(copy.deepcopy(key)), repr(copy.copy(key)), pickle.dumps(key)):
        assert "PRIVATE" not in str(shown)
    assert str(pickle.loads(pickle.dumps(key))) == path.read_text()


def test_one_key_source_exactly() -> None:
    with pytest.raises(TypeError):
        oauth2_provider_settings()
    with pytest.raises(TypeError):
        oauth2_provider_settings(signing_key="x", signing_key_file="/x")
    assert oauth2_provider_settings(signing_key="PEM")["OIDC_RSA_PRIVATE_KEY"] == "PEM"
    assert django_settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"]
