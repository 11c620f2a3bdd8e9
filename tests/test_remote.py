"""Remote mode: an API in another site, knowing only the issuer URL, against a live provider process.

The provider runs in a separate process (``manage.py runserver 127.0.0.1:<port> --noreload`` with
tests/remote/settings.py: a file SQLite database, PEM keys written here). Tokens are obtained from
it over HTTP the way a client does (login form with its CSRF token, authorization request, code
exchange). This process plays the API site: remote-mode settings, DRF views of this module.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.test import Client
from django.urls import path
from jwcrypto import jwk
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cells_oidc.api.authentication import BearerTokenAuthentication
from cells_oidc.api.permissions import HasScope
from tests.live_server import free_port, http, sign_in_over_http

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_remote")]

ROOT = Path(__file__).resolve().parent.parent
API_AUDIENCE = "https://files-api.example.test"
PASSWORD = "remote provider password 42"
CLIENT_SECRET = secrets.token_urlsafe(24)
START_TIMEOUT = 40
HTTP_TIMEOUT = 10


# ---- the API site ---------------------------------------------------------------------------------
class MeView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        info = request.auth
        return Response(
            {
                "user": request.user.get_username(),
                "user_type": type(request.user).__name__,
                "kind": info.kind,
                "subject": info.subject,
                "client_id": info.client_id,
                "scopes": sorted(info.scopes),
            }
        )


class PydioView(MeView):
    permission_classes = [HasScope("pydio")]


urlpatterns = [path("api/me", MeView.as_view()), path("api/pydio", PydioView.as_view())]


def api_get(url: str, token: str) -> Any:
    return Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token}")


def reason(response: Any) -> str:
    return str(response.json().get("detail", ""))


# ---- the provider process -------------------------------------------------------------------------
@dataclass
class Provider:
    """The provider process: start, restart with other keys, stop; tokens through its HTTP flow."""

    directory: Path
    port: int
    user_pk: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "provider.log"

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.site}/oidc/"

    def env(self, active: str = "key1.pem", inactive: str = "") -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.remote.settings",
            "CELLS_OIDC_REMOTE_DIR": str(self.directory),
            "CELLS_OIDC_REMOTE_SITE_URL": self.site,
            "CELLS_OIDC_REMOTE_API_AUDIENCE": API_AUDIENCE,
            "CELLS_OIDC_REMOTE_ACTIVE_KEY": active,
            "CELLS_OIDC_REMOTE_INACTIVE_KEYS": inactive,
            "CELLS_OIDC_REMOTE_PASSWORD": PASSWORD,
            "CELLS_OIDC_REMOTE_CLIENT_SECRET": CLIENT_SECRET,
            "PYTHONUNBUFFERED": "1",
        }

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        return result.stdout.decode()

    def seed(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("loaddata", "default_clients", "-v", "0")
        output = self.manage("shell", "-c", "import runpy; runpy.run_path('tests/remote/seed.py')")
        self.user_pk = re.search(r"seeded user=(\d+)", output).group(1)  # type: ignore[union-attr]

    def start(self, active: str = "key1.pem", inactive: str = "") -> None:
        assert self.process is None
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            # One request at a time, so the log is in the order the requests were answered.
            [
                sys.executable,
                "manage.py",
                "runserver",
                f"127.0.0.1:{self.port}",
                "--noreload",
                "--nothreading",
            ],
            cwd=ROOT,
            env=self.env(active, inactive),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        with http() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"the provider exited:\n{self.log_path.read_text()[-3000:]}")
                try:
                    if session.get(self.issuer + ".well-known/openid-configuration", timeout=2).ok:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the provider did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, active: str, inactive: str = "") -> None:
        self.stop()
        self.start(active, inactive)

    def jwks_fetches(self) -> int:
        """How many times the JWKS was fetched since this test started the provider.

        The provider logs a request after answering it; a marker request, logged after every
        request answered before it, makes sure the count is complete.
        """
        marker = uuid.uuid4().hex
        with http() as session:
            session.get(f"{self.issuer}?probe={marker}", allow_redirects=False, timeout=HTTP_TIMEOUT)
        deadline = time.monotonic() + 10
        while marker not in (text := self.log_path.read_text()):
            assert time.monotonic() < deadline, "the provider did not log the marker request"
            time.sleep(0.05)
        return text.count('"GET /oidc/.well-known/jwks.json')

    def sign_in(self, scope: str = "openid profile pydio offline") -> dict[str, Any]:
        """A user's sign-in through cells-client, over HTTP: authorize, log in, exchange the code."""
        redirect_uri = f"{self.site}/oauth2/oob"
        params = {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": secrets.token_urlsafe(12),
        }
        with http() as session:
            location, _ = sign_in_over_http(
                f"{self.issuer}oauth2/auth?{urlencode(params)}",
                password=PASSWORD,
                timeout=HTTP_TIMEOUT,
                browser=session,
            )
            assert location.startswith(redirect_uri + "?"), location
            code = parse_qs(urlsplit(location).query)["code"][0]
            exchange = session.post(
                f"{self.issuer}oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "client_id": "cells-client",
                },
                timeout=HTTP_TIMEOUT,
            )
        assert exchange.status_code == 200, exchange.text
        return dict(exchange.json())

    def revoke(self, token: str) -> None:
        with http() as session:
            response = session.post(
                f"{self.issuer}oauth2/revoke",
                data={"token": token, "client_id": "cells-client"},
                timeout=HTTP_TIMEOUT,
            )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Provider:
    directory = tmp_path_factory.mktemp("remote-provider")
    for name in ("key1.pem", "key2.pem"):
        key = jwk.JWK.generate(kty="RSA", size=2048)
        (directory / name).write_bytes(key.export_to_pem(private_key=True, password=None))
    provider = Provider(directory=directory, port=free_port())
    provider.seed()
    return provider


