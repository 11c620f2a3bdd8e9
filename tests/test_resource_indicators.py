"""RFC 8707 resource indicators: the requested resources are the access token's audience.

A client names an API with ``resource``; the token's ``aud`` is then that API only (RFC 8707 §2,
RFC 9068 §3), so the site's own API (``CELLS_OIDC_RESOURCE_AUDIENCE``, RFC 9068 §4) refuses it and
an API configured with that audience accepts it. A client may name only the resources its policy
lists (``invalid_target`` otherwise), and a token request narrows within its grant, never widens.
Everything goes through HTTP.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.checks import run_checks
from django.forms import modelform_factory
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import include, path
from oauth2_provider.models import get_access_token_model, get_application_model, get_grant_model

from cells_oidc.decorators import bearer_token_required
from cells_oidc.models import ClientPolicy
from tests.conftest import SCOPE, Browser, basic, code_from, form_post, query, token_request

FILES = "https://files.example/api"
PHOTOS = "https://photos.example/"
ELSEWHERE = "https://evil.example/api"
REDIRECT = "https://rp.example.com/cb"
SITE = "http://testserver"  # CELLS_OIDC_SITE_URL of tests.settings: the default audience
ISSUER = "http://testserver/oidc/"
RS_SECRET = "introspecting-resource-server-0123456789"
STATE = "state-of-the-rp-0123"
SCOPES = "openid profile pydio offline"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@bearer_token_required(scopes=["profile"])
def files_me(request: HttpRequest) -> JsonResponse:
    """An API of another service, protected by the decorator (configured with its audience)."""
    return JsonResponse({"user": request.user.get_username(), "aud": request.auth.claims["aud"]})


urlpatterns = [path("files/me", files_me), path("", include("project.urls"))]

pytestmark = pytest.mark.urls(__name__)


# ---- helpers -----------------------------------------------------------------------------------
@pytest.fixture
def rp(db: Any) -> Any:
    """A public client of the code flow that may name FILES and PHOTOS (and use the device flow)."""
    app = get_application_model().objects.create(
        client_id="rp",
        name="Relying party",
        client_type="public",
        authorization_grant_type="authorization-code",
        client_secret="",
        redirect_uris=REDIRECT,
        skip_authorization=True,
        algorithm="RS256",
    )
    ClientPolicy.objects.create(
        application=app,
        require_pkce=False,
        confirm_existing_session=False,
        allow_device_flow=True,
        allowed_resources=f"{FILES} {PHOTOS}",
    )
    return app


@pytest.fixture
def resource_server(db: Any) -> Any:
    """A confidential client that introspects tokens (RFC 7662)."""
    return get_application_model().objects.create(
        client_id="rs",
        name="Resource server",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=RS_SECRET,
        hash_client_secret=True,
        redirect_uris="",
        algorithm="RS256",
    )


def authorize(browser: Browser, *resources: str, client_id: str = "rp", redirect_uri: str = REDIRECT) -> Any:
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPES if client_id == "rp" else SCOPE),
        ("state", STATE),
    ]
    params += [("resource", value) for value in resources]
    response = browser.http.get("/oidc/oauth2/auth?" + urlencode(params))
    if response.status_code == 302 and "/oidc/login/" in response["Location"]:
        browser.sign_in(query(response["Location"])["next"])
        response = browser.http.get("/oidc/oauth2/auth?" + urlencode(params))
    return response


def post(data: list[tuple[str, str]]) -> Any:
    return Client().post(
        "/oidc/oauth2/token", urlencode(data), content_type="application/x-www-form-urlencoded"
    )


def exchange(code: str, *resources: str) -> Any:
    data = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", "rp"),
    ]
    return post(data + [("resource", value) for value in resources])


def refresh(refresh_token: str, *resources: str) -> Any:
    data = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", "rp")]
    return post(data + [("resource", value) for value in resources])


def tokens_for(browser: Browser, *resources: str) -> dict[str, Any]:
    code = code_from(authorize(browser, *resources), REDIRECT)["code"]
    response = exchange(code)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(path_: str, token: str) -> Any:
    return Client().get(path_, HTTP_AUTHORIZATION=f"Bearer {token}")


def invalid_target(response: Any) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"] == "invalid_target"


# ---- the audience ------------------------------------------------------------------------------
def test_an_allowed_resource_is_the_audience_and_the_sites_api_refuses_the_token(
    rp: Any, alice: Any, browser: Browser, settings: Any
) -> None:
    issued = tokens_for(browser, FILES)
    assert claims(issued["access_token"])["aud"] == FILES  # RFC 9068 §3: exactly the resource
    # The demo's own API expects the site's audience: a token for files.example is not for it.
    response = bearer("/a/user/me", issued["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert "wrong audience" in response["WWW-Authenticate"]
    # So does userinfo (the provider's own resource).
    assert bearer("/oidc/userinfo", issued["access_token"]).status_code == 401
    # ... and the API of files.example, configured with its audience, accepts it.
    assert bearer("/files/me", issued["access_token"]).status_code == 401
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = FILES
    answer = bearer("/files/me", issued["access_token"])
    assert answer.status_code == 200, answer.content
    assert json.loads(answer.content) == {"user": "alice", "aud": FILES}
    # While a token of the site is refused there.
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = [FILES, PHOTOS]
    plain = tokens_for(Browser(), *())
    assert bearer("/files/me", plain["access_token"]).status_code == 401


def test_without_a_resource_the_token_is_for_the_site_as_before(
    rp: Any, alice: Any, browser: Browser
) -> None:
    issued = tokens_for(browser)
    assert claims(issued["access_token"])["aud"] == SITE
    response = bearer("/a/user/me", issued["access_token"])
    assert response.status_code == 200, response.content
    assert bearer("/oidc/userinfo", issued["access_token"]).status_code == 200
    assert bearer("/files/me", issued["access_token"]).status_code == 200  # default audience


def test_several_resources_make_a_list_audience_and_requests_narrow_within_them(
    rp: Any, alice: Any, browser: Browser
) -> None:
    code = code_from(authorize(browser, FILES, PHOTOS), REDIRECT)["code"]
    assert get_grant_model().objects.get(code=code).resource == [FILES, PHOTOS]
    narrowed = exchange(code, PHOTOS)
    assert narrowed.status_code == 200, narrowed.content
    issued = json.loads(narrowed.content)
    assert claims(issued["access_token"])["aud"] == PHOTOS
    # RFC 8707 §2.2: narrowing one access token does not narrow the refresh token.
    again = refresh(issued["refresh_token"])
    assert again.status_code == 200, again.content
    issued = json.loads(again.content)
    assert claims(issued["access_token"])["aud"] == [FILES, PHOTOS]
    only_files = refresh(issued["refresh_token"], FILES)
    assert only_files.status_code == 200, only_files.content
    issued = json.loads(only_files.content)
    assert claims(issued["access_token"])["aud"] == FILES
    assert (
        claims(json.loads(refresh(issued["refresh_token"], PHOTOS).content)["access_token"])["aud"] == PHOTOS
    )


# ---- invalid_target ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "resources", [(ELSEWHERE,), (FILES, ELSEWHERE), (FILES + "/",), ("https://FILES.example/api",)]
)
def test_a_resource_the_client_may_not_name_is_refused_at_the_authorization_endpoint(
    rp: Any, alice: Any, browser: Browser, resources: tuple[str, ...]
) -> None:
    response = authorize(browser, *resources)
    params = code_from(response, REDIRECT)
    assert params["error"] == "invalid_target"
    assert params["state"] == STATE
    assert params["iss"] == ISSUER  # RFC 9207
    assert "code" not in params
    assert not get_grant_model().objects.exists()


def test_a_cells_client_may_name_no_resource(default_clients: None, alice: Any, browser: Browser) -> None:
    # The default policy lists none: every resource is invalid_target, before any sign-in.
    cli = "http://localhost:3000/servers/callback"
    params = code_from(authorize(browser, FILES, client_id="cells-client", redirect_uri=cli), cli)
    assert params["error"] == "invalid_target"
    assert params["iss"] == ISSUER


def test_a_resource_the_client_may_not_name_is_refused_at_the_token_endpoint(
    rp: Any, alice: Any, browser: Browser
) -> None:
    code = code_from(authorize(browser, FILES), REDIRECT)["code"]
    invalid_target(exchange(code, ELSEWHERE))
    # Allowed for the client, but not granted: widening the grant is refused too.
    invalid_target(exchange(code, PHOTOS))
    assert not get_access_token_model().objects.exists()
    # Neither refusal spent the code.
    response = exchange(code)
    assert response.status_code == 200, response.content
    assert claims(json.loads(response.content)["access_token"])["aud"] == FILES


def test_a_code_granted_without_resources_is_for_the_site_only(rp: Any, alice: Any, browser: Browser) -> None:
    code = code_from(authorize(browser), REDIRECT)["code"]
    invalid_target(exchange(code, FILES))
    assert claims(json.loads(exchange(code).content)["access_token"])["aud"] == SITE


@pytest.mark.parametrize("granted", [(FILES,), ()])
def test_a_refresh_cannot_widen_the_grant(
    rp: Any, alice: Any, browser: Browser, granted: tuple[str, ...]
) -> None:
    issued = tokens_for(browser, *granted)
    invalid_target(refresh(issued["refresh_token"], PHOTOS))
    invalid_target(refresh(issued["refresh_token"], *granted, ELSEWHERE))
    # The refused requests did not use up the refresh token.
    response = refresh(issued["refresh_token"])
    assert response.status_code == 200, response.content
    assert claims(json.loads(response.content)["access_token"])["aud"] == (FILES if granted else SITE)


def test_a_resource_withdrawn_from_the_client_is_refused_at_the_next_refresh(
    rp: Any, alice: Any, browser: Browser
) -> None:
    issued = tokens_for(browser, FILES)
    ClientPolicy.objects.filter(application=rp).update(allowed_resources=PHOTOS)
    invalid_target(refresh(issued["refresh_token"]))


# ---- the device flow ---------------------------------------------------------------------------
def test_the_device_flow_follows_the_same_rule(rp: Any, alice: Any, browser: Browser) -> None:
    start = form_post(
        "/oidc/oauth2/device/auth", {"client_id": "rp", "scope": "openid profile", "resource": ELSEWHERE}
    )
    invalid_target(start)
    start = form_post("/oidc/oauth2/device/auth", {"client_id": "rp", "scope": "openid profile"})
    assert start.status_code == 200, start.content
    grant = json.loads(start.content)
    browser.sign_in("/oidc/device")
    assert browser.http.post("/oidc/device", {"user_code": grant["user_code"]}).status_code == 303
    assert browser.http.post("/oidc/device/confirm", {"action": "approve"}).status_code == 200
    body = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "rp"}
    invalid_target(token_request({**body, "resource": ELSEWHERE}))  # the approval is not spent
    response = token_request({**body, "resource": FILES})
    assert response.status_code == 200, response.content
    assert claims(json.loads(response.content)["access_token"])["aud"] == FILES


# ---- introspection -----------------------------------------------------------------------------
def test_introspection_reports_the_audience(
    rp: Any, resource_server: Any, alice: Any, browser: Browser
) -> None:
    issued = tokens_for(browser, FILES, PHOTOS)
    response = form_post(
        "/oidc/oauth2/introspect",
        {"token": issued["access_token"]},
        HTTP_AUTHORIZATION=basic("rs", RS_SECRET),
    )
    assert response.status_code == 200, response.content
    data = json.loads(response.content)
    assert data["active"] is True
    assert data["aud"] == [FILES, PHOTOS]


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "error"),
    [(5, "cells_oidc.E012"), ([FILES, None], "cells_oidc.E012"), ("cells-api", "cells_oidc.W006")],
)
def test_a_malformed_resource_audience_is_reported(settings: Any, value: Any, error: str) -> None:
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = value
    assert error in {message.id for message in run_checks()}


def test_a_well_formed_resource_audience_is_not_reported(settings: Any) -> None:
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = [FILES, PHOTOS]
    ids = {message.id for message in run_checks()}
    assert not ids & {"cells_oidc.E012", "cells_oidc.W006", "cells_oidc.W005"}


def test_a_malformed_audience_setting_refuses_every_token(
    rp: Any, alice: Any, browser: Browser, settings: Any
) -> None:
    issued = tokens_for(browser)
    settings.CELLS_OIDC_RESOURCE_AUDIENCE = 5
    assert bearer("/files/me", issued["access_token"]).status_code == 401


@pytest.mark.parametrize("value", ["not a uri", f"{FILES}#frag", f"{FILES} http://[::1"])
def test_the_policy_form_refuses_what_is_not_a_resource_indicator(rp: Any, value: str) -> None:
    form_class = modelform_factory(ClientPolicy, fields=["allowed_resources"])
    form = form_class(data={"allowed_resources": value}, instance=ClientPolicy.objects.get(application=rp))
    assert not form.is_valid()
    assert "allowed_resources" in form.errors
    form = form_class(
        data={"allowed_resources": f"{FILES} {PHOTOS}"}, instance=ClientPolicy.objects.get(application=rp)
    )
    assert form.is_valid(), form.errors


def test_the_client_credentials_grant_follows_the_same_rule(resource_server: Any) -> None:
    ClientPolicy.objects.create(application=resource_server, allowed_resources=FILES)
    auth = {"HTTP_AUTHORIZATION": basic("rs", RS_SECRET)}
    invalid_target(
        form_post("/oidc/oauth2/token", {"grant_type": "client_credentials", "resource": PHOTOS}, **auth)
    )
    assert not get_access_token_model().objects.exists()
    response = form_post(
        "/oidc/oauth2/token", {"grant_type": "client_credentials", "resource": FILES}, **auth
    )
    assert response.status_code == 200, response.content
    assert claims(json.loads(response.content)["access_token"])["aud"] == FILES
    plain = form_post("/oidc/oauth2/token", {"grant_type": "client_credentials"}, **auth)
    assert claims(json.loads(plain.content)["access_token"])["aud"] == SITE
