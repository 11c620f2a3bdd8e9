"""cells_oidc.internal.prepared: the token endpoint's reads compiled once (docs/performance.md).

What a prepared read returns must be what ``QuerySet.first()`` returns — the same rows as the same
model instances, their ``select_related`` rows attached (no lazy load later), Django's converters
applied — in one statement, and ``FOR UPDATE`` only inside a transaction.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_application_model, get_grant_model, get_refresh_token_model

from cells_oidc.internal import client_auth, validators
from cells_oidc.internal.prepared import PreparedRead
from cells_oidc.models import ClientPolicy, TokenFamily, checksum
from tests.kit import Browser, sign_in

pytestmark = pytest.mark.django_db


def fields(instance: Any) -> dict[str, Any]:
    return {key: value for key, value in vars(instance).items() if not key.startswith("_")}


def same(prepared: Any, expected: Any) -> None:
    assert type(prepared) is type(expected)
    assert fields(prepared) == fields(expected)
    assert prepared._state.db == expected._state.db and prepared._state.adding is False


@pytest.fixture
def tokens(default_clients: None, alice: Any) -> dict[str, Any]:
    return sign_in(Browser())


def test_the_client_with_its_policy(default_clients: None) -> None:
    expected = get_application_model().objects.select_related("cells_policy").get(client_id="cells-sync")
    with CaptureQueriesContext(connection) as captured:
        client = client_auth.load_client("cells-sync")
        policy = client.cells_policy  # joined: no second statement
    assert len(captured) == 1
    same(client, expected)
    same(policy, expected.cells_policy)
    assert client_auth.load_client("no-such-client") is None


def test_a_client_without_a_policy_row_is_read_as_the_orm_reads_it(default_clients: None) -> None:
    ClientPolicy.objects.filter(application__client_id="cells-sync").delete()
    expected = get_application_model().objects.select_related("cells_policy").get(client_id="cells-sync")
    client = client_auth.load_client("cells-sync")
    same(client, expected)
    with CaptureQueriesContext(connection) as captured:
        for instance in (client, expected):
            with pytest.raises(ClientPolicy.DoesNotExist):
                instance.cells_policy  # noqa: B018 - the joined row is known to be missing
    assert len(captured) == 0


def test_the_refresh_token_with_its_user_and_access_token(tokens: dict[str, Any]) -> None:
    digest = checksum(tokens["refresh_token"])
    expected = (
        get_refresh_token_model().objects.select_related("user", "access_token").get(token_checksum=digest)
    )
    with CaptureQueriesContext(connection) as captured:
        token = validators._REFRESH_TOKEN.first(digest)
        user, access = token.user, token.access_token
    assert len(captured) == 1
    same(token, expected)
    same(user, expected.user)
    same(access, expected.access_token)
    assert isinstance(token.created, datetime) and token.created.tzinfo is not None  # converted
    assert validators._REFRESH_TOKEN.first(checksum("nope")) is None


@pytest.mark.django_db(transaction=True)
def test_the_sign_in_row_is_locked_only_in_a_transaction(tokens: dict[str, Any]) -> None:
    digest = checksum(tokens["refresh_token"])
    expected = TokenFamily.objects.get(
        pk=get_refresh_token_model().objects.get(token_checksum=digest).token_family
    )
    with CaptureQueriesContext(connection) as captured:
        with transaction.atomic():
            locked = validators._FAMILY_OF_REFRESH_TOKEN.first(digest, lock=True)
        plain = validators._FAMILY_OF_REFRESH_TOKEN.first(digest, lock=True)
    same(locked, expected)
    same(plain, expected)
    reads = [query["sql"] for query in captured.captured_queries if "SELECT" in query["sql"].upper()]
    assert len(reads) == 2
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in reads[0] and "FOR UPDATE" not in reads[1]


def test_the_code_with_its_user(default_clients: None, alice: Any) -> None:
    from tests.kit import REDIRECT_URIS, code_from

    params = {
        "response_type": "code",
        "client_id": "cells-sync",
        "redirect_uri": REDIRECT_URIS["cells-sync"],
        "scope": "openid",
        "state": "s" * 16,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    code = code_from(Browser().authorize(params), REDIRECT_URIS["cells-sync"])["code"]
    expected = get_grant_model().objects.select_related("user").get(code=code)
    grant = validators._GRANT.first(code)
    same(grant, expected)
    same(grant.user, expected.user)
    same(
        validators._FAMILY_OF_CODE.first(checksum(code)),
        TokenFamily.objects.get(code_checksum=checksum(code)),
    )
    # A code is what the client sends: any text, even one that looks like nothing stored.
    for hostile in ("", "x" * 255, "' OR 1=1 --", "%", "\\"):
        assert validators._GRANT.first(hostile) is None


@pytest.mark.django_db(transaction=True)
def test_each_thread_compiles_its_own(default_clients: None) -> None:
    """A compiler holds its thread's connection: each thread compiles its own and reads right."""
    read = PreparedRead(lambda client_id: get_application_model().objects.filter(client_id=client_id))
    found: list[Any] = []

    def use() -> None:
        try:
            found.append(read.first("cells-client").client_id)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            found.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == ["cells-client"] * 3


def test_a_value_the_sql_wraps_runs_as_the_queryset(default_clients: None, caplog: Any) -> None:
    read = PreparedRead(lambda part: get_application_model().objects.filter(client_id__contains=part))
    assert read.first("sync").client_id == "cells-sync"  # a LIKE pattern: not prepared, still right
    assert read.first("nothing-like-it") is None
    assert "could not be prepared" in caplog.text
    # Not a string: the queryset too (locked only in a transaction, as a prepared read).
    by_pk = PreparedRead(lambda pk: get_application_model().objects.filter(pk=pk))
    client = get_application_model().objects.get(client_id="cells-mobile")
    assert by_pk.first(client.pk).client_id == "cells-mobile"
    assert by_pk.first(client.pk, lock=True).client_id == "cells-mobile"


def test_the_token_endpoints_reads_are_prepared_on_this_django(tokens: dict[str, Any], caplog: Any) -> None:
    """The fast path is taken (the reads above would be right as querysets too): a Django whose
    compiler no longer fits is noticed here, not only in `make bench`."""
    from tests.kit import refresh

    assert refresh("cells-client", tokens["refresh_token"]).status_code == 200
    for read in (client_auth._CLIENT, validators._REFRESH_TOKEN, validators._FAMILY_OF_REFRESH_TOKEN):
        compiled = read._local.__dict__.get("compiled", {})
        assert compiled and all(entry is not None for entry in compiled.values()), read.build
    assert "could not be prepared" not in caplog.text
