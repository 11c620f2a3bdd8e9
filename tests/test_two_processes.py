"""Two server processes, one database, one cache: what one process does, the other knows.

Two gunicorn servers on two ports of 127.0.0.1 (tests/live_server.py), sharing a file SQLite
database (or the PostgreSQL of ``DATABASE_URL``) and the database cache (or the Redis of
``REDIS_URL``), as two machines behind a load balancer: sign in on one, redeem the code on the
other, refresh alternately, revoke on one and be refused on the other (also by a process whose copy
of the deny-list had just said "not revoked"), a user changed by a third
process seen by both at once (the cached profiles of /a/user/me), and a login throttle that counts
the failures of both, also when they arrive at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.kit import clear_of_window_edges
from tests.live_server import LiveSite, Person, gunicorn_available, pkce_pair

pytestmark = pytest.mark.skipif(
    not gunicorn_available(), reason="gunicorn is not installed (pip install -e '.[test]')"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    live = LiveSite(directory=tmp_path_factory.mktemp("two"), processes=2)
    try:
        live.setup()
        live.start()
        yield live
    finally:
        live.stop()
        live.drop()


def test_a_sign_in_moves_between_processes(site: LiveSite) -> None:
    person = Person(site)
    assert person.sign_in(0) == 303
    verifier, challenge = pkce_pair()
    code = person.code(0, challenge)
    exchange = person.exchange(1, code, verifier)  # redeemed on the other process
    assert exchange.status_code == 200, exchange.text + site.logs()
    tokens = exchange.json()
    assert person.me(0, tokens["access_token"]).status_code == 200

    refresh_token = tokens["refresh_token"]
    for turn in range(4):  # refresh alternately: each process accepts what the other issued
        answer = person.refresh(turn % 2, refresh_token)
        assert answer.status_code == 200, answer.text + site.logs()
        refresh_token, access_token = answer.json()["refresh_token"], answer.json()["access_token"]
        assert person.me((turn + 1) % 2, access_token).status_code == 200

    # Revoked on one process (RFC 7009), refused on the other at once: the shared deny-list.
    assert person.revoke(0, access_token).status_code == 200
    refused = person.me(1, access_token)
    assert refused.status_code == 401, refused.text
    assert "invalid_token" in refused.headers["WWW-Authenticate"]
    # The code is spent for both processes, and its replay revokes the sign-in (RFC 6749 §4.1.2).
    assert person.exchange(0, code, verifier).json()["error"] == "invalid_grant"
    assert person.refresh(1, refresh_token).json()["error"] == "invalid_grant"


def test_a_token_both_processes_just_accepted_is_refused_by_both_once_revoked(site: LiveSite) -> None:
    """Each process answers the bearer path from its own copy of the deny-list
    (CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS, tests/live/settings.py: kept exact by Redis's
    invalidations, or on the SQLite file by its count of writes): a copy that said "not
    revoked" a moment ago must not say it once more after the revocation answered — ten times over,
    revoked by RFC 7009 on one process or by the refresh rotation, checked on both at once."""
    person = Person(site)
    assert person.sign_in(0) == 303

    def sign_in(index: int) -> dict[str, str]:
        verifier, challenge = pkce_pair()
        answer = person.exchange(index, person.code(index, challenge), verifier)
        assert answer.status_code == 200, answer.text + site.logs()
        return answer.json()

    tokens = sign_in(1)
    for turn in range(10):
        access_token = tokens["access_token"]
        for index in (0, 1, 0, 1, 0, 1):  # every process has accepted it, from its copy too
            accepted = person.me(index, access_token)
            assert accepted.status_code == 200, accepted.text + site.logs()
        here = turn % 2
        if turn % 4 < 2:
            # RFC 7009 (the sign-in goes with it: its refresh token too); a new sign-in follows.
            assert person.revoke(here, access_token).status_code == 200
            tokens = sign_in(here)
        else:
            answer = person.refresh(here, tokens["refresh_token"])  # rotation revokes the access token
            assert answer.status_code == 200, answer.text + site.logs()
            tokens = answer.json()
        for index in (1 - here, here):
            refused = person.me(index, access_token)
            assert refused.status_code == 401, (turn, index, refused.text)


def test_a_user_changed_by_another_process_shows_on_both_at_the_next_request(site: LiveSite) -> None:
    """GET /a/user/me answers from a cached profile (cells_oidc.internal.profiles): a change made
    by a third process (an administrator's shell) shows on both servers at their next request."""
    person = Person(site)
    assert person.sign_in(0) == 303
    verifier, challenge = pkce_pair()
    tokens = person.exchange(1, person.code(0, challenge), verifier).json()
    for index in (0, 1):  # both servers have the profile cached
        answer = person.me(index, tokens["access_token"])
        assert answer.status_code == 200 and answer.json()["groups"] == [], answer.text

    def shell(code: str) -> None:
        site.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            "from django.contrib.auth.models import Group; "
            "alice = get_user_model().objects.get(username='alice'); " + code,
        )

    shell("alice.groups.add(Group.objects.get_or_create(name='staff-a')[0])")
    for index in (0, 1):
        assert person.me(index, tokens["access_token"]).json()["groups"] == ["staff-a"]
    shell("alice.is_active = False; alice.save()")
    try:
        for index in (0, 1):
            refused = person.me(index, tokens["access_token"])
            assert refused.status_code == 401, refused.text
            assert "invalid_token" in refused.headers["WWW-Authenticate"]
    finally:
        shell("alice.is_active = True; alice.save(); alice.groups.clear()")
    for index in (0, 1):
        assert person.me(index, tokens["access_token"]).json()["groups"] == []


def test_the_login_throttle_counts_across_processes(site: LiveSite) -> None:
    # Ten failures that straddled a window's end would be counted in two windows.
    clear_of_window_edges(30)
    attacker = Person(site)
    for attempt in range(10):  # the default login_account limit, spread over both processes
        assert attacker.sign_in(attempt % 2, password=f"guess {attempt}", username="alice") == 200
    # The right password is refused on either process: the count was shared.
    assert Person(site).sign_in(0) == 429
    assert Person(site).sign_in(1) == 429


def test_parallel_guesses_get_no_more_than_the_limit(site: LiveSite) -> None:
    """An attacker sending guesses in parallel to both processes gets the limit and not one more:
    the counters are counted exactly when requests count them at once (Django's own database cache
    reads then writes, and lost most of such a burst's events)."""
    clear_of_window_edges(30)
    login = "parallel-" + uuid.uuid4().hex[:8]  # counted whether the login exists or not

    def guess(attempt: int) -> int:
        return Person(site).sign_in(attempt % 2, password=f"guess {attempt}", username=login)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(24)))
    assert sorted(answers) == [200] * 10 + [429] * 14, (answers.count(200), answers)


def test_the_probes_answer_on_both(site: LiveSite) -> None:
    person = Person(site)
    for index in (0, 1):
        ready = person.browser.get(site.issuer(index) + "readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "cache": "ok", "signing_key": "ok", "deny_list": "ok"},
        }
