"""Signing keys managed by the app (cells_oidc.internal.keys, manage.py cells_oidc_keys; docs/keys.md).

Every command's success and error paths, encryption at rest, the settings key imported with its kid,
ES256 and EdDSA tokens verified through HTTP and advertised in the JWKS and discovery, a revoked
key's tokens refused at once, and the public documents' bounded trust in a confirmed key set
(``CELLS_OIDC_KEYS_DOCUMENT_SECONDS``) that tokens never get.
"""

from __future__ import annotations

import base64
import json
import time
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from jwcrypto import jwk

from cells_oidc import signals
from cells_oidc.internal import keys
from cells_oidc.models import ClientPolicy, SigningKey
from tests.conftest import SCOPE, Browser, code_from, token_request

pytestmark = pytest.mark.django_db

CLI_CALLBACK = "http://localhost:3000/servers/callback"
KEK = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def kek(settings: Any) -> str:
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = KEK
    settings.CELLS_OIDC_KEY_PUBLISH_SECONDS = 0
    # One process: its own changes show at once; cells_oidc_keys need not wait for others.
    settings.CELLS_OIDC_KEYS_DOCUMENT_SECONDS = 0
    return KEK


def run(*args: str) -> str:
    out = StringIO()
    call_command("cells_oidc_keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fails(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


def sign_in(browser: Browser) -> dict[str, Any]:
    """Real tokens of cells-client from a real authorization code flow."""
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CLI_CALLBACK,
        "scope": SCOPE,
        "state": "st4te-of-the-cli",
    }
    code = code_from(browser.authorize(params), CLI_CALLBACK)["code"]
    answer = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CLI_CALLBACK,
            "client_id": "cells-client",
        }
    )
    assert answer.status_code == 200, answer.content
    return dict(json.loads(answer.content))


