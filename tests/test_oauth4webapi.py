"""An independent client library, oauth4webapi (npm, tests/js/), signs in with a pushed
authorization request (RFC 9126), PKCE and DPoP (RFC 9449) against a live server, and registers
itself (RFC 7591) before signing in with the client it registered."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cells_oidc.models import Client
from tests.conftest import PASSWORD
from tests.live_server import sign_in_over_http
from tests.test_authlib import TIMEOUT, provider, sign_in_like_a_browser  # noqa: F401 - the live-server fixture

JS = Path(__file__).parent / "js"
REDIRECT_URI = "http://localhost:3640/servers/callback"


def _node() -> str:
    node = shutil.which("node")
    installed = (JS / "node_modules" / "oauth4webapi").is_dir()
    if node is None or not installed:
        reason = (
            "node is not installed: the oauth4webapi client cannot run"
            if node is None
            else "oauth4webapi is not installed: run `npm ci --prefix tests/js`"
        )
        if os.environ.get("CELLS_OIDC_REQUIRE_NODE"):
            pytest.fail(reason)  # .ci/run installs it: absent there is a failure, not a skip
        pytest.skip(reason)
    return node


@pytest.mark.django_db(transaction=True)
def test_oauth4webapi_signs_in_with_par_and_dpop(provider: str) -> None:  # noqa: F811
    node = _node()
    script = subprocess.Popen(
        [node, str(JS / "par_dpop.mjs"), f"{provider}/oidc/", "cells-sync", REDIRECT_URI],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None and script.stdin is not None
        authorization_url = script.stdout.readline().strip()
        assert "request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3A" in authorization_url, (
            authorization_url or script.stderr.read()  # type: ignore[union-attr]
        )
        callback = sign_in_like_a_browser(authorization_url)
        stdout, stderr = script.communicate(callback + "\n", timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, stderr
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    assert result["token_type"].lower() == "dpop"
    assert result["refreshed_token_type"].lower() == "dpop"
    assert result["userinfo_sub"] == result["sub"]
    # The DPoP-bound token is refused as a plain bearer token, and the refresh token without a
    # proof of the key (RFC 9449 §7.1, §5).
    assert result["bearer_status"] == 401
    assert result["bearer_challenge"].startswith("DPoP ")
    assert result["refresh_without_proof"] == "invalid_grant"


@pytest.mark.django_db(transaction=True)
def test_oauth4webapi_registers_a_public_client_and_signs_in_with_it(
    provider: str,  # noqa: F811
    settings: Any,
) -> None:
    node = _node()
    settings.CELLS_OIDC_REGISTRATION = "open"
    before = Client.objects.count()
    redirect_uri = "http://127.0.0.1:53682/callback"  # a native app's loopback listener, RFC 8252 §7.3
    bad_redirect_uri = "http://evil.example/cb"  # http on a host that is not loopback
    script = subprocess.Popen(
        [node, str(JS / "registration.mjs"), f"{provider}/oidc/", redirect_uri, bad_redirect_uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None and script.stdin is not None
        registered_line = script.stdout.readline().strip()
        assert registered_line, script.stderr.read()  # type: ignore[union-attr]
        client_id = json.loads(registered_line)["client_id"]
        # The refused registration stored nothing; the other one a third-party public client.
        assert Client.objects.count() == before + 1
        client = Client.objects.get(client_id=client_id)
        assert client.client_type == Client.CLIENT_PUBLIC and not client.skip_authorization
        assert client.redirect_uris.split() == [redirect_uri]
        authorization_url = script.stdout.readline().strip()
        assert authorization_url.startswith(f"{provider}/oidc/"), authorization_url
        callback, approved = sign_in_over_http(
            authorization_url, password=PASSWORD, approve=True, timeout=TIMEOUT
        )
        assert callback.startswith(redirect_uri + "?"), callback
        stdout, stderr = script.communicate(callback + "\n", timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, stderr
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    # RFC 7591 §3.2.2: the library reads the refusal as an OAuth error response.
    assert result["refused"] == {"status": 400, "error": "invalid_redirect_uri"}
    assert result["client_id"] == client_id
    assert result["token_endpoint_auth_method"] == "none" and not result["has_secret"]
    assert result["has_registration_access_token"]  # RFC 7592 §3
    # A registered client is third party: the user was asked for consent before any code.
    assert "consent" in approved
    assert result["id_token_aud"] in (client_id, [client_id])
    assert result["token_type"].lower() == "bearer"
    assert result["userinfo_sub"] == result["sub"]
