"""Live multi-process sites for tests and bench/chaos.py: N server processes, one database, one cache.

Every process is ``gunicorn project.wsgi`` with the settings of tests/live/settings.py (the demo
project as a site runs it), on its own port of 127.0.0.1, all sharing:

- the database: a file SQLite in the site's directory (the embedded default's WAL/IMMEDIATE
  options), or a fresh database created on the PostgreSQL of ``DATABASE_URL`` (dropped at stop);
- the cache: the Redis of ``REDIS_URL`` (a key prefix of the site's own), or else the database
  cache, as the demo uses without Redis (``createcachetable``);
- the signing key (a PEM file) and the issuer, ``CELLS_OIDC_SITE_URL`` = the first process, as
  behind a load balancer.

``extra_settings`` is Python appended to the generated settings module (e.g. throttle limits).
"""

from __future__ import annotations

import html
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from jwcrypto import jwk

from tests.kit import pkce_pair  # noqa: F401 - the one PKCE helper, re-exported for the live tests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "live provider password 42"  # tests/live/seed.py creates alice with it
CLIENT_ID = "cells-client"
SCOPE = "openid email profile pydio offline"
START_TIMEOUT = 60
HTTP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # only 127.0.0.1, never through a proxy
    return session


def sign_in_over_http(
    authorization_url: str,
    *,
    password: str,
    username: str = "alice",
    approve: bool = False,
    timeout: float = HTTP_TIMEOUT,
    browser: requests.Session | None = None,
) -> tuple[str, list[str]]:
    """What a person does in a browser after a client sent them to ``authorization_url``: log in on
    the provider's page and, with ``approve``, allow what the confirmation/consent pages ask.
    Returns the redirect to the client's callback and the steps approved; ``browser`` keeps the
    session for more."""
    browser = browser if browser is not None else http()
    response = browser.get(authorization_url, allow_redirects=False, timeout=timeout)
    assert response.status_code == 302, response.text[:300]
    login_url = urljoin(authorization_url, response.headers["Location"])
    page = browser.get(login_url, timeout=timeout)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    next_url = re.search(r'name="next" value="([^"]*)"', page.text)
    assert csrf and next_url, page.text[:500]
    response = browser.post(
        login_url,
        data={
            "csrfmiddlewaretoken": csrf.group(1),
            "username": username,
            "password": password,
            "next": html.unescape(next_url.group(1)),
        },
        headers={"Referer": login_url},
        allow_redirects=False,
        timeout=timeout,
    )
    assert response.status_code == 303, response.text[:300]
    response = browser.get(
        urljoin(login_url, response.headers["Location"]), allow_redirects=False, timeout=timeout
    )
    approved: list[str] = []
    while approve and response.status_code == 200 and len(approved) < 3:
        # The confirmation/consent page: submit its form as the "Allow" button does.
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
        assert "cells_oidc_step" in form, response.text[:500]
        approved.append(form["cells_oidc_step"])
        response = browser.post(
            response.url,
            data={**form, "allow": "on"},
            headers={"Referer": response.url},
            allow_redirects=False,
            timeout=timeout,
        )
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"], approved


def gunicorn_available() -> bool:
    return subprocess.run([sys.executable, "-c", "import gunicorn"], capture_output=True).returncode == 0