def header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def me(access_token: str) -> int:
    return int(Client().get("/a/user/me", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code)


def userinfo(access_token: str) -> int:
    return int(Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code)


def jwks_kids() -> list[str]:
    return [key["kid"] for key in Client().get("/oidc/.well-known/jwks.json").json()["keys"]]


def settings_kid() -> str:
    return keys.settings_keys()[0].kid


# ---- the settings key, then the import -----------------------------------------------------------
def test_without_stored_keys_the_settings_key_signs_as_before(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    tokens = sign_in(browser)
    assert header(tokens["id_token"]) == {"alg": "RS256", "kid": settings_kid(), "typ": "JWT"}
    assert settings_kid() in jwks_kids()
    assert "No key is stored" in run("list")


def test_import_from_settings_keeps_the_kid_and_the_tokens_it_signed(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    before = sign_in(browser)
    inactive = keys.settings_keys()[1].kid
    output = run("import", "--from-settings")
    assert f"Imported {settings_kid()} (RS256, current)" in output
    assert f"Imported {inactive} (RS256, retired)" in output
    # Same kid: the token signed before the import still works, and new ones carry that kid.
    assert me(before["access_token"]) == 200
    after = sign_in(Browser())
    assert header(after["access_token"])["kid"] == settings_kid()
    assert set(jwks_kids()) == {settings_kid(), inactive}
    # Twice is harmless.
    assert "already stored" in run("import", "--from-settings")
    table = run("list")
    assert table.splitlines()[0].split()[:4] == ["KID", "ALGORITHM", "USE", "STATE"]
    assert settings_kid() in table and "current" in table


def test_create_before_import_is_refused_so_that_the_settings_tokens_keep_working() -> None:
    message = fails("create")
    assert "import --from-settings" in message
    assert not SigningKey.objects.exists()


# ---- encryption at rest -----------------------------------------------------------------------
def test_the_database_row_holds_no_private_key(default_clients: None) -> None:
    run("import", "--from-settings")
    run("create")
    with connection.cursor() as cursor:
        cursor.execute("SELECT kid, public_jwk, encrypted_private_key FROM cells_oidc_signingkey")
        rows = cursor.fetchall()
    assert len(rows) == 3
    for kid, public, encrypted in rows:
        text = f"{public}{encrypted}"
        assert "PRIVATE KEY" not in text and "BEGIN" not in text
        assert '"d"' not in str(public)  # RFC 7518 §6.3.2.1: the private exponent is never published
        assert encrypted.startswith("gAAAA")  # a Fernet token
        # The KEK decrypts it to the key of that kid, and only the KEK.
        assert keys.decrypt_private_key(encrypted, kid=kid).thumbprint() == kid


def test_a_wrong_kek_is_a_clear_error_and_signs_nothing(
    settings: Any, default_clients: None, alice: Any
) -> None:
    run("import", "--from-settings")
    run("create", "--algorithm", "ES256", "--use", "access_token")
    settings.CELLS_OIDC_ACCESS_TOKEN_ALGORITHM = "ES256"
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
    keys._private_keys.clear()
    from cells_oidc.internal import keycache

    keycache._private.clear()
    with pytest.raises(keys.KeyEncryptionError, match="cannot be decrypted"):
        keys.signing_key("ES256", keys.ACCESS_TOKEN)
    # The database check names the problem before a token is ever asked for.
    from cells_oidc.checks import check_signing_keys

    assert [m.id for m in check_signing_keys(databases=["default"])] == ["cells_oidc.E018"]
    # No KEK at all: every command that writes a key refuses before writing anything.
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = None
    count = SigningKey.objects.count()
    assert "CELLS_OIDC_KEY_ENCRYPTION_KEY is not set" in fails("create", "--algorithm", "EdDSA")
    assert SigningKey.objects.count() == count


def test_a_malformed_kek_is_reported_by_a_check(settings: Any) -> None:
    from cells_oidc.checks import check_settings

    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = "not-a-fernet-key"
    assert "cells_oidc.E017" in [m.id for m in check_settings()]
    settings.CELLS_OIDC_ACCESS_TOKEN_ALGORITHM = "HS256"
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = KEK
    assert [m.id for m in check_settings() if m.id == "cells_oidc.E017"] == ["cells_oidc.E017"]


def test_kek_rotation_reencrypts_every_key(settings: Any, default_clients: None) -> None:
    run("import", "--from-settings")
    new = Fernet.generate_key().decode()
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = [new, KEK]
    assert "Re-encrypted 2 key(s)" in run("reencrypt")
    settings.CELLS_OIDC_KEY_ENCRYPTION_KEY = new  # the old KEK may now go
    for row in SigningKey.objects.all():
        keys.decrypt_private_key(row.encrypted_private_key, kid=row.kid)
    assert len(run("kek").strip()) == 44


def test_a_row_whose_ciphertext_was_swapped_does_not_sign(default_clients: None) -> None:
    run("import", "--from-settings")
    run("create")
    current = SigningKey.objects.get(state="current")
    upcoming = SigningKey.objects.get(state="next")
    with pytest.raises(keys.KeyEncryptionError, match="not the key of that kid"):
        keys.decrypt_private_key(upcoming.encrypted_private_key, kid=current.kid)


# ---- ES256 and EdDSA ----------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_access_tokens_of_another_algorithm_verify_and_are_advertised(
    settings: Any, algorithm: str, default_clients: None, alice: Any, browser: Browser
) -> None:
    run("import", "--from-settings")
    assert "current" in run("create", "--algorithm", algorithm, "--use", "access_token")
    settings.CELLS_OIDC_ACCESS_TOKEN_ALGORITHM = algorithm
    tokens = sign_in(browser)
    assert header(tokens["access_token"])["alg"] == algorithm
    assert header(tokens["id_token"])["alg"] == "RS256"  # the Cells clients expect RS256
    assert me(tokens["access_token"]) == 200
    assert userinfo(tokens["access_token"]) == 200
    refreshed = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-client"}
    )
    assert refreshed.status_code == 200, refreshed.content
    jwks = Client().get("/oidc/.well-known/jwks.json").json()["keys"]
    published = {key["kid"]: key for key in jwks}
    kid = header(tokens["access_token"])["kid"]
    assert published[kid]["alg"] == algorithm and "d" not in published[kid]
    # Introspection (RFC 7662) verifies it too.
    metadata = Client().get("/oidc/.well-known/openid-configuration").json()
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]  # an access-token-only key


