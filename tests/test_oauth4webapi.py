"""An independent client library, oauth4webapi (npm, tests/js/), signs in with a pushed
authorization request (RFC 9126), PKCE and DPoP (RFC 9449) against a live server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_authlib import provider, sign_in_like_a_browser  # noqa: F401 - the live-server fixture

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
