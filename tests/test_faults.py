"""Faults: the database is unreachable or restarts; answers are 503s, never HTML 500s, and it recovers.

1. A server whose database refuses connections (PostgreSQL settings on a closed port): API
   endpoints answer JSON 503 ``temporarily_unavailable`` with ``Retry-After``, pages a styled 503
   page, quickly; ``/healthz`` stays 200 and ``/readyz`` is 503.
2. A throw-away PostgreSQL of this test's own (scripts/services.sh with its own directory and
   ports; the suite's shared server is never touched) is stopped for a few seconds while a
   signed-in client keeps refreshing: 503s, then, once it is back, the same refresh token works
   (nothing was half-spent) and ``/readyz`` is 200 again without a restart.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.live_server import ROOT, LiveSite, Person, gunicorn_available, http, pkce_pair

pytestmark = pytest.mark.skipif(
    not gunicorn_available(), reason="gunicorn is not installed (pip install -e '.[test]')"
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_unavailable_json(response: requests.Response, started: float) -> None:
    assert response.status_code == 503, response.text[:500]
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 8, "a worker hung on the unreachable database"


@pytest.fixture(scope="module")
def no_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    pytest.importorskip("psycopg")
    site = LiveSite(directory=tmp_path_factory.mktemp("faults"), processes=1)
    try:
        site.setup()
        # After setup: the running server's database is a PostgreSQL that refuses connections; its
        # cache stays reachable (a file cache), so only the database is missing.
        site.add_settings(
            "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'HOST': '127.0.0.1',"
            f" 'PORT': {closed_port()}, 'NAME': 'cells', 'USER': 'cells', 'CONN_HEALTH_CHECKS': True,"
            " 'OPTIONS': {'connect_timeout': 3}}}\n"
            "CACHES = {'default': {'BACKEND': 'django.core.cache.backends.filebased.FileBasedCache',"
            f" 'LOCATION': {str(site.directory / 'filecache')!r}, 'OPTIONS': {{'MAX_ENTRIES': 1_000_000}}}}}}"
        )
        site.start()
        yield site
    finally:
        site.stop()
        site.drop()


def test_api_endpoints_answer_json_503(no_database: LiveSite) -> None:
    person = Person(no_database)
    started = time.monotonic()
    assert_unavailable_json(person.refresh(0, "some-refresh-token"), started)
    started = time.monotonic()
    with http() as session:
        answer = session.get(no_database.issuer() + ".well-known/openid-configuration", timeout=30)
    assert answer.status_code in (200, 503)  # discovery needs no database
    started = time.monotonic()
    assert_unavailable_json(person.revoke(0, "x"), started)


def test_pages_answer_a_styled_503(no_database: LiveSite) -> None:
    started = time.monotonic()
    # The login form renders without the database; signing in needs it.
    assert Person(no_database).sign_in(0) == 503
    with http() as session:
        # A browser with a session: loading it needs the database.
        page = session.get(
            no_database.issuer() + "account/",
            cookies={"sessionid": "x" * 32},
            timeout=30,
            allow_redirects=False,
        )
    assert page.status_code == 503, page.text[:300]
    assert "text/html" in page.headers["Content-Type"]
    assert "briefly unavailable" in page.text and "Traceback" not in page.text
    assert int(page.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 15


def test_probes_tell_alive_but_not_ready(no_database: LiveSite) -> None:
    with http() as session:
        assert session.get(no_database.issuer() + "healthz", timeout=10).status_code == 200
        ready = session.get(no_database.issuer() + "readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "failing"


# ---- a real PostgreSQL stopped and started again ------------------------------------------------
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, dict[str, str]]]:
    if not os.path.exists(os.path.join(PG_BIN[0], "initdb")) or not shutil.which("redis-server"):
        pytest.skip("PostgreSQL and Redis are not installed (apt-get install postgresql redis-server)")
    pytest.importorskip("psycopg")
    state = tempfile.mkdtemp(prefix="cells-oidc-faults-", dir="/tmp")
    os.chmod(state, 0o755)
    env = {**os.environ, "STATE_DIR": state, "PG_PORT": str(free_port()), "REDIS_PORT": str(free_port())}
    services = str(ROOT / "scripts" / "services.sh")
    started = subprocess.run([services, "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = f"postgres://cells@127.0.0.1:{env['PG_PORT']}/cells"
    try:
        yield url, env
    finally:
        subprocess.run([services, "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def pg_ctl(env: dict[str, str], action: str) -> None:
    """Stop or start this test's own PostgreSQL (never the suite's shared one)."""
    state = env["STATE_DIR"]
    command = [os.path.join(PG_BIN[0], "pg_ctl"), "-D", f"{state}/pg", "-w"]
    if action == "stop":
        command += ["-m", "fast", "stop"]
    else:
        options = f"-c listen_addresses=127.0.0.1 -p {env['PG_PORT']} -k {state} -c fsync=off"
        command += ["-l", f"{state}/pg.log", "-o", options, "start"]
    if os.getuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_database_restart_under_traffic_recovers_by_itself(
    tmp_path: Path, own_postgres: tuple[str, dict[str, str]]
) -> None:
    url, env = own_postgres
    site = LiveSite(directory=tmp_path, processes=1, workers=2, admin_database_url=url)
    try:
        site.setup()
        site.start()
        person = Person(site)
        assert person.sign_in(0) == 303
        verifier, challenge = pkce_pair()
        tokens = person.exchange(0, person.code(0, challenge), verifier).json()
        refresh_token = tokens["refresh_token"]

        pg_ctl(env, "stop")
        statuses = []
        for _ in range(5):  # a client retrying while the database is away
            started = time.monotonic()
            answer = person.refresh(0, refresh_token)
            statuses.append(answer.status_code)
            if answer.status_code != 401:  # a cache on the same database: the deny-list fails closed
                assert_unavailable_json(answer, started)
            time.sleep(0.3)
        with http() as session:
            assert session.get(site.issuer() + "healthz", timeout=10).status_code == 200
            assert session.get(site.issuer() + "readyz", timeout=10).status_code == 503
        pg_ctl(env, "start")

        deadline = time.monotonic() + 30
        with http() as session:
            while session.get(site.issuer() + "readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, site.logs()
                time.sleep(0.5)
        # Nothing half-spent: the refresh token the failed attempts carried still works, once.
        again = person.refresh(0, refresh_token)
        assert again.status_code == 200, again.text + site.logs()
        assert person.me(0, again.json()["access_token"]).status_code == 200
        assert 503 in statuses, statuses
    finally:
        site.stop()  # the database goes with the throw-away server