def test_a_token_whose_header_names_another_algorithm_for_the_kid_is_refused(
    settings: Any, default_clients: None, alice: Any, browser: Browser
) -> None:
    run("import", "--from-settings")
    run("create", "--algorithm", "ES256", "--use", "access_token")
    row = SigningKey.objects.get(algorithm="ES256")
    private = keys.decrypt_private_key(row.encrypted_private_key, kid=row.kid)
    from jwcrypto import jwt

    # An ES256 key's kid with an RS256 header, signed by an attacker's RSA key: refused.
    attacker = jwk.JWK.generate(kty="RSA", size=2048)
    claims = json.dumps({"iss": "http://testserver/oidc/", "aud": "http://testserver", "exp": 2**33})
    forged = jwt.JWT(header={"alg": "RS256", "kid": row.kid, "typ": "at+jwt"}, claims=claims)
    forged.make_signed_token(attacker)
    assert me(forged.serialize()) == 401
    # A real ES256 signature with the kid of the RSA key: refused too.
    confused = jwt.JWT(header={"alg": "ES256", "kid": settings_kid(), "typ": "at+jwt"}, claims=claims)
    confused.make_signed_token(private)
    assert me(confused.serialize()) == 401


def test_per_client_id_token_algorithm(default_clients: None, alice: Any, browser: Browser) -> None:
    from oauth2_provider.models import get_application_model

    run("import", "--from-settings")
    policy = ClientPolicy.objects.get(application__client_id="cells-client")
    policy.id_token_algorithm = "EdDSA"
    with pytest.raises(Exception, match="No current signing key"):
        policy.full_clean()  # no EdDSA key signs ID tokens yet
    run("create", "--algorithm", "EdDSA", "--use", "id_token")
    policy.full_clean()
    policy.save()
    metadata = Client().get("/oidc/.well-known/openid-configuration").json()
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256", "EdDSA"]
    tokens = sign_in(browser)
    assert header(tokens["id_token"])["alg"] == "EdDSA"
    assert header(tokens["access_token"])["alg"] == "RS256"
    # The ID token verifies as an id_token_hint at logout (RFC: OpenID Connect RP-Initiated Logout §2).
    from cells_oidc.internal import tokens as tokens_module

    claims = tokens_module.verify(tokens["id_token"], typ="JWT", check_time=False)
    assert claims["aud"] == get_application_model().objects.get(client_id="cells-client").client_id


