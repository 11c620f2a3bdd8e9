"""Exactly once, under real concurrency: parallel HTTP requests against a multi-process server.

The provider is the demo project served by ``gunicorn -w 4 --threads 5`` (tests/live/settings.py)
on a FILE SQLite database with the embedded default's options, or on a fresh database of the
PostgreSQL server ``DATABASE_URL`` names (the cache is then the Redis of ``REDIS_URL``). Up to 20
requests are released at once by a barrier; every answer is checked, and the database is read
afterwards (docs/security.md, "Exactly once").

- A code redeemed N times in parallel: one 200, the others JSON ``invalid_grant``; the replay
  revokes what the winner got (RFC 6749 §4.1.2, §10.5).
- A refresh token spent N times in parallel: one 200 with one successor, the others JSON
  ``invalid_grant``; the reuse revokes the whole family, successors included (RFC 9700 §4.14.2).
- An approved device code polled N times in parallel: one 200 (RFC 8628 §3.5).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from jwcrypto import jwk

from tests.conftest import pkce_pair
from tests.live_server import free_port, http

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "live provider password 42"
START_TIMEOUT = 60
HTTP_TIMEOUT = 30
CLIENT_ID = "cells-client"
SCOPE = "openid profile pydio offline"

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import gunicorn"], capture_output=True).returncode != 0,
    reason="gunicorn is not installed (pip install -e '.[test]')",
)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Database:
    """The live server's database, read by the test with the driver's own connection."""

    sqlite_path: Path | None = None
    postgres_url: str = ""
    admin_url: str = ""
    name: str = ""

    @classmethod
    def create(cls, directory: Path) -> Database:
        url = os.environ.get("DATABASE_URL", "")
        if not url:
            return cls(sqlite_path=directory / "db.sqlite3")
        import psycopg

        name = "cells_live_" + uuid.uuid4().hex[:12]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(url)
        return cls(postgres_url=parts._replace(path="/" + name).geturl(), admin_url=url, name=name)

    def drop(self) -> None:
        if self.name:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path, timeout=20) as conn:
                return list(conn.execute(sql.replace("%s", "?"), params).fetchall())
        import psycopg

        with psycopg.connect(self.postgres_url) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def family_of_code(self, code: str) -> tuple[Any, Any]:
        """``(family id, revoked)`` of the sign-in of ``code``."""
        rows = self.rows(
            "SELECT id, revoked FROM cells_oidc_tokenfamily WHERE code_checksum = %s", sha256(code)
        )
        assert len(rows) == 1, rows
        return rows[0]

    def family_of_refresh(self, refresh_token: str) -> tuple[Any, Any]:
        rows = self.rows(
            "SELECT f.id, f.revoked FROM cells_oidc_tokenfamily f JOIN oauth2_provider_refreshtoken r"
            " ON r.token_family = f.id WHERE r.token_checksum = %s",
            sha256(refresh_token),
        )
        assert len(rows) == 1, rows
        return rows[0]

    def live_refresh_tokens(self, family: Any) -> int:
        return int(
            self.rows(
                "SELECT count(*) FROM oauth2_provider_refreshtoken"
                " WHERE token_family = %s AND revoked IS NULL",
                family,
            )[0][0]
        )

    def access_tokens(self, family: Any) -> int:
        """The family's access tokens still stored (revocation deletes them)."""
        return int(
            self.rows(
                "SELECT count(*) FROM oauth2_provider_accesstoken a WHERE a.id IN"
                " (SELECT access_token_id FROM oauth2_provider_refreshtoken WHERE token_family = %s)"
                " OR a.source_refresh_token_id IN"
                " (SELECT id FROM oauth2_provider_refreshtoken WHERE token_family = %s)"
                " OR a.id IN (SELECT access_token_id FROM cells_oidc_tokenfamily WHERE id = %s)",
                family,
                family,
                family,
            )[0][0]
        )


