"""The device authorization grant (RFC 8628): endpoint, verification pages and token polling."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import DeviceGrant

from cells_oidc.models import ClientPolicy, TokenFamily
from tests.kit import PASSWORD, basic, clear_of_window_edges, form_post, query, signed_in, token_request

pytestmark = pytest.mark.django_db

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid profile pydio offline"


@pytest.fixture(autouse=True)
def fresh_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


def authorize_device(client_id: str = "cells-client", scope: str | None = SCOPE, **headers: str) -> Any:
    data = {"client_id": client_id}
    if scope is not None:
        data["scope"] = scope
    return form_post("/oidc/oauth2/device/auth", data, **headers)


def start(client_id: str = "cells-client", scope: str | None = SCOPE) -> dict[str, Any]:
    response = authorize_device(client_id, scope)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def poll(device_code: str, client_id: str = "cells-client") -> Any:
    return token_request({"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id})


def poll_now(device_code: str, client_id: str = "cells-client") -> Any:
    """Poll as a well-behaved device that waited the interval (the throttle forgets the last poll)."""
    from cells_oidc.models import checksum

    cache.delete(f"cells_oidc:device-poll:{checksum(device_code)}")
    return poll(device_code, client_id)


def enter(client: Client, user_code: str) -> Any:
    return client.post("/oidc/device", {"user_code": user_code})


def decide(client: Client, user_code: str, action: str) -> Any:
    entered = enter(client, user_code)
    assert entered.status_code == 303, entered.content
    assert entered["Location"] == "/oidc/device/confirm"
    page = client.get(entered["Location"])
    assert page.status_code == 200
    return client.post("/oidc/device/confirm", {"action": action})


def error_of(response: Any) -> str:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)["error"]


# ---- the device authorization endpoint ------------------------------------------------------------
def test_device_authorization_response(default_clients: None) -> None:
    response = authorize_device()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert body["verification_uri"] == "http://testserver/oidc/device"
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
    assert body["verification_uri_complete"] == f"http://testserver/oidc/device?user_code={body['user_code']}"
    assert body["expires_in"] == 900
    assert body["interval"] == 5
    assert len(body["device_code"]) >= 30
    grant = DeviceGrant.objects.get(device_code=body["device_code"])
    assert grant.user_code == body["user_code"].replace("-", "")
    assert grant.client_id == "cells-client" and grant.scope == SCOPE and grant.user is None


def test_device_authorization_follows_settings(default_clients: None, settings: Any) -> None:
    settings.CELLS_OIDC_SITE_URL = "https://cells.example.com"
    settings.CELLS_OIDC_DEVICE_CODE_LIFETIME = 300
    body = start()
    assert body["verification_uri"] == "https://cells.example.com/oidc/device"
    assert body["expires_in"] == 300


def test_only_clients_allowing_the_device_flow(default_clients: None) -> None:
    refused = authorize_device("cells-sync")
    assert refused.status_code == 400 and error_of(refused) == "unauthorized_client"
    assert not DeviceGrant.objects.exists()
    ClientPolicy.objects.filter(application__client_id="cells-sync").update(allow_device_flow=True)
    assert authorize_device("cells-sync").status_code == 200


def test_device_authorization_errors(default_clients: None) -> None:
    unknown = authorize_device("nobody")
    assert unknown.status_code == 401 and error_of(unknown) == "invalid_client"
    scope = authorize_device(scope="openid admin")
    assert scope.status_code == 400 and error_of(scope) == "invalid_scope"
    in_url = Client().post("/oidc/oauth2/device/auth?client_id=cells-client")
    assert in_url.status_code == 400 and error_of(in_url) == "invalid_request"
    get = Client().get("/oidc/oauth2/device/auth")
    assert get.status_code == 405 and error_of(get) == "invalid_request"
    # A public client may identify itself with Basic and an empty password.
    body = json.loads(authorize_device(scope=None, HTTP_AUTHORIZATION=basic("cells-client")).content)
    assert DeviceGrant.objects.get(device_code=body["device_code"]).scope == "openid"
    assert not DeviceGrant.objects.filter(client_id="nobody").exists()


# ---- the verification pages -----------------------------------------------------------------------
def test_verification_page_needs_a_signed_in_user_and_keeps_the_code(
    default_clients: None, alice: Any
) -> None:
    body = start()
    anonymous = Client().get(body["verification_uri_complete"].removeprefix("http://testserver"))
    assert anonymous.status_code == 302
    login = anonymous["Location"]
    assert login.startswith("/oidc/login/?next=")
    client = Client()
    next_url = query(login)["next"]
    assert next_url == f"/oidc/device?user_code={body['user_code']}"
    signed_in = client.post("/oidc/login/", {"username": "alice", "password": PASSWORD, "next": next_url})
    assert signed_in.status_code == 303 and signed_in["Location"] == next_url
    # verification_uri_complete pre-fills the code (normalised); the user still confirms.
    page = client.get(f"/oidc/device?user_code={body['user_code'].lower().replace('-', '')}")
    assert page.status_code == 200
    assert f'value="{body["user_code"]}"' in page.content.decode()
    assert DeviceGrant.objects.get().status == DeviceGrant.AUTHORIZATION_PENDING


@pytest.mark.parametrize("typed", ["{code}", "{lower}", "{nodash}", " {spaced} "])
def test_user_code_is_case_and_dash_insensitive(default_clients: None, alice: Any, typed: str) -> None:
    body = start()
    code = body["user_code"]
    typed = typed.format(
        code=code, lower=code.lower(), nodash=code.replace("-", ""), spaced=code.replace("-", " ")
    )
    client = signed_in()
    response = enter(client, typed)
    assert response.status_code == 303
    page = client.get("/oidc/device/confirm")
    html = page.content.decode()
    assert "Cells Client CLI Tool" in html
    assert code in html
    for words in (
        "Sign you in with your account",
        "Know your name and login",
        "Use your Cells files and folders",
    ):
        assert words in html


def test_wrong_codes_are_rate_limited_per_session_and_per_user(default_clients: None, alice: Any) -> None:
    clear_of_window_edges(15)  # the wrong codes are counted in one fixed window
    body = start()
    first = signed_in()
    for _ in range(5):
        wrong = enter(first, "BCDF-GHJK")
        assert wrong.status_code == 400
        assert b"not valid or has expired" in wrong.content
    blocked = enter(first, body["user_code"])
    assert blocked.status_code == 429
    assert b"Too many wrong codes" in blocked.content
    # A new session of the same user is blocked too (per user).
    assert enter(signed_in(), body["user_code"]).status_code == 429
    # Another user is not.
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("bob", password=PASSWORD)
    assert enter(signed_in("bob"), body["user_code"]).status_code == 303


def test_right_codes_do_not_use_up_the_limit(default_clients: None, alice: Any) -> None:
    """Each typed code is counted before it is looked up (codes typed in parallel cannot all pass a
    check made before any failed); a right one is taken back: it was no failure."""
    clear_of_window_edges(15)  # the codes are counted in one fixed window
    client = signed_in()
    for _ in range(7):
        assert enter(client, start()["user_code"]).status_code == 303
    for _ in range(5):
        assert enter(client, "BCDF-GHJK").status_code == 400
    assert enter(client, start()["user_code"]).status_code == 429


def test_unknown_expired_or_used_codes_are_refused(default_clients: None, alice: Any) -> None:
    client = signed_in()
    assert enter(client, "").status_code == 400
    assert enter(client, "x" * 500).status_code == 400
    body = start()
    DeviceGrant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert enter(client, body["user_code"]).status_code == 400
    body = start()
    assert decide(client, body["user_code"], "approve").status_code == 200
    assert enter(client, body["user_code"]).status_code == 400


def test_confirm_without_a_code_or_with_a_stale_one(default_clients: None, alice: Any) -> None:
    client = signed_in()
    assert client.get("/oidc/device/confirm").status_code == 400
    assert client.post("/oidc/device/confirm", {"action": "approve"}).status_code == 400
    body = start()
    assert enter(client, body["user_code"]).status_code == 303
    DeviceGrant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert client.post("/oidc/device/confirm", {"action": "approve"}).status_code == 400
    assert DeviceGrant.objects.get().status != DeviceGrant.AUTHORIZED


def test_one_decision_per_code(default_clients: None, alice: Any) -> None:
    body = start()
    first, second = signed_in(), signed_in()
    assert enter(first, body["user_code"]).status_code == 303
    assert enter(second, body["user_code"]).status_code == 303
    assert first.post("/oidc/device/confirm", {"action": "deny"}).status_code == 200
    assert second.post("/oidc/device/confirm", {"action": "approve"}).status_code == 400
    assert DeviceGrant.objects.get().status == DeviceGrant.DENIED


def test_confirm_needs_csrf(default_clients: None, alice: Any) -> None:
    body = start()
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    assert client.post("/oidc/device", {"user_code": body["user_code"]}).status_code == 403


# ---- the token endpoint ---------------------------------------------------------------------------
def test_approve_then_the_device_gets_tokens_once(default_clients: None, alice: Any) -> None:
    body = start()
    pending = poll(body["device_code"])
    assert pending.status_code == 400 and error_of(pending) == "authorization_pending"
    done = decide(signed_in(), body["user_code"], "approve")
    assert done.status_code == 200 and b"Device connected" in done.content
    tokens = poll(body["device_code"])
    assert tokens.status_code == 200, tokens.content
    data = json.loads(tokens.content)
    assert data["token_type"] == "Bearer" and data["access_token"] and data["refresh_token"]
    assert set(data["scope"].split()) == set(SCOPE.split())
    info = Client().get("/oidc/userinfo", HTTP_AUTHORIZATION=f"Bearer {data['access_token']}")
    assert info.status_code == 200 and json.loads(info.content)["name"] == "alice"
    # A device code works once (RFC 6749 §10.5 by analogy: single use).
    again = poll_now(body["device_code"])
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    # The sign-in is a token family: revocable from the account page, refreshable meanwhile.
    family = TokenFamily.objects.get(user=alice)
    assert family.application.client_id == "cells-client"
    refreshed = token_request(
        {"grant_type": "refresh_token", "refresh_token": data["refresh_token"], "client_id": "cells-client"}
    )
    assert refreshed.status_code == 200, refreshed.content
    family.revoke()
    refused = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": json.loads(refreshed.content)["refresh_token"],
            "client_id": "cells-client",
        }
    )
    assert refused.status_code == 400 and error_of(refused) == "invalid_grant"


def test_deny_gives_access_denied(default_clients: None, alice: Any) -> None:
    body = start()
    done = decide(signed_in(), body["user_code"], "deny")
    assert done.status_code == 200 and b"Device denied" in done.content
    response = poll(body["device_code"])
    assert response.status_code == 400 and error_of(response) == "access_denied"


def test_polling_errors(default_clients: None, alice: Any) -> None:
    body = start()
    assert error_of(poll(body["device_code"])) == "authorization_pending"
    # RFC 8628 §3.5: polling faster than the interval is slow_down, and the interval grows by 5 s.
    assert error_of(poll(body["device_code"])) == "slow_down"
    assert DeviceGrant.objects.get().interval == 10
    # Another client cannot use (or learn anything about) this device code.
    ClientPolicy.objects.filter(application__client_id="cells-sync").update(allow_device_flow=True)
    assert error_of(poll_now(body["device_code"], "cells-sync")) == "invalid_grant"
    unknown = poll_now("x" * 30)
    assert unknown.status_code == 400 and error_of(unknown) == "invalid_grant"
    missing = token_request({"grant_type": DEVICE_GRANT, "client_id": "cells-client"})
    assert missing.status_code == 400 and error_of(missing) == "invalid_request"
    DeviceGrant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert error_of(poll_now(body["device_code"])) == "expired_token"


def test_device_grant_needs_the_client_policy(default_clients: None, alice: Any) -> None:
    body = start()
    decide(signed_in(), body["user_code"], "approve")
    ClientPolicy.objects.filter(application__client_id="cells-client").update(allow_device_flow=False)
    response = poll(body["device_code"])
    assert response.status_code == 400 and error_of(response) == "unauthorized_client"


def test_discovery_names_the_device_endpoint(db: Any) -> None:
    metadata = json.loads(Client().get("/oidc/.well-known/openid-configuration").content)
    assert metadata["device_authorization_endpoint"] == "http://testserver/oidc/oauth2/device/auth"
    assert DEVICE_GRANT in metadata["grant_types_supported"]


def test_verification_pages_are_secure(default_clients: None, alice: Any) -> None:
    from tests.test_pages import assert_no_inline_code, assert_secure

    body = start()
    client = signed_in()
    for response in (
        client.get("/oidc/device?" + urlencode({"user_code": body["user_code"]})),
        enter(client, "nope"),
    ):
        assert_secure(response)
        assert_no_inline_code(response.content.decode())
    enter(client, body["user_code"])
    page = client.get("/oidc/device/confirm")
    assert_secure(page)
    assert_no_inline_code(page.content.decode())


def test_no_unchecked_device_code_lookup_before_the_validator(settings: Any) -> None:
    # DOT's default pre-token hook looks the device code up with .get() (a 500 for a code that a
    # concurrent poll has just redeemed); the validator's validate_device_code does that job.
    from cells_oidc.conf import oauth2_provider_settings

    assert oauth2_provider_settings(signing_key="unused")["OAUTH_PRE_TOKEN_VALIDATION"] == []
    assert settings.OAUTH2_PROVIDER["OAUTH_PRE_TOKEN_VALIDATION"] == []
