"""A narrowed refresh narrows one access token, never the grant (RFC 6749 §6).

"The requested scope MUST NOT include any scope not originally granted by the resource owner,
and if omitted is treated as equal to the scope originally granted"; a new refresh token's
scope "MUST be identical to that of the refresh token included by the client in the request".
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SCOPE, Browser, code_from, token_request

pytestmark = pytest.mark.django_db

CALLBACK = "http://localhost:3000/servers/callback"


@pytest.fixture
def tokens(default_clients: None, alice: Any, browser: Browser) -> dict[str, Any]:
    response = browser.authorize(
        {
            "response_type": "code",
            "client_id": "cells-client",
            "redirect_uri": CALLBACK,
            "scope": SCOPE,
            "state": "a1b2c3d4e5f6g7h8",
        }
    )
    code = code_from(response, CALLBACK)["code"]
    answer = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": "cells-client",
        }
    )
    assert answer.status_code == 200, answer.content
    return json.loads(answer.content)


def refresh(refresh_token: str, scope: str | None = None) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "cells-client"}
    if scope is not None:
        data["scope"] = scope
    return token_request(data)


def granted(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return set(json.loads(response.content)["scope"].split())


def test_a_narrowed_refresh_keeps_the_grant(tokens: dict[str, Any]) -> None:
    narrow = refresh(tokens["refresh_token"], "openid")
    assert granted(narrow) == {"openid"}  # the access token is narrower
    body = json.loads(narrow.content)
    assert body["refresh_token"]  # the offline decision is the original grant's
    # The new refresh token still carries the original scope: pydio may be asked for again.
    again = refresh(body["refresh_token"], "openid pydio")
    assert granted(again) == {"openid", "pydio"}
    # Omitted: the scope originally granted, in full.
    full = refresh(json.loads(again.content)["refresh_token"])
    assert granted(full) == set(SCOPE.split())


def test_a_narrowed_refresh_without_openid_keeps_the_grant(tokens: dict[str, Any]) -> None:
    narrow = refresh(tokens["refresh_token"], "pydio")
    assert granted(narrow) == {"pydio"}
    assert "id_token" not in json.loads(narrow.content)
    back = refresh(json.loads(narrow.content)["refresh_token"], "openid email")
    assert granted(back) == {"openid", "email"}
    assert json.loads(back.content)["id_token"]


def test_a_refresh_never_widens_the_grant(tokens: dict[str, Any]) -> None:
    narrow = refresh(tokens["refresh_token"], "openid")
    current = json.loads(narrow.content)["refresh_token"]
    for scope in ("openid offline_access", "openid admin", "cells_oidc:admin"):
        wider = refresh(current, scope)
        assert wider.status_code == 400
        assert json.loads(wider.content)["error"] == "invalid_scope"
    assert granted(refresh(current)) == set(SCOPE.split())


def test_a_family_from_before_its_scope_was_recorded_refreshes_as_before(tokens: dict[str, Any]) -> None:
    from cells_oidc.models import TokenFamily

    TokenFamily.objects.update(scope="")  # a sign-in from before the scope was kept on it
    narrow = refresh(tokens["refresh_token"], "openid pydio")
    assert granted(narrow) == {"openid", "pydio"}
    # DOT's rule then: the previous access token's scope is the limit.
    current = json.loads(narrow.content)["refresh_token"]
    assert refresh(current, "openid email").status_code == 400


def test_a_device_sign_in_keeps_its_approved_scope(
    default_clients: None, alice: Any, browser: Browser
) -> None:
    from django.test import Client
    from oauth2_provider.models import get_application_model

    from cells_oidc.models import policy_for
    from tests.conftest import FORM

    policy = policy_for(get_application_model().objects.get(client_id="cells-client"))
    policy.allow_device_flow = True
    policy.save()
    device = Client().post(
        "/oidc/oauth2/device/auth", "client_id=cells-client&scope=openid+pydio+offline", content_type=FORM
    )
    assert device.status_code == 200, device.content
    codes = json.loads(device.content)
    browser.sign_in("/oidc/account/")
    assert browser.http.post("/oidc/device", {"user_code": codes["user_code"]}).status_code == 303
    assert browser.http.post("/oidc/device/confirm", {"action": "approve"}).status_code == 200
    answer = token_request(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": codes["device_code"],
            "client_id": "cells-client",
        }
    )
    assert granted(answer) == {"openid", "pydio", "offline"}
    narrow = refresh(json.loads(answer.content)["refresh_token"], "openid")
    assert granted(narrow) == {"openid"}
    assert granted(refresh(json.loads(narrow.content)["refresh_token"], "pydio")) == {"pydio"}
