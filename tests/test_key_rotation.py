"""Key rotation in two server processes (tests/live_server.py): none of the tokens breaks, and a
revoked key's tokens fail at once in both.

Two gunicorn servers share the database and the cache (the database cache, or the Redis of
``REDIS_URL``). ``manage.py cells_oidc_keys`` runs as a third process between requests, as an
administrator or cron would; neither server is restarted. Clients hold tokens of every key and use
them on both servers: the API (/a/user/me), userinfo and a refresh.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet

from tests.live_server import HTTP_TIMEOUT, LiveSite, Person, gunicorn_available, http, pkce_pair

pytestmark = pytest.mark.skipif(
    not gunicorn_available(), reason="gunicorn is not installed (pip install -e '.[test]')"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    live = LiveSite(
        directory=tmp_path_factory.mktemp("rotation"),
        processes=2,
        extra_settings=(
            f"CELLS_OIDC_KEY_ENCRYPTION_KEY = {Fernet.generate_key().decode()!r}\n"
            # The test promotes a next key at once (a site keeps the default 900 s).
            "CELLS_OIDC_KEY_PUBLISH_SECONDS = 0\n"
        ),
    )
    try:
        live.setup()
        live.start()
        yield live
    finally:
        live.stop()
        live.drop()


def kid_of(token: str) -> str:
    part = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["kid"])


def userinfo(site: LiveSite, index: int, access_token: str) -> requests.Response:
    with http() as session:
        return session.get(
            f"{site.issuer(index)}userinfo",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=HTTP_TIMEOUT,
        )


def jwks_kids(site: LiveSite, index: int) -> set[str]:
    with http() as session:
        keys = session.get(f"{site.issuer(index)}.well-known/jwks.json", timeout=HTTP_TIMEOUT).json()["keys"]
    return {key["kid"] for key in keys}


class Holder:
    """A client that signed in once and keeps its tokens."""

    def __init__(self, site: LiveSite, index: int) -> None:
        self.site = site
        person = Person(site)
        assert person.sign_in(index) == 303
        verifier, challenge = pkce_pair()
        answer = person.exchange(1 - index, person.code(index, challenge), verifier)
        assert answer.status_code == 200, answer.text + site.logs()
        self.person = person
        self.tokens: dict[str, Any] = answer.json()
        self.kid = kid_of(self.tokens["access_token"])

    def works_everywhere(self) -> None:
        for index in (0, 1):
            api = self.person.me(index, self.tokens["access_token"])
            assert api.status_code == 200, f"{self.kid} on {index}: {api.text}{self.site.logs()}"
            info = userinfo(self.site, index, self.tokens["access_token"])
            assert info.status_code == 200, f"{self.kid} on {index}: {info.text}"

    def refused_everywhere(self) -> None:
        for index in (0, 1):
            api = self.person.me(index, self.tokens["access_token"])
            assert api.status_code == 401, f"{self.kid} on {index}: {api.status_code}"
            assert "invalid_token" in api.headers["WWW-Authenticate"]
            assert userinfo(self.site, index, self.tokens["access_token"]).status_code == 401

    def refresh(self, index: int) -> str:
        answer = self.person.refresh(index, self.tokens["refresh_token"])
        assert answer.status_code == 200, answer.text + self.site.logs()
        fresh = answer.json()
        self.tokens["refresh_token"] = fresh["refresh_token"]
        return str(fresh["access_token"])


def test_rotating_twice_breaks_no_token_and_a_revoked_key_fails_at_once(site: LiveSite) -> None:
    # Before any import: the settings key signs.
    first = Holder(site, 0)
    first.works_everywhere()

    site.manage("cells_oidc_keys", "import", "--from-settings")
    assert "current" in site.manage("cells_oidc_keys", "list")
    first.works_everywhere()  # same kid after the import
    created = site.manage("cells_oidc_keys", "create")
    assert "next" in created
    # Both servers publish the next key before it signs (no restart).
    upcoming = {kid for kid in jwks_kids(site, 1) if kid != first.kid}
    assert len(upcoming) == 1 and upcoming <= jwks_kids(site, 0)

    # Rotation 1: the next key signs, in both processes.
    assert "now signs" in site.manage("cells_oidc_keys", "rotate")
    second = Holder(site, 1)
    assert second.kid in upcoming and second.kid != first.kid
    assert kid_of(Holder(site, 0).tokens["access_token"]) == second.kid
    first.works_everywhere()
    second.works_everywhere()

    # Rotation 2 (what cron does after the interval).
    assert "nothing to do" in site.manage("cells_oidc_keys", "rotate", "--if-older-than", "30d")
    assert "now signs" in site.manage("cells_oidc_keys", "rotate")
    third = Holder(site, 0)
    assert third.kid not in (first.kid, second.kid)
    for holder in (first, second, third):
        holder.works_everywhere()
        assert holder.kid in jwks_kids(site, 0) and holder.kid in jwks_kids(site, 1)
    # Refreshing a sign-in of each key gives tokens of the current key, on either process.
    for turn, holder in enumerate((first, second, third)):
        fresh = holder.refresh(turn % 2)
        assert kid_of(fresh) == third.kid
        assert holder.person.me((turn + 1) % 2, fresh).status_code == 200
        holder.tokens["access_token"] = fresh
        holder.kid = kid_of(fresh)

    # A key revoked by the command is refused at once by both servers; the others keep working.
    keeper = Holder(site, 1)
    victim = Holder(site, 0)
    assert victim.kid == keeper.kid == third.kid
    output = site.manage("cells_oidc_keys", "revoke", "--", third.kid)
    assert f"Revoked {third.kid}" in output
    victim.refused_everywhere()
    keeper.refused_everywhere()
    assert third.kid not in jwks_kids(site, 0) | jwks_kids(site, 1)
    # Their refresh tokens are not keys' business: a refresh gives tokens of the replacement key.
    replacement = victim.refresh(1)
    assert kid_of(replacement) != third.kid
    assert victim.person.me(0, replacement).status_code == 200
