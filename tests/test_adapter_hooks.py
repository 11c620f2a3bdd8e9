"""The adapter's token hooks through full sign-ins (cells_oidc.adapter, cells_oidc.internal.issuance):
extra ID-token and access-token claims, the refresh-token decision per client, the subject."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cells_oidc.adapter import DefaultAdapter
from tests.conftest import Browser
from tests.test_tokens import ISSUER, refresh, sign_in, userinfo, verified_claims

pytestmark = pytest.mark.django_db

HERE = "tests.test_adapter_hooks"
FORGED = {
    "sub": "0",
    "iss": "https://evil.example/",
    "aud": "evil",
    "exp": 4102444800,
    "iat": 1,
    "jti": "fixed",
    "client_id": "evil",
    "scope": "cells_oidc:admin",
    "nonce": "forged",
    "auth_time": 1,
    "sid": "forged",
    "at_hash": "forged",
}


class ClaimsAdapter(DefaultAdapter):
    """Adds a claim to each kind of token, tries to forge the registered ones, and refuses
    refresh tokens to cells-client."""

    def extra_id_token_claims(
        self, *, user: Any, client: Any, scopes: list[str], **kwargs: Any
    ) -> dict[str, Any]:
        return {**FORGED, "tenant": f"t-{user.pk}", "id_for": client.client_id, "grant": kwargs["grant_type"]}

    def extra_access_token_claims(
        self, *, user: Any, client: Any, scopes: list[str], **kwargs: Any
    ) -> dict[str, Any]:
        return {**FORGED, "tenant": f"t-{user.pk}", "scopes_seen": sorted(scopes)}

    def issue_refresh_token(
        self, *, client: Any, scopes: list[str], grant_type: str | None, **kwargs: Any
    ) -> bool:
        if client.client_id == "cells-client":
            return False
        return super().issue_refresh_token(client=client, scopes=scopes, grant_type=grant_type, **kwargs)


class LegacySubjectAdapter(DefaultAdapter):
    """A subclass written before ``subject`` took the client: ``subject(self, user)``."""

    def subject(self, user: Any) -> str:  # type: ignore[override]
        return f"user-{user.pk}"


class PerClientSubjectAdapter(DefaultAdapter):
    def subject(self, user: Any, *, client: Any | None = None, **kwargs: Any) -> str:
        return f"{user.pk}@{client.client_id if client is not None else '-'}"


@pytest.fixture
def claims_adapter(settings: Any) -> None:
    settings.CELLS_OIDC_ADAPTER = f"{HERE}.ClaimsAdapter"


def test_extra_claims_reach_the_id_and_access_tokens_and_survive_a_refresh(
    default_clients: None, alice: Any, browser: Browser, claims_adapter: None
) -> None:
    tokens = sign_in(browser, client_id="cells-sync")
    id_claims = verified_claims(tokens["id_token"])
    access = verified_claims(tokens["access_token"])
    assert id_claims["tenant"] == access["tenant"] == f"t-{alice.pk}"
    assert id_claims["id_for"] == "cells-sync" and id_claims["grant"] == "authorization_code"
    assert access["scopes_seen"] == sorted(tokens["scope"].split())
    assert "id_for" not in access and "scopes_seen" not in id_claims
    # An ID token's extra claims are not userinfo claims.
    assert "tenant" not in json.loads(userinfo(tokens["access_token"]).content)

    response = refresh("cells-sync", tokens["refresh_token"])
    assert response.status_code == 200, response.content
    refreshed = json.loads(response.content)
    assert verified_claims(refreshed["id_token"])["grant"] == "refresh_token"
    assert verified_claims(refreshed["access_token"])["tenant"] == f"t-{alice.pk}"


def test_extra_claims_cannot_override_registered_claims(
    default_clients: None, alice: Any, browser: Browser, claims_adapter: None
) -> None:
    tokens = sign_in(browser, client_id="cells-sync", nonce="n-1")
    for token in (tokens["id_token"], tokens["access_token"]):
        claims = verified_claims(token)
        assert claims["sub"] == str(alice.pk)
        assert claims["iss"] == ISSUER
        assert claims["jti"] != "fixed" and claims["iat"] > 1 and claims["exp"] < 4102444800
        assert claims["auth_time"] > 1 and claims["sid"] != "forged"
        assert "evil" not in json.dumps(claims.get("aud"))
    id_claims = verified_claims(tokens["id_token"])
    assert id_claims["nonce"] == "n-1" and id_claims["at_hash"] != "forged"
    access = verified_claims(tokens["access_token"])
    assert access["client_id"] == "cells-sync" and "cells_oidc:admin" not in access["scope"]
    # The forged values never reach what the token grants either.
    assert userinfo(tokens["access_token"]).status_code == 200


def test_the_adapter_refuses_refresh_tokens_to_one_client(
    default_clients: None, alice: Any, browser: Browser, claims_adapter: None
) -> None:
    refused = sign_in(browser, client_id="cells-client")  # asks for "offline" (tests.conftest.SCOPE)
    assert "offline" in refused["scope"].split()
    assert "refresh_token" not in refused and refused["access_token"]
    assert userinfo(refused["access_token"]).status_code == 200
    allowed = sign_in(Browser(), client_id="cells-sync")
    assert allowed["refresh_token"]


def test_without_the_hook_cells_client_gets_its_refresh_token(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    # The default rule (OpenID Connect Core §11): offline access asked for, a refresh token given.
    assert sign_in(browser, client_id="cells-client")["refresh_token"]
    assert "refresh_token" not in sign_in(Browser(), client_id="cells-client", scope="openid profile")


def test_a_subject_override_of_the_old_form_still_works(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_ADAPTER = f"{HERE}.LegacySubjectAdapter"
    tokens = sign_in(browser)
    assert verified_claims(tokens["id_token"])["sub"] == f"user-{alice.pk}"
    assert verified_claims(tokens["access_token"])["sub"] == f"user-{alice.pk}"
    assert json.loads(userinfo(tokens["access_token"]).content)["sub"] == f"user-{alice.pk}"


def test_the_subject_hook_is_told_the_client(
    default_clients: None, alice: Any, browser: Browser, settings: Any
) -> None:
    settings.CELLS_OIDC_ADAPTER = f"{HERE}.PerClientSubjectAdapter"
    tokens = sign_in(browser, client_id="cells-sync")
    assert verified_claims(tokens["id_token"])["sub"] == f"{alice.pk}@cells-sync"
    assert verified_claims(tokens["access_token"])["sub"] == f"{alice.pk}@cells-sync"