@dataclass
class LiveProvider:
    directory: Path
    database: Database
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    browser: requests.Session = field(default_factory=http)

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.site}/oidc/"

    @property
    def log(self) -> str:
        path = self.directory / "gunicorn.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.live.settings",
            "CELLS_OIDC_LIVE_DIR": str(self.directory),
            "CELLS_OIDC_LIVE_SITE_URL": self.site,
            "CELLS_OIDC_LIVE_PASSWORD": PASSWORD,
            "CELLS_OIDC_LIVE_DATABASE_URL": self.database.postgres_url,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DATABASE_URL", None)  # the live settings read CELLS_OIDC_LIVE_DATABASE_URL only
        return env

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]

    def seed(self) -> None:
        key = jwk.JWK.generate(kty="RSA", size=2048)
        (self.directory / "signing-key.pem").write_bytes(key.export_to_pem(private_key=True, password=None))
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("createcachetable", "-v", "0")  # the cache without Redis (tests/live/settings.py)
        self.manage("loaddata", "default_clients", "-v", "0")
        self.manage("shell", "-c", "import runpy; runpy.run_path('tests/live/seed.py')")

    def start(self) -> None:
        log = (self.directory / "gunicorn.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "4",
                # 4 processes x 5 threads: all 20 requests of a race are being answered at once.
                "--threads",
                "5",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "60",
                "project.wsgi:application",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log}")
            try:
                if self.browser.get(self.issuer + ".well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"gunicorn did not start:\n{self.log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None

    # ---- a user and a Cells client over HTTP --------------------------------------------------
    def csrf_form(self, url: str) -> dict[str, str]:
        page = self.browser.get(url, timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, page.text[:500]
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        fields = {"csrfmiddlewaretoken": found.group(1)}
        nxt = re.search(r'name="next" value="([^"]*)"', page.text)
        if nxt:
            fields["next"] = html.unescape(nxt.group(1))
        return fields

    def sign_in(self) -> None:
        url = f"{self.issuer}login/?next=/oidc/account/"
        form = self.csrf_form(url)
        response = self.browser.post(
            url,
            data={**form, "username": "alice", "password": PASSWORD},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 303, response.text[:500]

    def code(self, challenge: str) -> str:
        redirect_uri = f"{self.site}/oauth2/oob"
        response = self.browser.get(
            f"{self.issuer}oauth2/auth",
            params={
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": redirect_uri,
                "scope": SCOPE,
                "state": secrets.token_urlsafe(12),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        if response.status_code == 200:
            # The provider asks the signed-in user to confirm ("Continue as Alice"): as a person would.
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            fields = {name: html.unescape(value) for name, value in fields.items()}
            response = self.browser.post(
                response.url, data={**fields, "allow": "on"}, allow_redirects=False, timeout=HTTP_TIMEOUT
            )
        assert response.status_code == 302, response.text[:500]
        location = response.headers["Location"]
        assert location.startswith(redirect_uri + "?"), location
        return parse_qs(urlsplit(location).query)["code"][0]

    def code_exchange(self, code: str, verifier: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": f"{self.site}/oauth2/oob",
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        }

    def tokens(self) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        response = self.token(self.code_exchange(self.code(challenge), verifier))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def token(self, data: dict[str, str]) -> requests.Response:
        with http() as session:
            return session.post(f"{self.issuer}oauth2/token", data=data, timeout=HTTP_TIMEOUT)

    def me(self, access_token: str) -> int:
        with http() as session:
            response = session.get(
                f"{self.site}/a/user/me",
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=HTTP_TIMEOUT,
            )
        return response.status_code

    def approved_device_code(self) -> str:
        with http() as session:
            response = session.post(
                f"{self.issuer}oauth2/device/auth",
                data={"client_id": CLIENT_ID, "scope": SCOPE},
                timeout=HTTP_TIMEOUT,
            )
        assert response.status_code == 200, response.text
        started = response.json()
        form = self.csrf_form(f"{self.issuer}device")
        response = self.browser.post(
            f"{self.issuer}device",
            data={**form, "user_code": started["user_code"]},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 303, response.text[:500]
        form = self.csrf_form(f"{self.issuer}device/confirm")
        response = self.browser.post(
            f"{self.issuer}device/confirm", data={**form, "action": "approve"}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, response.text[:500]
        return str(started["device_code"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveProvider]:
    directory = tmp_path_factory.mktemp("live")
    database = Database.create(directory)
    provider = LiveProvider(directory=directory, database=database)
    try:
        provider.seed()
        provider.start()
        provider.sign_in()
        yield provider
    finally:
        provider.stop()
        database.drop()


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    content_type: str


def race(live: LiveProvider, requests_data: list[dict[str, str]]) -> list[Answer]:
    """POST every form to the token endpoint at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(requests_data), timeout=HTTP_TIMEOUT)
    sessions = [http() for _ in requests_data]
    for session in sessions:  # connected beforehand: the barrier then releases the requests alone
        session.get(live.issuer + ".well-known/openid-configuration", timeout=HTTP_TIMEOUT)

    def send(index: int) -> Answer:
        barrier.wait()
        response = sessions[index].post(
            f"{live.issuer}oauth2/token", data=requests_data[index], timeout=HTTP_TIMEOUT
        )
        try:
            body = response.json()
        except ValueError:
            body = {"not-json": response.text[:300]}
        return Answer(response.status_code, body, response.headers.get("Content-Type", ""))

    with ThreadPoolExecutor(max_workers=len(requests_data)) as pool:
        answers = list(pool.map(send, range(len(requests_data)), timeout=HTTP_TIMEOUT * 2))
    for session in sessions:
        session.close()
    return answers


def check_answers(live: LiveProvider, answers: list[Answer], *, successes: int) -> list[Answer]:
    """Exactly ``successes`` 200s; every other answer a JSON invalid_grant; never a 5xx."""
    statuses = Counter(answer.status for answer in answers)
    assert not [a for a in answers if a.status >= 500], (statuses, live.log)
    won = [answer for answer in answers if answer.status == 200]
    lost = [answer for answer in answers if answer.status != 200]
    assert len(won) == successes, (statuses, [a.body for a in lost][:3])
    for answer in lost:
        assert answer.status == 400, answer
        assert answer.content_type.startswith("application/json"), answer
        assert answer.body.get("error") == "invalid_grant", answer  # RFC 6749 §5.2
    return won


@pytest.mark.parametrize("n", [2, 6, 20])
def test_a_code_redeemed_in_parallel_yields_one_token_set_and_the_replay_revokes_it(
    live: LiveProvider, n: int
) -> None:
    verifier, challenge = pkce_pair()
    code = live.code(challenge)
    answers = race(live, [live.code_exchange(code, verifier)] * n)
    [winner] = check_answers(live, answers, successes=1)
    # RFC 6749 §4.1.2: the code was used more than once, so the tokens it produced are revoked,
    # whenever the replay arrived relative to the winner's transaction.
    family, revoked = live.database.family_of_code(code)
    assert revoked is not None
    assert live.database.live_refresh_tokens(family) == 0
    assert live.database.access_tokens(family) == 0
    assert live.me(winner.body["access_token"]) == 401
    refresh = live.token(
        {"grant_type": "refresh_token", "refresh_token": winner.body["refresh_token"], "client_id": CLIENT_ID}
    )
    assert (refresh.status_code, refresh.json().get("error")) == (400, "invalid_grant")


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}


def assert_family_dead(
    live: LiveProvider, family: Any, refresh_tokens: list[str], access_tokens: list[str]
) -> None:
    assert live.database.live_refresh_tokens(family) == 0
    assert live.database.access_tokens(family) == 0
    for token in refresh_tokens:
        response = live.token(refresh_form(token))
        assert (response.status_code, response.json().get("error")) == (400, "invalid_grant"), token
    for token in access_tokens:
        assert live.me(token) == 401


@pytest.mark.parametrize("n", [2, 6, 20])
def test_a_refresh_token_spent_in_parallel_yields_one_successor_and_the_reuse_kills_the_family(
    live: LiveProvider, n: int
) -> None:
    tokens = live.tokens()
    assert live.me(tokens["access_token"]) == 200
    answers = race(live, [refresh_form(tokens["refresh_token"])] * n)
    [winner] = check_answers(live, answers, successes=1)
    assert winner.body["refresh_token"] != tokens["refresh_token"]
    # RFC 9700 §4.14.2: the refresh token was presented again after it was spent, so the whole
    # family is revoked, the winner's successor included.
    family, revoked = live.database.family_of_refresh(tokens["refresh_token"])
    assert revoked is not None
    assert_family_dead(
        live,
        family,
        [tokens["refresh_token"], winner.body["refresh_token"]],
        [tokens["access_token"], winner.body["access_token"]],
    )


def test_after_a_reuse_no_chain_of_the_family_refreshes_again(live: LiveProvider) -> None:
    tokens = live.tokens()
    first = live.token(refresh_form(tokens["refresh_token"]))
    assert first.status_code == 200, first.text
    successor = first.json()
    # The spent token and its live successor, at once: at most the successor's refresh wins the
    # lock before the reuse is seen; afterwards nothing of the family refreshes.
    forms = [refresh_form(tokens["refresh_token"]), refresh_form(successor["refresh_token"])] * 10
    answers = race(live, forms)
    won = check_answers(live, answers, successes=sum(a.status == 200 for a in answers))
    assert len(won) <= 1
    family, revoked = live.database.family_of_refresh(tokens["refresh_token"])
    assert revoked is not None
    assert_family_dead(
        live,
        family,
        [successor["refresh_token"], *(a.body["refresh_token"] for a in won)],
        [successor["access_token"], *(a.body["access_token"] for a in won)],
    )


def test_an_approved_device_code_polled_in_parallel_yields_one_token_set(live: LiveProvider) -> None:
    device_code = live.approved_device_code()
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device_code,
        "client_id": CLIENT_ID,
    }
    answers = race(live, [form] * 20)
    [winner] = check_answers(live, answers, successes=1)
    # RFC 8628 §3.5: the device code is spent; the device's tokens work (a device code never
    # travels through a browser, so a second poll is the device's own, not a leak).
    assert live.me(winner.body["access_token"]) == 200
    again = live.token(form)
    assert (again.status_code, again.json().get("error")) == (400, "invalid_grant")
    successor = live.token(refresh_form(winner.body["refresh_token"]))
    assert successor.status_code == 200, successor.text
