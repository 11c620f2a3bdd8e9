"""``GET /a/user/me`` from the cached profile (cells_oidc.internal.profiles; docs/performance.md).

Every change Django sees shows at the next request: a user deactivated, renamed or deleted, group
membership changed from either side, a group renamed or deleted. A request that read the user
while it was being deactivated cannot leave the old row in the cache. A change made behind
Django's back shows within CELLS_OIDC_PROFILE_CACHE_SECONDS. The cross-process case (a third
process changes the user; two gunicorn servers answer) is in tests/test_two_processes.py.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from cells_oidc.internal import profiles, resource
from tests.kit import Browser, bearer_get, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(default_clients: None, alice: Any) -> str:
    return str(sign_in(Browser())["access_token"])


def me(token: str) -> Any:
    return bearer_get("/a/user/me", token)


def profile_of(token: str) -> dict[str, Any]:
    response = me(token)
    assert response.status_code == 200, response.content
    return dict(json.loads(response.content))


def refused(token: str) -> bool:
    response = me(token)
    return response.status_code == 401 and 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_deactivated_or_deleted_user_is_refused_at_the_next_request(token: str, alice: Any) -> None:
    assert profile_of(token)["login"] == "alice"  # cached now
    alice.is_active = False
    alice.save()
    assert refused(token)
    alice.is_active = True
    alice.save()
    assert profile_of(token)["login"] == "alice"
    alice.delete()
    assert refused(token)


def test_names_and_email_show_at_the_next_request(token: str, alice: Any) -> None:
    before = profile_of(token)
    assert (before["given_name"], before["name"]) == ("Alice", "Alice Liddell")
    alice.first_name = "Alicia"
    alice.email = "alicia@example.org"
    alice.save(update_fields=["first_name", "email"])
    after = profile_of(token)
    assert (after["given_name"], after["name"], after["email"]) == (
        "Alicia",
        "Alicia Liddell",
        "alicia@example.org",
    )


def test_group_membership_from_either_side_and_group_changes_show_at_once(token: str, alice: Any) -> None:
    readers, writers = Group.objects.create(name="readers"), Group.objects.create(name="writers")
    assert profile_of(token)["groups"] == []
    alice.groups.add(readers)
    assert profile_of(token)["groups"] == ["readers"]
    writers.user_set.add(alice)
    assert profile_of(token)["groups"] == ["readers", "writers"]
    readers.name = "viewers"
    readers.save()
    assert profile_of(token)["groups"] == ["viewers", "writers"]
    writers.user_set.remove(alice)
    assert profile_of(token)["groups"] == ["viewers"]
    writers.user_set.add(alice)
    writers.delete()
    assert profile_of(token)["groups"] == ["viewers"]
    readers.user_set.clear()
    assert profile_of(token)["groups"] == []
    alice.groups.add(readers)
    assert profile_of(token)["groups"] == ["viewers"]
    alice.groups.clear()
    assert profile_of(token)["groups"] == []


def test_a_login_does_not_drop_the_cached_profile(token: str, alice: Any) -> None:
    """Django saves last_login at every login: nothing the profile shows."""
    profile_of(token)
    reads = mock.Mock(wraps=resource.user_for)
    with mock.patch.object(resource, "user_for", reads):
        alice.last_login = alice.date_joined
        alice.save(update_fields=["last_login"])
        profile_of(token)
    assert reads.call_count == 0


def test_a_request_racing_a_deactivation_cannot_cache_the_old_row(token: str, alice: Any) -> None:
    """The row read just before another process deactivated the user (and wrote a new
    generation) is tagged with the old generation: it is never served."""
    real = resource.user_for

    def read_then_deactivated_elsewhere(info: Any) -> Any:
        user = real(info)  # the old, active row
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        profiles.invalidate([user])  # what the other process's save does
        return user

    with mock.patch.object(resource, "user_for", read_then_deactivated_elsewhere):
        assert me(token).status_code == 200  # this request had its answer already
    assert refused(token)


def test_a_change_behind_djangos_back_shows_within_the_bound(token: str, alice: Any, settings: Any) -> None:
    settings.CELLS_OIDC_PROFILE_CACHE_SECONDS = 1
    profile_of(token)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)  # no signal
    started = time.monotonic()
    while not refused(token):
        assert time.monotonic() - started < 3, "the cached profile outlived CELLS_OIDC_PROFILE_CACHE_SECONDS"
        time.sleep(0.1)


def test_an_unreadable_cache_falls_back_to_the_database(token: str, alice: Any) -> None:
    profile_of(token)
    alice.is_active = False
    alice.save()
    with mock.patch("cells_oidc.internal.profiles.revocation_cache") as cache:
        cache.return_value.get_many.side_effect = ConnectionError("cache down")
        assert refused(token)
        alice.is_active = True
        alice.save()
        assert profile_of(token)["login"] == "alice"


def test_the_profile_of_a_personal_access_token_is_read_from_the_database(
    default_clients: None, alice: Any
) -> None:
    from datetime import timedelta

    from cells_oidc.internal import pat

    secret = pat.mint(alice, expires_in=timedelta(hours=1), scope="profile pydio", label="laptop").secret
    assert profile_of(secret)["login"] == "alice"
    alice.groups.add(Group.objects.create(name="readers"))
    assert profile_of(secret)["groups"] == ["readers"]


def test_a_setting_that_is_not_whole_seconds_turns_the_cache_off_and_is_reported(
    token: str, settings: Any
) -> None:
    from cells_oidc.checks import check_settings
    from cells_oidc.conf import app_settings

    settings.CELLS_OIDC_PROFILE_CACHE_SECONDS = 1.5
    assert app_settings.PROFILE_CACHE_SECONDS == 0
    assert any("CELLS_OIDC_PROFILE_CACHE_SECONDS" in message.msg for message in check_settings())
    reads = mock.Mock(wraps=resource.user_for)
    with mock.patch.object(resource, "user_for", reads):
        profile_of(token)
        profile_of(token)
    assert reads.call_count == 2  # the database each time


def test_the_profile_is_read_with_the_deny_list_in_one_round_trip(token: str, alice: Any) -> None:
    """GET /a/user/me reads the deny-list entry, the key-set version and the profile's row and
    generation in one cache call; a change still shows at the next request (the generation read in
    that same call is the current one)."""
    from cells_oidc.internal.revocation import revocation_cache

    cache = revocation_cache()
    profile_of(token)  # fills the profile
    # One call: get_many, or with copies in each process (CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS,
    # the demo's with Redis) get_many_tracked, which makes no round trip when the copy answers.
    names = ["get_many"] + (["get_many_tracked"] if hasattr(cache, "get_many_tracked") else [])
    with contextlib.ExitStack() as stack:
        reads = [
            stack.enter_context(
                mock.patch.object(type(cache), name, autospec=True, side_effect=getattr(type(cache), name))
            )
            for name in names
        ]
        assert profile_of(token)["login"] == "alice"
    assert sum(read.call_count for read in reads) == 1, [read.call_args_list for read in reads]
    alice.first_name = "Alicia"
    alice.save()
    assert profile_of(token)["given_name"] == "Alicia"
    # A payload that names another subject than the signature covers cannot get anyone's row: the
    # signature fails first (401), and a row is used only for the verified subject.
    head, payload, signature = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(f"{head}.{forged}.{signature}")
