"""Fixtures: the default clients, users, a browser; the plain helpers are re-exported from tests/kit.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.signals import setting_changed

# The kit, still importable from here (``from tests.conftest import Browser``); new code imports tests.kit.
from tests.kit import (  # noqa: F401 - re-exported
    FORM,
    PASSWORD,
    SCOPE,
    Browser,
    basic,
    bearer_get,
    code_from,
    exchange,
    form_post,
    ok,
    pkce_pair,
    query,
    refresh,
    sign_in,
    signed_in,
    token_request,
)


def _forget_oauthlib_cores(*, setting: str, **kwargs: Any) -> None:
    """Test support: rebuild the API endpoints' oauthlib cores when a test changes ``OAUTH2_PROVIDER``.

    Each endpoint view builds its oauthlib server once, freezing e.g. the access token lifetime
    (``expires_in``); DOT reloads its settings on ``setting_changed`` but not that server, so a
    test's lifetime would leave ``expires_in``, the stored expiry and the JWT's ``exp`` disagreeing.
    """
    if setting != "OAUTH2_PROVIDER":
        return
    from cells_oidc.internal.views.common import OAUTHLIB_CORE_ATTRIBUTE, ApiEndpointMixin

    pending = [ApiEndpointMixin]
    while pending:
        view = pending.pop()
        pending.extend(view.__subclasses__())
        if OAUTHLIB_CORE_ATTRIBUTE in view.__dict__:
            delattr(view, OAUTHLIB_CORE_ATTRIBUTE)


setting_changed.connect(_forget_oauthlib_cores, dispatch_uid="tests.conftest.forget_oauthlib_cores")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """pytest-django's test databases, and on PostgreSQL no session left on them when they are
    dropped: a connection of the browser tests' live-server thread can outlive the thread
    (pytest-django #429), and the DROP then failed ("being accessed by other users") and left
    ``test_cells`` behind on the developer's server."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _empty_caches() -> None:
    """Every test starts with empty caches (deny-list, throttles, keys), also on a shared Redis."""
    from django.core.cache import caches

    for alias in caches:
        caches[alias].clear()


@pytest.fixture
def default_clients(db: Any) -> None:
    call_command("loaddata", "default_clients", verbosity=0)


@pytest.fixture
def make_user(db: Any) -> Any:
    from django.contrib.auth import get_user_model

    def make(username: str = "alice", **extra: Any) -> Any:
        extra.setdefault("email", f"{username}@example.com")
        return get_user_model().objects.create_user(username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice", first_name="Alice", last_name="Liddell")


@pytest.fixture
def browser() -> Browser:
    return Browser()
