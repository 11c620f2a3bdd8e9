"""System checks: each misconfiguration is reported with its id."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from cells_oidc.caches import RedisCache
from cells_oidc.checks import check_clients, check_settings
from cells_oidc.conf import oauth2_provider_settings


def ids(messages: list[Any]) -> set[str]:
    return {message.id for message in messages}


def test_a_correct_configuration_has_no_error(settings: Any) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    assert ids(check_settings()) == set()


@pytest.mark.parametrize(
    ("site_url", "expected"),
    [
        (None, "cells_oidc.E002"),
        ("", "cells_oidc.E002"),
        ("cells.example.com", "cells_oidc.E003"),
        ("ftp://cells.example.com", "cells_oidc.E003"),
        ("https://user@cells.example.com", "cells_oidc.E003"),
        ("https://cells.example.com/?x=1", "cells_oidc.E003"),
        ("http://cells.example.com", "cells_oidc.W001"),
    ],
)
def test_site_url_problems(settings: Any, site_url: str | None, expected: str) -> None:
    settings.DEBUG = False
    settings.CELLS_OIDC_SITE_URL = site_url
    assert expected in ids(check_settings())


def test_plain_http_issuer_is_fine_in_debug(settings: Any) -> None:
    settings.DEBUG = True
    settings.CELLS_OIDC_SITE_URL = "http://127.0.0.1:8000"
    assert "cells_oidc.W001" not in ids(check_settings())


def dot(settings: Any, **overrides: Any) -> None:
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(
        signing_key=overrides.pop("signing_key", django_settings.SIGNING_KEY), **overrides
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"OIDC_ENABLED": False}, "cells_oidc.E004"),
        ({"signing_key": ""}, "cells_oidc.E005"),
        (
            {"signing_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"},
            "cells_oidc.E006",
        ),
        ({"OAUTH2_VALIDATOR_CLASS": "oauth2_provider.oauth2_validators.OAuth2Validator"}, "cells_oidc.E007"),
        (
            {"ACCESS_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator"},
            "cells_oidc.E008",
        ),
    ],
)
def test_provider_settings_problems(settings: Any, overrides: dict[str, Any], expected: str) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    dot(settings, **overrides)
    assert ids(check_settings()) == {expected}


def test_an_ec_key_is_refused(settings: Any) -> None:
    from jwcrypto import jwk

    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    ec = jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem(private_key=True, password=None).decode()
    dot(settings, signing_key=ec)
    assert ids(check_settings()) == {"cells_oidc.E006"}


def test_missing_required_apps(settings: Any) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    from django.test import modify_settings

    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.staticfiles"]}):
        messages = check_settings()
    assert "cells_oidc.E001" in ids(messages)
    assert "django.contrib.staticfiles" in next(m.msg for m in messages if m.id == "cells_oidc.E001")


@pytest.mark.django_db
def test_database_check_lists_clients_without_pkce(default_clients: None) -> None:
    messages = check_clients(databases=["default"])
    assert ids(messages) == {"cells_oidc.W002"}
    assert "cells-client" in messages[0].msg and "cells-mobile" in messages[0].msg
    assert "cells-sync" not in messages[0].msg
    assert check_clients(databases=None) == []


@pytest.mark.django_db
def test_check_command_runs_clean_with_the_test_settings() -> None:
    call_command("check", "--fail-level", "ERROR")


LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
REDIS = "django.core.cache.backends.redis.RedisCache"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CACHES": {"default": {"BACKEND": REDIS, "LOCATION": "redis://127.0.0.1:6379"}}}, set()),
        ({"CACHES": {"default": {"BACKEND": LOCMEM}}, "DEBUG": True}, set()),
        # A per-process cache is check_shared_state's E013 (tests/test_throttle.py).
        ({"CACHES": {"default": {"BACKEND": LOCMEM}}}, set()),
        ({"CELLS_OIDC_RESOURCE_REVOCATION_CACHE": "tokens"}, {"cells_oidc.E009"}),
        (
            {"CACHES": {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}},
            {"cells_oidc.E010"},
        ),
        ({"CELLS_OIDC_RESOURCE_ISSUER": "cells.example.com/oidc/"}, {"cells_oidc.E011"}),
        ({"CELLS_OIDC_RESOURCE_ISSUER": "http://cells.example.com/oidc/"}, {"cells_oidc.W004"}),
        ({"CELLS_OIDC_RESOURCE_ISSUER": "http://127.0.0.1:8000/oidc/"}, set()),
        ({"CELLS_OIDC_SITE_URL": None, "CELLS_OIDC_RESOURCE_AUDIENCE": None}, {"cells_oidc.W005"}),
    ],
)
def test_resource_server_checks(settings: Any, overrides: dict[str, Any], expected: set[str]) -> None:
    from cells_oidc.checks import check_resource_server

    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": REDIS, "LOCATION": "redis://127.0.0.1:6379"}}
    for name, value in overrides.items():
        setattr(settings, name, value)
    assert ids(check_resource_server()) == expected


def test_settings_are_remembered_until_a_setting_changes(settings: Any) -> None:
    """app_settings remembers each property until Django's setting_changed: a change is seen at the
    next read, and a list handed out cannot change what the next reader gets."""
    from cells_oidc.conf import app_settings

    settings.CELLS_OIDC_SITE_URL = "https://one.example.com"
    urls = app_settings.SITE_URLS
    assert urls == ["https://one.example.com"]
    urls.append("https://attacker.example")
    assert app_settings.SITE_URLS == ["https://one.example.com"]
    settings.CELLS_OIDC_SITE_URL = "https://two.example.com https://three.example.com"
    assert app_settings.SITE_URLS == ["https://two.example.com", "https://three.example.com"]
    assert app_settings.SITE_URL == "https://two.example.com"


def test_a_client_cache_without_a_backend_that_keeps_copies_is_reported(settings: Any) -> None:
    from unittest import mock

    from django.db import connections

    from cells_oidc.checks import check_shared_state

    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    settings.CELLS_OIDC_RESOURCE_CLIENT_CACHE_SECONDS = 1
    settings.CACHES = {"default": {"BACKEND": "cells_oidc.caches.DatabaseCache", "LOCATION": "t"}}
    # The suite's database: SQLite in memory (no other connection to tell a write by) or PostgreSQL.
    assert "cells_oidc.W008" in ids(check_shared_state())
    default = connections["default"]
    if default.vendor == "sqlite":  # the same cache on a SQLite file keeps copies
        with mock.patch.object(type(default), "is_in_memory_db", return_value=False):
            assert "cells_oidc.W008" not in ids(check_shared_state())
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}}
    assert "cells_oidc.W008" in ids(check_shared_state())  # Django's own keeps none
    settings.CACHES = {
        "default": {"BACKEND": "cells_oidc.caches.RedisCache", "LOCATION": "redis://a,redis://b"}
    }
    assert "cells_oidc.W008" in ids(check_shared_state())
    settings.CACHES = {"default": {"BACKEND": "cells_oidc.caches.RedisCache", "LOCATION": "redis://a"}}
    assert "cells_oidc.W008" not in ids(check_shared_state())
    settings.CACHES = {"default": {"BACKEND": f"{__name__}.SiteRedisCache", "LOCATION": "redis://a"}}
    assert "cells_oidc.W008" not in ids(check_shared_state())
    settings.CACHES = {"default": {"BACKEND": "no.such.Backend", "LOCATION": "redis://a"}}
    assert "cells_oidc.W008" in ids(check_shared_state())


class SiteRedisCache(RedisCache):
    """A site's own subclass of the backend keeps copies too."""