@pytest.fixture
def provider(seeded: Provider) -> Iterator[Provider]:
    seeded.log_path.write_bytes(b"")  # each test counts the provider's requests from zero
    seeded.start()
    try:
        yield seeded
    finally:
        seeded.stop()


@pytest.fixture
def remote(settings: Any, provider: Provider) -> Provider:
    """This site in remote mode: nothing but the issuer (and the audience of this API)."""
    settings.CELLS_OIDC_RESOURCE_ISSUER = provider.issuer
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = API_AUDIENCE
    settings.CELLS_OIDC_RESOURCE_HTTP_TIMEOUT = 5
    settings.CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS = 2
    return provider


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_with_unknown_kid(issuer: str, subject: str) -> str:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "at+jwt", "kid": f"made-up-{uuid.uuid4()}"}
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": API_AUDIENCE,
        "client_id": "cells-client",
        "scope": "openid",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = key.get_op_key("sign").sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


# ---- tests ----------------------------------------------------------------------------------------
def test_a_token_of_the_remote_provider_is_accepted_without_a_database(
    remote: Provider, django_assert_num_queries: Any, settings: Any
) -> None:
    tokens = remote.sign_in()
    response = api_get("/api/me", tokens["access_token"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user_type"] == "TokenUser"
    assert body["subject"] == body["user"] == remote.user_pk
    assert body["client_id"] == "cells-client"
    assert {"openid", "pydio"} <= set(body["scopes"])
    assert api_get("/api/pydio", tokens["access_token"]).status_code == 200
    # Keys cached: the hot path makes no HTTP call and no database query.
    fetches = remote.jwks_fetches()
    with django_assert_num_queries(0):
        for _ in range(5):
            assert api_get("/api/me", tokens["access_token"]).status_code == 200
    assert remote.jwks_fetches() == fetches
    # The ID token is signed by the same key but is not an access token.
    refused = api_get("/api/me", tokens["id_token"])
    assert refused.status_code == 401
    assert reason(refused) == "Invalid bearer token: not an access token."


def test_a_local_user_can_stand_for_the_subject(remote: Provider, settings: Any, make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    settings.CELLS_OIDC_RESOURCE_LOAD_USER = True
    token = remote.sign_in()["access_token"]
    # No user with that primary key here yet: refused.
    get_user_model().objects.filter(pk=remote.user_pk).delete()
    assert reason(api_get("/api/me", token)) == "Invalid bearer token: unknown user."
    make_user("alice-here", id=int(remote.user_pk))
    response = api_get("/api/me", token)
    assert response.status_code == 200, response.content
    assert response.json()["user"] == "alice-here"


def test_a_token_for_another_audience_is_refused(remote: Provider, settings: Any) -> None:
    token = remote.sign_in()["access_token"]
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = "https://another-api.example.test"
    response = api_get("/api/me", token)
    assert response.status_code == 401
    assert reason(response) == "Invalid bearer token: wrong audience."


@pytest.mark.parametrize("spelling", ["http://localhost:{port}/oidc/", "http://127.0.0.1:{port}/oidc"])
def test_the_issuer_must_match_discovery_byte_for_byte(
    remote: Provider, settings: Any, spelling: str
) -> None:
    token = remote.sign_in()["access_token"]
    # The same server under another spelling: its discovery document names another issuer.
    settings.CELLS_OIDC_RESOURCE_ISSUER = spelling.format(port=remote.port)
    response = api_get("/api/me", token)
    assert response.status_code == 401
    assert reason(response) == "Invalid bearer token: unknown key."
    assert remote.jwks_fetches() == 0  # the discovery document was refused before any key was read


class MovedClock:
    """The ``time`` module as cells_oidc.internal.remote sees it, with a monotonic clock the test
    moves forward instead of sleeping (the key cache's intervals use ``time.monotonic()``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def shift(self, seconds: float) -> None:
        self.offset += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MovedClock:
    from cells_oidc.internal import remote

    moved = MovedClock()
    monkeypatch.setattr(remote, "time", moved)
    return moved


def test_key_rotation_while_the_api_keeps_running(remote: Provider, settings: Any, clock: MovedClock) -> None:
    settings.CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS = 60
    spam = [forged_with_unknown_kid(remote.issuer, remote.user_pk) for _ in range(3)]
    old_token = remote.sign_in()["access_token"]
    assert api_get("/api/me", old_token).status_code == 200
    assert remote.jwks_fetches() == 1

    # Made-up kids: right after a fetch none triggers another; later, one fetch for all of them.
    for _ in range(10):
        for token in spam:
            assert reason(api_get("/api/me", token)) == "Invalid bearer token: unknown key."
    assert remote.jwks_fetches() == 1
    clock.shift(61)
    for _ in range(10):
        for token in spam:
            assert api_get("/api/me", token).status_code == 401
    assert remote.jwks_fetches() == 2

    # The provider rotates: a new signing key, the old one still published as inactive.
    remote.restart(active="key2.pem", inactive="key1.pem")
    new_token = remote.sign_in()["access_token"]
    new_kid = json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"]
    old_kid = json.loads(base64.urlsafe_b64decode(old_token.split(".")[0] + "=="))["kid"]
    assert new_kid != old_kid
    assert api_get("/api/me", old_token).status_code == 200  # from the cached keys
    assert remote.jwks_fetches() == 2
    clock.shift(61)  # the unknown kid of the new key may fetch once the interval has passed
    assert api_get("/api/me", new_token).status_code == 200, api_get("/api/me", new_token).content
    assert remote.jwks_fetches() == 3
    assert api_get("/api/me", old_token).status_code == 200
    assert api_get("/api/me", new_token).status_code == 200
    assert remote.jwks_fetches() == 3


def test_a_retired_key_stops_verifying_when_the_cached_keys_expire(
    remote: Provider, settings: Any, clock: MovedClock
) -> None:
    settings.CELLS_OIDC_RESOURCE_JWKS_CACHE_SECONDS = 60
    settings.CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS = 0
    old_token = remote.sign_in()["access_token"]
    assert api_get("/api/me", old_token).status_code == 200
    remote.restart(active="key2.pem")  # key1 no longer published
    new_token = remote.sign_in()["access_token"]
    assert api_get("/api/me", new_token).status_code == 200
    clock.shift(61)
    response = api_get("/api/me", old_token)
    assert response.status_code == 401
    assert reason(response) == "Invalid bearer token: unknown key."


def test_revocation_reaches_the_api_through_introspection(remote: Provider, settings: Any) -> None:
    token = remote.sign_in()["access_token"]
    remote.revoke(token)
    # Without introspection a remote API cannot know: the token lives until it expires.
    assert api_get("/api/me", token).status_code == 200
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_ID = "files-api"
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_SECRET = CLIENT_SECRET
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CACHE_SECONDS = 1
    response = api_get("/api/me", token)
    assert response.status_code == 401
    assert reason(response) == "Invalid bearer token: revoked."

    live = remote.sign_in()["access_token"]
    assert api_get("/api/me", live).status_code == 200
    remote.revoke(live)
    # The "active" answer is reused for at most the cache lifetime. That lifetime is a TTL in the
    # cache server (Redis in CI), which no clock in this process moves: this wait can only be longer
    # under load, never too short, so it cannot make the test flaky.
    time.sleep(1.1)
    assert reason(api_get("/api/me", live)) == "Invalid bearer token: revoked."

    # Wrong client credentials: the provider cannot be asked, so the token is refused.
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_SECRET = "wrong"
    other = remote.sign_in()["access_token"]
    assert reason(api_get("/api/me", other)) == "Invalid bearer token: revocation status unavailable."


# ---- hostile or absent providers: every call is bounded ------------------------------------------
class _Hostile(BaseHTTPRequestHandler):
    mode = "huge"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.mode == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for _ in range(2000):
                    self.wfile.write(b" " * 8192)
            except OSError:
                pass
        elif self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("mode", ["huge", "redirect"])
def test_a_hostile_provider_cannot_make_the_api_read_or_follow_anything(settings: Any, mode: str) -> None:
    handler = type("Handler", (_Hostile,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.CELLS_OIDC_RESOURCE_ISSUER = f"http://127.0.0.1:{server.server_address[1]}/oidc/"
        settings.CELLS_OIDC_RESOURCE_AUDIENCE = API_AUDIENCE
        settings.CELLS_OIDC_RESOURCE_HTTP_MAX_BYTES = 64 * 1024
        token = forged_with_unknown_kid(settings.CELLS_OIDC_RESOURCE_ISSUER, "1")
        started = time.monotonic()
        response = api_get("/api/me", token)
        assert response.status_code == 401
        assert reason(response) == "Invalid bearer token: unknown key."
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()


def test_a_provider_that_never_answers_costs_one_timeout_per_interval(settings: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections (in the backlog) and never answers
        settings.CELLS_OIDC_RESOURCE_ISSUER = f"http://127.0.0.1:{listener.getsockname()[1]}/oidc/"
        settings.CELLS_OIDC_RESOURCE_AUDIENCE = API_AUDIENCE
        settings.CELLS_OIDC_RESOURCE_HTTP_TIMEOUT = 1
        settings.CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS = 60
        token = forged_with_unknown_kid(settings.CELLS_OIDC_RESOURCE_ISSUER, "1")
        started = time.monotonic()
        assert api_get("/api/me", token).status_code == 401
        first = time.monotonic() - started
        assert 0.9 < first < 4
        started = time.monotonic()
        for _ in range(20):
            assert api_get("/api/me", token).status_code == 401
        assert time.monotonic() - started < 1  # no new attempt within the interval


def test_a_personal_access_token_is_checked_by_introspection(remote: Provider, settings: Any) -> None:
    secret = remote.manage(
        "cells_oidc_token", "create", "-v", "0", "--user", "alice", "--expires", "1h", "--scope", "pydio"
    ).strip()
    assert secret.startswith("cpat_")
    # Only the provider knows a personal access token: without introspection it is refused.
    response = api_get("/api/pydio", secret)
    assert response.status_code == 401
    assert reason(response) == "Invalid bearer token: not a JWT."
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_ID = "files-api"
    settings.CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_SECRET = CLIENT_SECRET
    response = api_get("/api/pydio", secret)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["subject"], body["scopes"]) == ("pat", remote.user_pk, ["pydio"])
    refused = api_get("/api/pydio", secret[:-1] + "x")
    assert reason(refused) == "Invalid bearer token: inactive token.", (
        refused.status_code,
        refused.content,
        remote.log_path.read_text()[-3000:],
    )
