"""The audit trail (cells_oidc.internal.audit): one row and one log record per event, never a secret;
a failing audit write never breaks the action; the read-only admin list; the account page's sign-ins."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cells_oidc.models import AuditEvent, TokenFamily
from tests.conftest import PASSWORD, SCOPE, Browser, code_from, token_request

pytestmark = pytest.mark.django_db

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
REDIRECT = "http://localhost:3000/servers/callback"


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Any:
    return lambda: django_capture_on_commit_callbacks(execute=True)


def sign_in(http: Client, password: str = PASSWORD, username: str = "alice") -> Any:
    return http.post("/oidc/login/", {"username": username, "password": password})


def rows(event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=event))


def test_a_sign_in_writes_one_row_and_one_log_record(alice: Any, commit: Any, caplog: Any) -> None:
    http = Client(HTTP_USER_AGENT=UA, HTTP_X_REQUEST_ID="req-1234abcd")
    with caplog.at_level(logging.INFO, logger="cells_oidc.audit"), commit():
        assert sign_in(http).status_code == 303
    [row] = AuditEvent.objects.all()
    assert (row.event, row.user, row.login, row.ip, row.user_agent) == (
        "sign_in_succeeded",
        alice,
        "alice",
        "127.0.0.1",
        UA,
    )
    assert row.request_id == "req-1234abcd" and row.details == {"method": "password"}
    assert row.application is None and row.client_id == ""
    [record] = [r for r in caplog.records if r.name == "cells_oidc.audit"]
    assert record.levelno == logging.INFO
    assert (record.event, record.user_id, record.login, record.ip) == (
        "sign_in_succeeded",
        alice.pk,
        "alice",
        "127.0.0.1",
    )
    assert record.request_id == "req-1234abcd" and record.details == {"method": "password"}
    assert PASSWORD not in record.getMessage()


def test_a_failed_sign_in_is_recorded_for_the_account_it_named(alice: Any, commit: Any) -> None:
    with commit():
        sign_in(Client(), password="not the password")
        sign_in(Client(), password="not the password", username="nobody-here")
    failed = {row.login: row for row in rows("sign_in_failed")}
    assert failed["alice"].user == alice  # the account page shows its owner the attempt
    assert failed["nobody-here"].user is None
    for row in failed.values():
        assert "not the password" not in json.dumps(row.details)


def test_a_sign_in_then_tokens_then_refresh_are_one_row_each(
    default_clients: None, alice: Any, commit: Any
) -> None:
    browser = Browser(http=Client(HTTP_USER_AGENT=UA))
    with commit():
        response = browser.authorize(
            {"response_type": "code", "client_id": "cells-client", "redirect_uri": REDIRECT, "scope": SCOPE}
        )
        code = code_from(response, REDIRECT)["code"]
        body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        tokens = json.loads(token_request({**body, "client_id": "cells-client"}).content)
        token_request(
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "cells-client",
            }
        )
    family = TokenFamily.objects.get(user=alice)
    events = list(AuditEvent.objects.order_by("time", "pk").values_list("event", flat=True))
    expected = ["sign_in_succeeded", "code_issued", "tokens_issued", "code_redeemed", "tokens_refreshed"]
    assert sorted(events) == sorted(expected)
    [issued] = rows("tokens_issued")
    assert issued.user == alice and issued.client_id == "cells-client"
    assert issued.application.client_id == "cells-client"
    assert issued.details["grant_type"] == "authorization_code"
    assert issued.details["family_id"] == str(family.pk) and issued.details["refresh_token"] is True
    [refreshed] = rows("tokens_refreshed")
    assert refreshed.details["grant_type"] == "refresh_token"
    stored = json.dumps([list(AuditEvent.objects.values())], default=str)
    for secret in (code, tokens["access_token"], tokens["refresh_token"], tokens["id_token"], PASSWORD):
        assert secret not in stored


def test_a_failing_audit_write_never_breaks_the_action(alice: Any, commit: Any, caplog: Any) -> None:
    with (
        mock.patch.object(AuditEvent.objects, "create", side_effect=DatabaseError("disk full")),
        caplog.at_level(logging.INFO, logger="cells_oidc.audit"),
        commit(),
    ):
        assert sign_in(Client()).status_code == 303
    assert not AuditEvent.objects.exists()
    assert any(getattr(r, "event", None) == "sign_in_succeeded" for r in caplog.records)  # the log stands
    assert any("could not be stored" in r.getMessage() for r in caplog.records)
    # A receiver that raises anything at all: the signal is sent robustly.
    with mock.patch("cells_oidc.internal.audit.details", side_effect=RuntimeError("bug")), commit():
        assert sign_in(Client()).status_code == 303


@pytest.mark.django_db(transaction=True)
def test_a_refresh_commits_once_its_audit_row_is_one_insert_after_it(
    default_clients: None, alice: Any
) -> None:
    """The token request's transaction is the only one: the audit row that follows its commit is a
    single INSERT in autocommit, with no BEGIN and COMMIT of its own (two round trips fewer)."""
    browser = Browser(http=Client(HTTP_USER_AGENT=UA))
    response = browser.authorize(
        {"response_type": "code", "client_id": "cells-client", "redirect_uri": REDIRECT, "scope": SCOPE}
    )
    code = code_from(response, REDIRECT)["code"]
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "cells-client",
    }
    tokens = json.loads(token_request(body).content)
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "cells-client",
    }
    with CaptureQueriesContext(connection) as captured:
        assert token_request(refresh).status_code == 200
    sql = [query["sql"].lstrip().upper() for query in captured.captured_queries]
    inserts = [
        index for index, text in enumerate(sql) if text.startswith('INSERT INTO "CELLS_OIDC_AUDITEVENT"')
    ]
    commits = [index for index, text in enumerate(sql) if text.startswith("COMMIT")]
    assert len(inserts) == 1 and len(commits) == 1, sql
    assert commits[0] < inserts[0]  # recorded after the tokens were committed
    assert not any(text.startswith(("BEGIN", "SAVEPOINT")) for text in sql[commits[0] :]), sql
    assert AuditEvent.objects.filter(event="tokens_refreshed", user=alice).count() == 1


def test_a_failing_audit_write_inside_a_sites_transaction_leaves_it_usable(alice: Any) -> None:
    """A receiver run inside a transaction of the site's (a signal sent in an atomic block, or
    ATOMIC_REQUESTS): the audit write is a savepoint, so a real database error in it is logged and
    the site's transaction goes on (PostgreSQL would refuse every later statement of an aborted one)."""
    from cells_oidc import signals
    from cells_oidc.internal import audit

    def failing_insert(**kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM cells_oidc_no_such_table")

    with transaction.atomic(), mock.patch.object(AuditEvent.objects, "create", side_effect=failing_insert):
        audit.record(signals.signed_out, user=alice, client=None)
        assert AuditEvent.objects.filter(user=alice).count() == 0  # the transaction still answers
        alice.first_name = "Alice"
        alice.save(update_fields=["first_name"])
    alice.refresh_from_db()
    assert alice.first_name == "Alice"


def test_the_table_can_be_turned_off_the_log_stays(
    alice: Any, commit: Any, caplog: Any, settings: Any
) -> None:
    settings.CELLS_OIDC_AUDIT_ENABLED = False
    with caplog.at_level(logging.INFO, logger="cells_oidc.audit"), commit():
        assert sign_in(Client()).status_code == 303
    assert not AuditEvent.objects.exists()
    assert [r.event for r in caplog.records if r.name == "cells_oidc.audit"] == ["sign_in_succeeded"]
    http = Client()
    http.login(username="alice", password=PASSWORD)
    assert "Recent sign-ins" not in http.get("/oidc/account/").content.decode()


def test_expired_events_follow_the_retention_setting(db: Any, settings: Any) -> None:
    now = timezone.now()
    old = AuditEvent.objects.create(event="sign_in_failed", time=now - timedelta(days=91))
    AuditEvent.objects.create(event="sign_in_failed", time=now - timedelta(days=89))
    assert list(AuditEvent.objects.expired(now)) == [old]
    settings.CELLS_OIDC_AUDIT_RETENTION_DAYS = 30
    assert AuditEvent.objects.expired(now).count() == 2
    settings.CELLS_OIDC_AUDIT_RETENTION_DAYS = 0  # kept for ever
    assert not AuditEvent.objects.expired(now).exists()


# ---- the admin -----------------------------------------------------------------------------------
def test_the_admin_list_renders_filters_searches_and_is_read_only(
    admin_client: Client, alice: Any, commit: Any
) -> None:
    with commit():
        sign_in(Client(HTTP_USER_AGENT=UA))
        sign_in(Client(REMOTE_ADDR="203.0.113.9"), password="wrong")
    url = "/admin/cells_oidc/auditevent/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "sign_in_succeeded" in html and "sign_in_failed" in html and "Firefox on Linux" in html
    filtered = admin_client.get(url, {"event": "sign_in_failed"}).content.decode()
    assert "203.0.113.9" in filtered and "sign_in_succeeded</td>" not in filtered
    searched = admin_client.get(url, {"q": "203.0.113"}).content.decode()
    assert "203.0.113.9" in searched and "Firefox on Linux" not in searched
    assert admin_client.get(url, {"time__year": timezone.now().year}).status_code == 200
    row = AuditEvent.objects.get(event="sign_in_failed")
    assert admin_client.get(f"{url}{row.pk}/change/").status_code == 200  # a view, no form
    assert "wrong" not in admin_client.get(f"{url}{row.pk}/change/").content.decode().split("<main")[-1]
    assert admin_client.get(f"{url}add/").status_code == 403
    assert admin_client.post(f"{url}{row.pk}/change/", {"event": "nothing"}).status_code == 403
    assert admin_client.post(f"{url}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=row.pk).event == "sign_in_failed"
    bulk = admin_client.post(url, {"action": "delete_selected", "_selected_action": [str(row.pk)]})
    assert bulk.status_code in (200, 302) and AuditEvent.objects.filter(pk=row.pk).exists()


# ---- the account page ----------------------------------------------------------------------------
def test_the_account_page_shows_the_users_own_sign_ins(alice: Any, make_user: Any, commit: Any) -> None:
    make_user("bob")
    with commit():
        sign_in(Client(HTTP_USER_AGENT=UA, REMOTE_ADDR="198.51.100.7"), password="typo")
        sign_in(Client(REMOTE_ADDR="192.0.2.44"), username="bob")
        mine = Client(HTTP_USER_AGENT=UA, REMOTE_ADDR="198.51.100.8")
        sign_in(mine)
    html = mine.get("/oidc/account/").content.decode()
    start = html.index('id="sign-ins"')
    section = html[start : html.index("</section>", start)]
    assert "Recent sign-ins" in html
    assert "198.51.100.7" in section and "Failed attempt" in section
    assert "198.51.100.8" in section and "Firefox on Linux" in section
    assert "192.0.2.44" not in section  # bob's