# ---- the life cycle -----------------------------------------------------------------------------
def test_create_rotate_retire_revoke_and_their_errors(
    default_clients: None, django_capture_on_commit_callbacks: Any
) -> None:
    received: list[tuple[str, str]] = []

    def on_key_changed(sender: Any, *, kid: str, action: str, **kwargs: Any) -> None:
        received.append((kid, action))

    signals.key_changed.connect(on_key_changed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run("import", "--from-settings")
            first = settings_kid()
            created = run("create")
            upcoming = SigningKey.objects.get(state="next").kid
            assert f"Created RS256 key {upcoming} (next" in created
            assert upcoming in jwks_kids()  # published before it signs
            assert "already has a next key" in fails("create")
            assert "unknown algorithm 'HS256'" in fails("create", "--algorithm", "HS256")
            assert "unknown use" in fails("create", "--use", "everything")
            assert "2048, 3072 or 4096" in fails("create", "--bits", "1024")

            rotated = run("rotate")
            assert f"{upcoming} now signs; {first} retired" in rotated
            assert SigningKey.objects.get(kid=upcoming).state == "current"
            assert SigningKey.objects.get(kid=first).state == "retired"
            assert first in jwks_kids()  # its tokens may still be in use
            newest = SigningKey.objects.get(state="next").kid

            # From cron: a current key younger than the interval is left alone (idempotent).
            assert "nothing to do" in run("rotate", "--if-older-than", "30d")
            assert SigningKey.objects.get(state="current").kid == upcoming
            assert "not a duration" in fails("rotate", "--if-older-than", "soon")
            assert "no current key in the database for EdDSA" in fails("rotate", "--algorithm", "EdDSA")

            assert "no stored key has the kid" in fails("revoke", "no-such-kid")
            assert "already retired" in fails("retire", "--", first)
            revoked = run("revoke", "--", first)
            assert f"Revoked {first}" in revoked
            assert first not in jwks_kids()
            assert "already revoked" in fails("revoke", "--", first)
            assert "already revoked" in fails("retire", "--", first)

            # Retiring the current key promotes the next one: something always signs.
            retired = run("retire", "--", upcoming)
            assert f"{newest} now signs RS256 tokens" in retired
            assert keys.signing_key().kid == newest
            assert "Give either a PEM file or --from-settings" in fails("import")
            assert "cannot be read" in fails("import", "/nonexistent/key.pem")
    finally:
        signals.key_changed.disconnect(on_key_changed)
    actions = [action for _, action in received]
    assert actions[:2] == ["imported", "imported"]
    assert {"created", "promoted", "retired", "revoked"} <= set(actions)


def test_a_next_key_published_too_briefly_is_not_promoted(settings: Any, default_clients: None) -> None:
    settings.CELLS_OIDC_KEY_PUBLISH_SECONDS = 3600
    run("import", "--from-settings")
    output = run("rotate")  # no next key yet: one is published, nothing signs with it
    assert "published a next key" in output
    assert keys.signing_key().kid == settings_kid()
    assert "clients may not know it yet" in run("rotate")
    assert keys.signing_key().kid == settings_kid()
    # The JWKS is cached for at most half the publication time (docs/keys.md).
    response = Client().get("/oidc/.well-known/jwks.json")
    assert response["Cache-Control"] == "public, max-age=300"
    settings.CELLS_OIDC_KEY_PUBLISH_SECONDS = 120
    assert Client().get("/oidc/.well-known/jwks.json")["Cache-Control"] == "public, max-age=60"
    assert "now signs" in run("rotate", "--force")


def test_import_a_pem_file(tmp_path: Any, default_clients: None) -> None:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    path = tmp_path / "ec.pem"
    path.write_bytes(key.export_to_pem(private_key=True, password=None))
    # Before the settings key is stored, another key would silently replace it: refused.
    assert "import --from-settings" in fails("import", str(path))
    run("import", "--from-settings")
    assert f"Imported {key.thumbprint()} (ES256, current)" in run(
        "import", str(path), "--use", "access_token"
    )
    assert "already stored" in fails("import", str(path))
    public = tmp_path / "public.pem"
    public.write_bytes(key.export_to_pem())
    assert "a public key cannot sign" in fails("import", str(public))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    assert "not a PEM private key" in fails("import", str(garbage))
    small = tmp_path / "small.pem"
    small.write_bytes(jwk.JWK.generate(kty="RSA", size=1024).export_to_pem(private_key=True, password=None))
    assert "2048 bits or more" in fails("import", str(small))


@pytest.mark.django_db(transaction=True)
def test_a_revoked_keys_tokens_fail_at_once(default_clients: None, alice: Any, browser: Browser) -> None:
    run("import", "--from-settings")
    run("create")
    run("rotate")
    tokens = sign_in(browser)
    kid = header(tokens["access_token"])["kid"]
    assert me(tokens["access_token"]) == 200 and userinfo(tokens["access_token"]) == 200
    run("revoke", "--", kid)
    assert me(tokens["access_token"]) == 401
    assert userinfo(tokens["access_token"]) == 401
    # The next key took over: a refresh gives working tokens signed by it.
    refreshed = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-client"}
    )
    assert refreshed.status_code == 200, refreshed.content
    fresh = refreshed.json()["access_token"]
    assert header(fresh)["kid"] != kid and me(fresh) == 200


