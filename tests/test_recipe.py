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
import os
import pickle
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

from cells_oidc.checks import check_settings
from cells_oidc.conf import KeyFile, oauth2_provider_settings
from tests.conftest import Browser
from tests.live_server import sign_in_over_http
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


# ---- the literal recipe ------------------------------------------------------------------------------
RECIPE_ENV = "CELLS_OIDC_TEST_RECIPE"
PASSWORD = "recipe-" + secrets.token_urlsafe(12)
TIMEOUT = 20


def readme_block(name: str) -> str:
    """The fenced code block of README.md between ``<!-- recipe:NAME -->`` and its closing marker."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- recipe:{name} -->\s*```[a-z]*\n(.*?)```\s*<!-- /recipe:{name} -->", text, re.S)
    assert match, f"README.md has no <!-- recipe:{name} --> block"
    return match.group(1)


def readme_commands() -> list[str]:
    """The README's commands, one per logical line (backslash continuations joined)."""
    joined = readme_block("commands").replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_readme_blocks_are_marked_and_runnable() -> None:
    compile(readme_block("settings"), "settings", "exec")
    compile(readme_block("urls"), "urls", "exec")
    commands = readme_commands()
    assert all(command.startswith("python manage.py ") for command in commands), commands
    assert any("cells_oidc_client set" in command for command in commands)
    assert commands[-1].startswith("python manage.py runserver")


@pytest.mark.skipif(
    not os.environ.get(RECIPE_ENV),
    reason=f"builds a wheel and a virtualenv: set {RECIPE_ENV}=1 (make test-recipe)",
)
def test_the_readme_recipe_works_word_for_word(tmp_path: Path) -> None:
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.oidc.core import CodeIDToken

    started = time.monotonic()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "VIRTUAL_ENV"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # The wheel, built from this checkout, and a fresh virtualenv with it and what it needs.
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    wheel = next(dist.glob("cells_oidc-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path, env=env, timeout=300)

    # A brand-new site, then the README's settings and URLs appended exactly as printed.
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", str(tmp_path)], cwd=tmp_path, env=env)
    site = tmp_path
    with (site / "mysite" / "settings.py").open("a", encoding="utf-8") as handle:
        handle.write("\n" + readme_block("settings"))
    with (site / "mysite" / "urls.py").open("a", encoding="utf-8") as handle:
        handle.write("\n" + readme_block("urls"))

    port = free_port()
    site_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            # What the README says CELLS_OIDC_SITE_URL is locally: the address runserver serves.
            "CELLS_OIDC_SITE_URL": site_url,
            "DJANGO_SUPERUSER_USERNAME": "alice",
            "DJANGO_SUPERUSER_EMAIL": "alice@example.com",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        }
    )
    *commands, serve = readme_commands()
    for command in commands:
        args = command.split()
        if args[:3] == ["python", "manage.py", "createsuperuser"]:
            args.append("--noinput")  # the same command, answered from DJANGO_SUPERUSER_* instead of a prompt
        if "cells_oidc_client" in args:
            args = [re.sub(r'^"(.*)"$', r"\1", arg) for arg in re.findall(r'"[^"]*"|\S+', command)]
        run([python, *args[1:]], cwd=site, env=env)
    serve_args = serve.split()
    assert serve_args[:3] == ["python", "manage.py", "runserver"]
    server = subprocess.Popen(  # noqa: S603
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        http = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                discovery = http.get(f"{site_url}/oidc/.well-known/openid-configuration", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the site did not start"
                time.sleep(0.2)  # polling for the server to listen, bounded by the deadline
        assert discovery.status_code == 200
        metadata = discovery.json()
        assert metadata["issuer"] == f"{site_url}/oidc/"

        # The login page opened directly lands on the account page, styled by its static files.
        login = http.get(f"{site_url}/oidc/login/", timeout=TIMEOUT)
        assert login.status_code == 200
        stylesheet = re.search(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', login.text)
        assert stylesheet, login.text[:500]
        assert http.get(urljoin(login.url, stylesheet.group(1)), timeout=TIMEOUT).status_code == 200

        # An independent client (Authlib) signs in with PKCE as the client the README registered.
        client = OAuth2Session(
            client_id="my-app",
            redirect_uri="http://127.0.0.1:8765/callback",
            scope="openid profile email",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(12)
        url, state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        browser = requests.Session()
        callback, _approved = sign_in_over_http(url, password=PASSWORD, timeout=TIMEOUT, browser=browser)
        login_url = f"{site_url}/oidc/login/"
        assert callback.startswith("http://127.0.0.1:8765/callback?")
        token = client.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
        )
        jwks = JsonWebKey.import_key_set(http.get(metadata["jwks_uri"], timeout=TIMEOUT).json())
        claims = JsonWebToken(["RS256"]).decode(
            token["id_token"],
            key=jwks,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
            claims_params={"nonce": nonce, "client_id": "my-app", "access_token": token["access_token"]},
        )
        claims.validate(leeway=5)
        assert claims["name"] == "alice"
        info = http.get(
            metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=TIMEOUT,
        )
        assert info.status_code == 200 and info.json()["sub"] == claims["sub"]

        # Signed in, the login page without ?next= goes to the account page (LOGIN_REDIRECT_URL).
        page = browser.get(login_url.split("?")[0], timeout=TIMEOUT)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf
        response = browser.post(
            login_url.split("?")[0],
            data={"csrfmiddlewaretoken": csrf.group(1), "username": "alice", "password": PASSWORD},
            headers={"Referer": login_url},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert response.status_code == 303
        account = browser.get(urljoin(login_url, response.headers["Location"]), timeout=TIMEOUT)
        assert account.status_code == 200 and account.url.endswith("/oidc/account/")
        assert "My app" in account.text
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.rmtree(tmp_path / "static", ignore_errors=True)
    assert time.monotonic() - started < 180, "the recipe test must stay under three minutes"


@pytest.mark.parametrize(
    ("login_redirect_url", "expected"),
    [("/accounts/profile/", "/oidc/account/"), ("/", "/"), ("cells_oidc:account", "/oidc/account/")],
)
def test_a_sign_in_without_next_lands_on_a_page_that_exists(
    alice: Any, settings: Any, login_redirect_url: str, expected: str
) -> None:
    # Django's default LOGIN_REDIRECT_URL (/accounts/profile/) is a 404 on a site that did not build
    # it: the login page then goes to the account page; a site's own setting is kept.
    settings.LOGIN_REDIRECT_URL = login_redirect_url
    http = Client()
    response = http.post("/oidc/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 303
    assert response["Location"] == expected
    if expected == "/oidc/account/":
        assert http.get(expected).status_code == 200