@dataclass
class LiveSite:
    """``processes`` gunicorn servers (``workers`` each) sharing one database and one cache."""

    directory: Path
    processes: int = 2
    workers: int = 1
    extra_settings: str = ""
    ports: list[int] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The PostgreSQL server to create the site's database on (default: ``DATABASE_URL``, if any).
    admin_database_url: str | None = None
    database_url: str = ""
    _admin_url: str = ""
    _db_name: str = ""

    def url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def issuer(self, index: int = 0) -> str:
        return f"{self.url(index)}/oidc/"

    def log(self, index: int) -> str:
        path = self.directory / f"server-{index}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- server {i}\n{self.log(i)}" for i in range(len(self.ports)))

    # ---- setup ------------------------------------------------------------------------------------
    def _settings_module(self) -> str:
        return "cells_live_" + self.directory.name.replace("-", "_")

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self._settings_module(),
            "PYTHONPATH": os.pathsep.join([str(self.directory), str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "CELLS_OIDC_LIVE_DIR": str(self.directory),
            "CELLS_OIDC_LIVE_SITE_URL": self.url(0),
            "CELLS_OIDC_LIVE_PASSWORD": PASSWORD,
            "CELLS_OIDC_LIVE_DATABASE_URL": self.database_url,
            "PYTHONUNBUFFERED": "1",
            # What gunicorn reads as its worker count; the demo sizes its password hashing by it.
            "WEB_CONCURRENCY": str(self.workers),
        }
        env.pop("DATABASE_URL", None)  # the live settings read CELLS_OIDC_LIVE_DATABASE_URL only
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, (
            f"manage.py {' '.join(args)}:\n{result.stdout.decode()[-1500:]}\n{result.stderr.decode()[-3000:]}"
        )
        return result.stdout.decode()

    def setup(self) -> None:
        self.ports = [free_port() for _ in range(self.processes)]
        url = (
            self.admin_database_url
            if self.admin_database_url is not None
            else os.environ.get("DATABASE_URL", "")
        )
        if url:
            import psycopg

            self._db_name = "cells_live_" + uuid.uuid4().hex[:12]
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self._db_name}"')
            self._admin_url = url
            self.database_url = urlsplit(url)._replace(path="/" + self._db_name).geturl()
        key = jwk.JWK.generate(kty="RSA", size=2048)
        (self.directory / "signing-key.pem").write_bytes(key.export_to_pem(private_key=True, password=None))
        cache = (
            ""
            if os.environ.get("REDIS_URL")
            else 'CACHES = {"default": {"BACKEND": "cells_oidc.caches.DatabaseCache",'
            ' "LOCATION": "cells_oidc_cache", "OPTIONS": {"MAX_ENTRIES": 1_000_000}}}\n'
        )
        (self.directory / f"{self._settings_module()}.py").write_text(
            "from tests.live.settings import *  # noqa: F403\n"
            # What a site runs: the shared cache passes the check without the tests' opt-out.
            "CELLS_OIDC_ALLOW_PROCESS_LOCAL_CACHE = False\n" + cache + self.extra_settings + "\n"
        )
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("createcachetable", "-v", "0")
        self.manage("loaddata", "default_clients", "-v", "0")
        self.manage("shell", "-c", "import runpy; runpy.run_path('tests/live/seed.py')")
        self.manage("check", "--fail-level", "ERROR")

    def add_settings(self, text: str) -> None:
        """Append ``text`` to the settings module (before :meth:`start`)."""
        with (self.directory / f"{self._settings_module()}.py").open("a") as handle:
            handle.write(text + "\n")

    def start(self) -> None:
        for index, port in enumerate(self.ports):
            log = (self.directory / f"server-{index}.log").open("ab")
            self.servers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "--workers",
                        str(self.workers),
                        "--threads",
                        "4",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--timeout",
                        "60",
                        "--preload",
                        "project.wsgi:application",
                    ],
                    cwd=ROOT,
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        with http() as session:
            for index, process in enumerate(self.servers):
                deadline = time.monotonic() + START_TIMEOUT
                while True:
                    if process.poll() is not None:
                        raise AssertionError(f"server {index} exited:\n{self.log(index)}")
                    try:
                        if session.get(self.issuer(index) + "healthz", timeout=2).ok:
                            break
                    except requests.RequestException:
                        pass
                    if time.monotonic() > deadline:
                        self.stop()
                        raise AssertionError(f"server {index} did not start:\n{self.log(index)}")
                    time.sleep(0.2)

    def stop(self) -> None:
        for process in self.servers:
            process.terminate()
        for process in self.servers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self.servers = []

    def drop(self) -> None:
        if self._db_name:
            import psycopg

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
            self._db_name = ""


@dataclass
class Person:
    """A user's browser (cookies) and a Cells client, talking to any process of a site."""

    site: LiveSite
    browser: requests.Session = field(default_factory=http)

    def csrf_form(self, url: str) -> dict[str, str]:
        page = self.browser.get(url, timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, page.text[:500]
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return {"csrfmiddlewaretoken": found.group(1)}

    def sign_in(self, index: int = 0, password: str = PASSWORD, username: str = "alice") -> int:
        """POST the login form of process ``index``; the status (303 signed in, 200 wrong, 429 locked)."""
        url = f"{self.site.issuer(index)}login/?next=/oidc/account/"
        form = self.csrf_form(url)
        response = self.browser.post(
            url,
            data={**form, "username": username, "password": password},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        return response.status_code

    def code(self, index: int, challenge: str) -> str:
        redirect_uri = f"{self.site.url(0)}/oauth2/oob"
        response = self.browser.get(
            f"{self.site.issuer(index)}oauth2/auth",
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
        if response.status_code == 200:  # "Continue as Alice": confirm as a person would
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            fields = {name: html.unescape(value) for name, value in fields.items()}
            response = self.browser.post(
                response.url, data={**fields, "allow": "on"}, allow_redirects=False, timeout=HTTP_TIMEOUT
            )
        assert response.status_code == 302, response.text[:500]
        location = response.headers["Location"]
        assert location.startswith(redirect_uri + "?"), location
        return parse_qs(urlsplit(location).query)["code"][0]

    def token(self, index: int, data: dict[str, str]) -> requests.Response:
        with http() as session:
            return session.post(f"{self.site.issuer(index)}oauth2/token", data=data, timeout=HTTP_TIMEOUT)

    def exchange(self, index: int, code: str, verifier: str) -> requests.Response:
        return self.token(
            index,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": f"{self.site.url(0)}/oauth2/oob",
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            },
        )

    def refresh(self, index: int, refresh_token: str) -> requests.Response:
        return self.token(
            index, {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        )

    def revoke(self, index: int, token: str) -> requests.Response:
        with http() as session:
            return session.post(
                f"{self.site.issuer(index)}oauth2/revoke",
                data={"token": token, "client_id": CLIENT_ID},
                timeout=HTTP_TIMEOUT,
            )

    def me(self, index: int, access_token: str) -> requests.Response:
        with http() as session:
            return session.get(
                f"{self.site.url(index)}/a/user/me",
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=HTTP_TIMEOUT,
            )


def json_of(response: requests.Response) -> dict[str, Any]:
    return dict(response.json())