def test_the_admin_shows_keys_read_only_without_private_material(
    admin_client: Client, default_clients: None
) -> None:
    run("import", "--from-settings")
    row = SigningKey.objects.get(state="current")
    listing = admin_client.get("/admin/cells_oidc/signingkey/")
    assert listing.status_code == 200 and row.kid in listing.content.decode()
    page = admin_client.get(f"/admin/cells_oidc/signingkey/{row.pk}/change/")
    assert page.status_code == 200
    assert row.encrypted_private_key not in page.content.decode()
    assert admin_client.get("/admin/cells_oidc/signingkey/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/cells_oidc/signingkey/{row.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert SigningKey.objects.filter(pk=row.pk, state="current").exists()


# ---- the public documents' bounded trust (CELLS_OIDC_KEYS_DOCUMENT_SECONDS; docs/keys.md) --------
DISCOVERY = "/oidc/.well-known/openid-configuration"


def test_discovery_and_the_jwks_trust_a_confirmed_key_set_for_a_moment_and_tokens_never(
    settings: Any, default_clients: None, alice: Any, browser: Browser
) -> None:
    settings.CELLS_OIDC_KEYS_DOCUMENT_SECONDS = 0.5
    run("import", "--from-settings")
    tokens = sign_in(browser)
    reads = mock.Mock(wraps=keys._read_shared_version)
    with mock.patch.object(keys, "_read_shared_version", reads):
        first = set(jwks_kids())
        for _ in range(5):
            assert set(jwks_kids()) == first
            assert Client().get(DISCOVERY).status_code == 200
        assert reads.call_count <= 1  # 10 public documents, at most one read of the shared version
    assert me(tokens["access_token"]) == 200 and userinfo(tokens["access_token"]) == 200
    # Another process revokes the key: this one is not told, only the shared version changes. Its
    # tokens are refused at once, inside the documents' window: tokens never use it.
    with mock.patch.object(keys, "forget"):
        keys.revoke(header(tokens["access_token"])["kid"])
    assert me(tokens["access_token"]) == 401 and userinfo(tokens["access_token"]) == 401

    with mock.patch.object(keys, "_read_shared_version", reads):
        jwks_kids()
        # Another process creates a key: the public documents show it within the window.
        with mock.patch.object(keys, "forget"):
            created = keys.create_key("ES256").kid
        started = time.monotonic()
        while created not in jwks_kids():
            assert time.monotonic() - started < 0.5 + 1.0, "the JWKS kept a stale key set"
            time.sleep(0.02)
        assert "ES256" in Client().get(DISCOVERY).json()["id_token_signing_alg_values_supported"]


def test_with_zero_seconds_every_public_document_reads_the_shared_version(
    settings: Any, default_clients: None
) -> None:
    settings.CELLS_OIDC_KEYS_DOCUMENT_SECONDS = 0
    run("import", "--from-settings")
    reads = mock.Mock(wraps=keys._read_shared_version)
    with mock.patch.object(keys, "_read_shared_version", reads):
        for _ in range(3):
            jwks_kids()
            Client().get(DISCOVERY)
    assert reads.call_count == 6
    with mock.patch.object(keys, "forget"):
        created = keys.create_key("ES256").kid
    assert created in jwks_kids()  # at the very next request
    assert "ES256" in Client().get(DISCOVERY).json()["id_token_signing_alg_values_supported"]


def test_the_command_returns_once_every_process_can_publish_the_change(settings: Any) -> None:
    settings.CELLS_OIDC_KEYS_DOCUMENT_SECONDS = 0.4
    run("import", "--from-settings")
    started = time.monotonic()
    run("create")
    assert time.monotonic() - started >= 0.4
    settings.CELLS_OIDC_KEYS_DOCUMENT_SECONDS = "soon"  # not a number: the exact behaviour, and E017
    assert keys.app_settings.KEYS_DOCUMENT_SECONDS == 0.0
    from cells_oidc.checks import check_settings

    assert any("CELLS_OIDC_KEYS_DOCUMENT_SECONDS" in m.msg for m in check_settings())
