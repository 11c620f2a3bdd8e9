"""The authorization endpoint over HTTP: redirect URI rules, errors, prompts, confirmation and consent.

Everything goes through Django's test client as a browser would. An error that cannot be sent
back safely is an HTTP 400 page without a ``Location``; an error for a valid client and redirect
URI is a 302 to that URI with ``error``, ``state`` and ``iss`` (RFC 9207).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from oauth2_provider.models import get_application_model, get_grant_model

from cells_oidc.internal import sessions
from cells_oidc.internal.views import authorize
from cells_oidc.models import ClientPolicy
from tests.kit import PASSWORD, SCOPE, Browser, exchange, pkce_pair, query, signed_in, token_request

pytestmark = pytest.mark.django_db

AUTH = "/oidc/oauth2/auth"
LOGIN = "/oidc/login/"
ISS = "http://testserver/oidc/"
STATE = "st4te-0123456789"
SYNC_URI = "http://localhost:3651/servers/callback"
CLI_URI = "http://localhost:3000/servers/callback"
THIRD_URI = "https://app.example.com/callback"
SECRET = "third-party-secret-0123456789"


# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def make_app(db: Any) -> Callable[..., Any]:
    """Register a client (DOT application plus its cells-oidc policy)."""

    def make(
        client_id: str,
        redirect_uris: str,
        *,
        confidential: bool = False,
        skip_authorization: bool = True,
        require_pkce: bool = False,
        confirm_existing_session: bool = True,
        allowed_scopes: str = "",
    ) -> Any:
        app = get_application_model().objects.create(
            client_id=client_id,
            name=f"{client_id} application",
            client_type="confidential" if confidential else "public",
            authorization_grant_type="authorization-code",
            client_secret=SECRET if confidential else "",
            hash_client_secret=confidential,
            redirect_uris=redirect_uris,
            skip_authorization=skip_authorization,
            algorithm="RS256",
        )
        ClientPolicy.objects.create(
            application=app,
            require_pkce=require_pkce,
            confirm_existing_session=confirm_existing_session,
            allowed_scopes=allowed_scopes,
        )
        return app

    return make


@pytest.fixture
def third_party(make_app: Callable[..., Any]) -> Any:
    """A confidential third-party web application: consent is asked."""
    return make_app("third-party", THIRD_URI, confidential=True, skip_authorization=False)


def url(**params: str) -> str:
    return f"{AUTH}?{urlencode(params)}"


def sync_params(**extra: str) -> dict[str, str]:
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "cells-sync",
        "redirect_uri": SYNC_URI,
        "scope": SCOPE,
        "state": STATE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def cli_params(**extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CLI_URI,
        "scope": SCOPE,
        "state": STATE,
    }
    params.update(extra)
    return params


def assert_error_page(response: Any, error: str | None = None) -> None:
    assert response.status_code == 400, (response.status_code, response.get("Location"))
    assert not response.has_header("Location")
    assert response["Cache-Control"] == "no-store"
    if error is not None:
        assert response.context["error"] == error, response.context["error"]


def assert_redirect_error(response: Any, redirect_uri: str, error: str, state: str | None = STATE) -> dict:
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    assert location.startswith(redirect_uri + "?"), location
    params = query(location)
    assert params["error"] == error, params
    assert params["iss"] == ISS
    assert "code" not in params
    if state is None:
        assert "state" not in params
    else:
        assert params["state"] == state
    return params


def assert_code(response: Any, redirect_uri: str, state: str = STATE) -> str:
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    assert location.startswith(redirect_uri + "?"), location
    params = query(location)
    assert "error" not in params, params
    assert params["state"] == state
    assert params["iss"] == ISS
    assert response["Cache-Control"] == "no-store"
    return params["code"]


def is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and urlsplit(response["Location"]).path == LOGIN


def confirm(http: Client, page: Any, *, allow: bool = True, **overrides: str) -> Any:
    """Answer the confirmation or consent page ``page`` like its form would."""
    assert page.status_code == 200, page.content[:300]
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["cells_oidc_step"] = page.context["page"]
    if allow:
        data["allow"] = "on"
    data.update(overrides)
    return http.post(page.wsgi_request.get_full_path(), data)


# ---- fatal errors: an error page, never a redirect -----------------------------------------

SYNC_ATTACKS = [
    "http://localhost.evil.com:3651/servers/callback",
    "http://localhost:3651.evil.com/servers/callback",
    "http://localhost:3651@evil.com/servers/callback",
    "http://evil.com@localhost:3651/servers/callback",
    "http://localhost:3651:@evil.com/servers/callback",
    "http://localhost:3667/servers/callback",  # one past the range
    "http://localhost:3635/servers/callback",  # one before it
    "http://localhost:03651/servers/callback",
    "https://localhost:3651/servers/callback",  # https for http
    "http://127.0.0.1:3651/servers/callback",  # 127.0.0.1 for localhost
    "http://[::1]:3651/servers/callback",
    "http://LOCALHOST:3651/servers/callback",
    "HTTP://localhost:3651/servers/callback",
    "http://localhost:3651/servers/callback/",  # an extra slash
    "http://localhost:3651//servers/callback",
    "http://localhost:3651/servers/callback?x",  # an extra query
    "http://localhost:3651/servers/callback?x=1",
    "http://localhost:3651/servers/callback#frag",  # a fragment
    "http://localhost:3651/servers/callback#",
    "http://localhost:3651\\@evil.com/servers/callback",  # backslash
    "http:\\\\localhost:3651/servers/callback",
    "http://localhost:3651/servers\\callback",
    "http://localhost:3651/servers/%63allback",  # percent-encoded tricks
    "http://localhost:3651/servers%2Fcallback",
    "http://localhost%2eevil.com:3651/servers/callback",
    "http://localhost:3651/servers/callback%23",
    "http://localhost:3651/servers/callback%00",
    "http://localhost:3651/servers/../servers/callback",
    "http://localhost:3651/servers/./callback",
    "//localhost:3651/servers/callback",
    " http://localhost:3651/servers/callback",
    "http://localhost:3651/servers/callback ",
    "http://localhost:3651/servers/callback\t",
    "http://localhost:3651/servers/callbackx",
    "http://localhost:3651/Servers/Callback",
    "http://lоcalhost:3651/servers/callback",  # Cyrillic о
    "http://localhost.:3651/servers/callback",
    "http://localhost:3651",  # registered form but another path? no: see below
    "javascript:alert(1)//http://localhost:3651/servers/callback",
    "data:text/html,hi",
    "https://evil.com/servers/callback",
    "cellsauth://callback",  # another client's URI
    "",
]
# "http://localhost:3651" alone *is* registered for cells-sync (the documented form).
SYNC_ATTACKS.remove("http://localhost:3651")

MOBILE_ATTACKS = [
    "cellsauth://evil",
    "cellsauth://callback.evil",
    "cellsauth://evil@callback",
    "cellsauth://callback/",
    "cellsauth://callback/x",
    "cellsauth://callback?x",
    "cellsauth://callback#x",
    "cellsauth://Callback",
    "CELLSAUTH://callback",
    "cellsauth:callback",
    "cellsauth:/callback",
    "cellsauth://callback:1",
    "cellsauth://testserver.evil.com",
    "cellsauth://serverName",  # the placeholder itself is not a host
    "evilauth://callback",
]


@pytest.mark.parametrize("redirect_uri", SYNC_ATTACKS)
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_unregistered_redirect_uris_get_an_error_page(
    default_clients: None, alice: Any, redirect_uri: str, session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    for prompt in ("", "none"):
        params = sync_params(redirect_uri=redirect_uri)
        if prompt:
            params["prompt"] = prompt
        response = http.get(url(**params))
        assert_error_page(response)
    assert not get_grant_model().objects.exists()


@pytest.mark.parametrize("redirect_uri", MOBILE_ATTACKS)
def test_custom_scheme_lookalikes_get_an_error_page(
    default_clients: None, alice: Any, redirect_uri: str
) -> None:
    http = signed_in(login_page=True)
    params = {
        "response_type": "code",
        "client_id": "cells-mobile",
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": STATE,
    }
    assert_error_page(http.get(url(**params)))
    assert_error_page(Client().get(url(prompt="none", **params)))


def test_registered_custom_scheme_uris_work(default_clients: None, alice: Any) -> None:
    # The positive controls of the lookalikes above: the same request with the real URIs.
    for redirect_uri in ("cellsauth://callback", "cellsauth://testserver"):
        params = {
            "response_type": "code",
            "client_id": "cells-mobile",
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": STATE,
        }
        response = Client().get(url(prompt="none", **params))
        assert_redirect_error(response, redirect_uri, "login_required")


@pytest.mark.parametrize("port", [3636, 3651, 3666])
def test_every_port_of_the_range_is_accepted(default_clients: None, alice: Any, port: int) -> None:
    redirect_uri = f"http://localhost:{port}/servers/callback"
    response = Client().get(url(**sync_params(redirect_uri=redirect_uri, prompt="none")))
    assert_redirect_error(response, redirect_uri, "login_required")


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "nobody"},
        {"client_id": ""},
        {"client_id": "CELLS-SYNC"},
        {"client_id": "cells-sync "},
        {"client_id": None},
    ],
    ids=["unknown", "empty", "case", "trailing-space", "missing"],
)
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_unknown_or_missing_client_gets_an_error_page(
    default_clients: None, alice: Any, params: dict[str, Any], session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    request = sync_params()
    for key, value in params.items():
        if value is None:
            request.pop(key)
        else:
            request[key] = value
    assert_error_page(http.get(url(**request)))
    assert_error_page(http.get(url(prompt="none", **request)))


# ---- errors for a valid client and redirect URI: redirected with error, state and iss -------


REDIRECTED_ERRORS = [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_type": "none"}, "unsupported_response_type"),
    ({"response_type": "CODE"}, "unsupported_response_type"),
    ({"response_type": None}, "invalid_request"),
    ({"scope": "openid unknown"}, "invalid_scope"),
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "s256"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),  # RFC 7636 default plain
    ({"code_challenge": "short"}, "invalid_request"),
    ({"code_challenge": "A" * 42 + "="}, "invalid_request"),
    ({"code_challenge": "A" * 42 + "+"}, "invalid_request"),
    ({"code_challenge": "A" * 44}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),  # cells-sync must use PKCE
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ({"request_uri": "https://evil.example/request.jwt"}, "request_uri_not_supported"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"response_mode": "query.jwt"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"max_age": "ten"}, "invalid_request"),
    ({"max_age": "1.5"}, "invalid_request"),
    ({"max_age": "²"}, "invalid_request"),
    ({"max_age": "١٢"}, "invalid_request"),
    ({"max_age": "9" * 40}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"prompt": "create"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "none consent"}, "invalid_request"),
    ({"prompt": "LOGIN"}, "invalid_request"),
    ({"claims": "{not json"}, "invalid_request"),
    ({"claims": "[1, 2]"}, "invalid_request"),
    ({"claims": "5"}, "invalid_request"),
    ({"nonce": "n" * 256}, "invalid_request"),
    ({"resource": "not a uri"}, "invalid_target"),
    ({"resource": "https://api.example.com/#frag"}, "invalid_target"),
]


def _apply(params: dict[str, str], changes: dict[str, Any]) -> dict[str, str]:
    params = dict(params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


@pytest.mark.parametrize(("changes", "error"), REDIRECTED_ERRORS, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_bad_requests_for_a_valid_redirect_uri_are_redirected_with_the_error(
    default_clients: None, alice: Any, changes: dict[str, Any], error: str, session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    response = http.get(url(**_apply(sync_params(), changes)))
    # Refused before any login page: a bad request must never lead the user on.
    assert_redirect_error(response, SYNC_URI, error)
    assert not get_grant_model().objects.exists()


def test_the_error_redirect_without_state_has_no_state(default_clients: None) -> None:
    params = _apply(sync_params(), {"state": None, "response_type": "token"})
    assert_redirect_error(Client().get(url(**params)), SYNC_URI, "unsupported_response_type", state=None)


def test_scope_outside_the_clients_allowed_scopes(make_app: Callable[..., Any], alice: Any) -> None:
    make_app("restricted", "https://rp.example.com/cb", allowed_scopes="openid profile")
    params = {
        "response_type": "code",
        "client_id": "restricted",
        "redirect_uri": "https://rp.example.com/cb",
        "state": STATE,
    }
    http = signed_in(login_page=True)
    for scope in ("openid email", "openid offline", "openid pydio profile"):
        response = http.get(url(scope=scope, **params))
        assert_redirect_error(response, "https://rp.example.com/cb", "invalid_scope")
    # The allowed ones are fine.
    http = Client()
    response = http.get(url(scope="openid profile", **params))
    assert is_login_redirect(response)


def test_a_client_without_the_code_grant_is_unauthorized(make_app: Callable[..., Any], alice: Any) -> None:
    app = make_app("machine", "https://rp.example.com/cb", confidential=True)
    get_application_model().objects.filter(pk=app.pk).update(authorization_grant_type="client-credentials")
    response = signed_in(login_page=True).get(
        url(response_type="code", client_id="machine", redirect_uri="https://rp.example.com/cb", state=STATE)
    )
    assert_redirect_error(response, "https://rp.example.com/cb", "unauthorized_client")


# ---- malformed requests: an error page, never a 500 ---------------------------------------


MALFORMED_QUERIES = [
    "client_id=cells-sync&client_id=cells-client",
    "redirect_uri=http%3A%2F%2Flocalhost%3A3651%2Fservers%2Fcallback&redirect_uri=https%3A%2F%2Fevil.com",
    "state=a&state=b",
    "scope=openid&scope=pydio",
    "response_type=code&response_type=token",
    "code_challenge=x&code_challenge=y",
    "prompt=none&prompt=login",
    "state=" + "x" * 5000,
    "nonce=" + "x" * 3000,
    "id_token_hint=" + "x" * 20000,
    "state=a%00b",
    "client_id=cells%00-sync",
    "state=%01",
    "state=%7F",
    "x" * 100 + "=1",
]


@pytest.mark.parametrize("extra", MALFORMED_QUERIES, ids=lambda v: v[:40])
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_malformed_requests_get_an_error_page(
    default_clients: None, alice: Any, extra: str, session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    base = dict(sync_params())
    for key in {part.split("=", 1)[0] for part in extra.split("&")}:
        base.pop(key, None)
    response = http.get(f"{AUTH}?{urlencode(base)}&{extra}")
    assert_error_page(response, "invalid_request")
    # The same as a POSTed authorization request.
    response = http.post(AUTH, f"{urlencode(base)}&{extra}", content_type="application/x-www-form-urlencoded")
    assert_error_page(response, "invalid_request")


@pytest.mark.parametrize(
    "extra",
    [
        "state=%ff%fe",
        "state=%zz",
        "state=%",
        "state=%E2%80%AE",
        "state=%F0%9F%98%80",
        "state=a;client_id=evil",
        "state=%26client_id%3Devil",
        "state=<script>",
        "ui_locales=%ff",
        "login_hint=%00",
        "display=%zz",
        "unknown=%ff",
        "a%00b=1",
        "claims=%7B%22id_token%22%3A%7B%22email%22%3Anull%7D%7D",
        "id_token_hint=a.b.c",
        "prompt=+",
        "prompt=login%0b",
        "prompt=%6Cogin",
        "max_age=0",
        "max_age=999999999",
        "resource=https%3A%2F%2Fapi.example.com%2F",
        "resource=https%3A%2F%2Fa.example.com&resource=https%3A%2F%2Fb.example.com",
    ],
)
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_odd_inputs_never_reach_a_500_or_another_uri(
    default_clients: None, alice: Any, extra: str, session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    base = sync_params()
    for key in {part.split("=", 1)[0] for part in extra.split("&")}:
        base.pop(key, None)
    response = http.get(f"{AUTH}?{urlencode(base)}&{extra}")
    assert response.status_code in (200, 302, 400), response.status_code
    if response.status_code == 302:
        location = response["Location"]
        assert location.startswith(SYNC_URI + "?") or urlsplit(location).path == LOGIN, location
    else:
        assert not response.has_header("Location")


# ---- an omitted redirect_uri -----------------------------------------------------------------


def test_redirect_uri_may_be_omitted_for_a_single_concrete_registration_without_openid(
    make_app: Callable[..., Any], alice: Any
) -> None:
    make_app("single", "https://rp.example.com/cb", confirm_existing_session=False)
    http = signed_in(login_page=True)
    response = http.get(url(response_type="code", client_id="single", scope="pydio offline", state=STATE))
    code = assert_code(response, "https://rp.example.com/cb")
    # RFC 6749 §4.1.3: then the token request may omit it too.
    tokens = token_request({"grant_type": "authorization_code", "code": code, "client_id": "single"})
    assert tokens.status_code == 200, tokens.content
    assert "id_token" not in json.loads(tokens.content)


@pytest.mark.parametrize(
    "scope",
    ["openid", "openid pydio", "pydio openid offline", None],
    ids=["openid", "two", "three", "default"],
)
def test_openid_requests_must_name_the_redirect_uri(
    make_app: Callable[..., Any], alice: Any, scope: str | None
) -> None:
    make_app("single", "https://rp.example.com/cb", confirm_existing_session=False)
    params = {"response_type": "code", "client_id": "single", "state": STATE}
    if scope is not None:
        params["scope"] = scope
    for http in (Client(), signed_in(login_page=True)):
        assert_error_page(http.get(url(**params)), "invalid_request")
        # A broken request without redirect_uri is not redirected to the default one either.
        assert_error_page(http.get(url(**{**params, "response_type": "token"})))


@pytest.mark.parametrize(
    ("client_id", "registration"),
    [
        ("cells-client", None),  # several URIs
        ("cells-sync", None),  # port ranges
        ("cells-mobile", None),  # serverName + callback
        ("ranged", "http://localhost:[3636-3637]/cb"),
        ("loopback-any-port", "http://127.0.0.1/cb"),
        ("two", "https://rp.example.com/a https://rp.example.com/b"),
        ("broken", "https://rp.example.com/a http://[oops"),
    ],
)
def test_redirect_uri_may_not_be_omitted_when_ambiguous(
    default_clients: None, make_app: Callable[..., Any], alice: Any, client_id: str, registration: str | None
) -> None:
    if registration:
        app = make_app(client_id, "https://rp.example.com/a")
        # Written past the model's validation, as a careless migration or raw SQL could.
        get_application_model().objects.filter(pk=app.pk).update(redirect_uris=registration)
    params = {"response_type": "code", "client_id": client_id, "scope": "pydio", "state": STATE}
    assert_error_page(signed_in(login_page=True).get(url(**params)))
    assert_error_page(Client().get(url(prompt="none", **params)))


def test_a_server_name_registration_is_a_default_only_with_one_site_url(
    make_app: Callable[..., Any], alice: Any, settings: Any
) -> None:
    make_app("server-name", "https://serverName/cb", confirm_existing_session=False)
    params = {"response_type": "code", "client_id": "server-name", "scope": "pydio", "state": STATE}
    # One public site URL: serverName stands for exactly one URI.
    assert_code(signed_in(login_page=True).get(url(**params)), "http://testserver/cb")
    settings.CELLS_OIDC_SITE_URL = "http://testserver https://cells.example.com"
    assert_error_page(signed_in(login_page=True).get(url(**params)))


# ---- prompt, max_age, id_token_hint ----------------------------------------------------------


def test_prompt_none_without_a_session_answers_login_required(default_clients: None) -> None:
    response = Client().get(url(**sync_params(prompt="none")))
    assert_redirect_error(response, SYNC_URI, "login_required")


def test_prompt_none_with_a_session_needing_confirmation_answers_interaction_required(
    default_clients: None, alice: Any
) -> None:
    response = signed_in(login_page=True).get(url(**sync_params(prompt="none")))
    assert_redirect_error(response, SYNC_URI, "interaction_required")


def test_prompt_none_with_a_session_needing_consent_answers_consent_required(
    third_party: Any, alice: Any
) -> None:
    params = {"response_type": "code", "client_id": "third-party", "redirect_uri": THIRD_URI, "state": STATE}
    response = signed_in(login_page=True).get(url(scope="openid email", prompt="none", **params))
    assert_redirect_error(response, THIRD_URI, "consent_required")


def test_prompt_none_succeeds_when_nothing_needs_asking(make_app: Callable[..., Any], alice: Any) -> None:
    make_app("silent", "https://rp.example.com/cb", confirm_existing_session=False)
    params = {
        "response_type": "code",
        "client_id": "silent",
        "redirect_uri": "https://rp.example.com/cb",
        "scope": "openid",
        "state": STATE,
        "prompt": "none",
    }
    assert_code(signed_in(login_page=True).get(url(**params)), "https://rp.example.com/cb")


def test_prompt_login_forces_a_new_login_then_continues(
    default_clients: None, alice: Any, time_machine: Any
) -> None:
    time_machine.move_to(time.time())
    http = signed_in(login_page=True)
    before = http.session[sessions.AUTH_TIME_KEY]
    sid_before = http.session[sessions.SID_KEY]
    params = cli_params(prompt="login")
    response = http.get(url(**params))
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    assert "prompt" not in query(next_url)  # or the user would be sent round again
    login_page = http.get(response["Location"])
    assert login_page.status_code == 200
    time_machine.shift(60)
    response = http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    assert response.status_code == 303
    assert response["Location"] == next_url
    # Signed in just now for this request: no "Continue as" page.
    code = assert_code(http.get(next_url), CLI_URI)
    assert http.session[sessions.AUTH_TIME_KEY] > before
    assert http.session[sessions.SID_KEY] != sid_before
    tokens = json.loads(exchange(code, CLI_URI, "cells-client").content)
    claims = _id_token_claims(tokens["id_token"])
    assert claims["auth_time"] == http.session[sessions.AUTH_TIME_KEY]


def test_prompt_login_keeps_the_other_prompt_values(default_clients: None, alice: Any) -> None:
    response = signed_in(login_page=True).get(url(**cli_params(prompt="login consent")))
    assert is_login_redirect(response)
    assert query(query(response["Location"])["next"])["prompt"] == "consent"


def test_prompt_login_without_a_session_goes_to_login_once(default_clients: None, alice: Any) -> None:
    browser = Browser()
    response = browser.http.get(url(**cli_params(prompt="login")))
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    assert "prompt" not in query(next_url)
    response = browser.sign_in(next_url)
    assert_code(browser.http.get(response["Location"]), CLI_URI)


def test_a_fresh_login_marker_is_only_for_its_own_request(default_clients: None, alice: Any) -> None:
    http = Client()
    response = http.get(url(**cli_params()))
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    # Another request than the one the login was for gets the confirmation page.
    other = http.get(url(**cli_params(state="another-state-123")))
    assert other.status_code == 200 and other.context["page"] == "confirm"
    # And the marker is gone after being looked at once.
    assert http.get(next_url).status_code == 200


def test_max_age_exceeded_forces_a_login(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    session = http.session
    session[sessions.AUTH_TIME_KEY] = int(time.time()) - 600
    session.save()
    response = http.get(url(**cli_params(max_age="300")))
    assert is_login_redirect(response)
    # With prompt=none the answer is login_required.
    response = http.get(url(**cli_params(max_age="300", prompt="none")))
    assert_redirect_error(response, CLI_URI, "login_required")
    # A max_age the session satisfies goes on (to the confirmation page: a pre-existing session).
    page = http.get(url(**cli_params(max_age="3600")))
    assert page.status_code == 200 and page.context["page"] == "confirm"


def test_max_age_zero_always_logs_in_again_then_continues(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    session = http.session
    session[sessions.AUTH_TIME_KEY] = int(time.time()) - 5
    session.save()
    response = http.get(url(**cli_params(max_age="0")))
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    assert_code(http.get(next_url), CLI_URI)


def _id_token_claims(id_token: str) -> dict[str, Any]:
    from cells_oidc.internal import tokens

    return tokens.verify(id_token, typ=tokens.ID_TOKEN_TYP)


def _id_token_of(username: str, make_user: Callable[..., Any]) -> str:
    make_user(username)
    browser = Browser()
    response = browser.authorize(cli_params(), username=username)
    code = query(response["Location"])["code"]
    return json.loads(exchange(code, CLI_URI, "cells-client").content)["id_token"]


def test_id_token_hint_of_another_user(default_clients: None, alice: Any, make_user: Any) -> None:
    bobs_token = _id_token_of("bob", make_user)
    http = signed_in("alice", login_page=True)
    # prompt=none: the signed-in user is not the one named.
    response = http.get(url(**cli_params(prompt="none", id_token_hint=bobs_token)))
    assert_redirect_error(response, CLI_URI, "login_required")
    # Interactive: sign in again (as the hinted user, or another).
    response = http.get(url(**cli_params(id_token_hint=bobs_token)))
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    # Signing in as alice again does not satisfy a hint naming bob: an error, not a loop.
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    assert_redirect_error(http.get(next_url), CLI_URI, "login_required")
    # Signing in as bob does.
    http.get(url(**cli_params(id_token_hint=bobs_token)))
    http.post(LOGIN, {"username": "bob", "password": PASSWORD, "next": next_url})
    assert_code(http.get(next_url), CLI_URI)


def test_id_token_hint_of_the_signed_in_user_and_invalid_hints(
    default_clients: None, alice: Any, make_user: Any
) -> None:
    alices_token = _id_token_of("alice", make_user=lambda name: None)
    http = signed_in("alice", login_page=True)
    page = http.get(url(**cli_params(id_token_hint=alices_token)))
    assert page.status_code == 200 and page.context["page"] == "confirm"
    forged = alices_token[:-4] + ("AAAA" if not alices_token.endswith("AAAA") else "BBBB")
    for hint in (forged, "not.a.jwt", "x"):
        response = http.get(url(**cli_params(id_token_hint=hint)))
        assert_redirect_error(response, CLI_URI, "invalid_request")


# ---- a POSTed authorization request ----------------------------------------------------------


def test_posted_authorization_request_works(default_clients: None, alice: Any) -> None:
    browser = Browser()
    response = browser.http.post(AUTH, cli_params())
    assert response.status_code == 303
    assert query(response["Location"]) == cli_params()
    # From here it is the same request as a GET.
    response = browser.http.get(response["Location"])
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    browser.sign_in(next_url)
    code = assert_code(browser.http.get(next_url), CLI_URI)
    assert exchange(code, CLI_URI, "cells-client").status_code == 200


def test_posted_authorization_request_with_a_bad_redirect_gets_the_error_page(
    default_clients: None, alice: Any
) -> None:
    response = signed_in(login_page=True).post(
        AUTH, cli_params(redirect_uri="https://evil.example/cb"), follow=True
    )
    assert_error_page(response)


# ---- confirmation ("Continue as") and consent ------------------------------------------------


def test_fresh_login_continues_without_confirmation(default_clients: None, alice: Any) -> None:
    http = Client()
    response = http.get(url(**cli_params()))
    assert is_login_redirect(response)
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    assert_code(http.get(next_url), CLI_URI)


@pytest.mark.parametrize("client_id", ["cells-sync", "cells-client", "cells-mobile"])
def test_a_pre_existing_session_gets_the_continue_as_page(
    default_clients: None, alice: Any, client_id: str
) -> None:
    redirect_uri = {"cells-sync": SYNC_URI, "cells-client": CLI_URI, "cells-mobile": "cellsauth://callback"}[
        client_id
    ]
    params = sync_params() if client_id == "cells-sync" else cli_params()
    params.update(client_id=client_id, redirect_uri=redirect_uri)
    http = signed_in(login_page=True)
    page = http.get(url(**params))
    assert page.status_code == 200
    assert page.context["page"] == "confirm"
    assert b"Continue as alice" in page.content
    assert page["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page["Content-Security-Policy"]
    assert page["Cache-Control"] == "no-store"
    assert not get_grant_model().objects.exists()
    code = assert_code(confirm(http, page), redirect_uri)
    assert get_grant_model().objects.get(code=code).application.client_id == client_id


def test_the_confirmation_can_be_turned_off_per_client(default_clients: None, alice: Any) -> None:
    ClientPolicy.objects.filter(application__client_id="cells-client").update(confirm_existing_session=False)
    assert_code(signed_in(login_page=True).get(url(**cli_params())), CLI_URI)
    # The other clients still ask.
    assert signed_in(login_page=True).get(url(**sync_params())).status_code == 200


def test_a_confidential_first_party_client_is_not_asked(make_app: Callable[..., Any], alice: Any) -> None:
    make_app("portal", "https://portal.example.com/cb", confidential=True)
    params = {"response_type": "code", "client_id": "portal", "scope": "openid", "state": STATE}
    assert_code(
        signed_in(login_page=True).get(url(redirect_uri="https://portal.example.com/cb", **params)),
        "https://portal.example.com/cb",
    )


def test_cancel_on_the_continue_as_page_is_access_denied(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**sync_params()))
    response = confirm(http, page, allow=False)
    assert_redirect_error(response, SYNC_URI, "access_denied")
    assert not get_grant_model().objects.exists()


def test_select_account_shows_the_account(make_app: Callable[..., Any], alice: Any) -> None:
    make_app("silent", "https://rp.example.com/cb", confirm_existing_session=False)
    params = {
        "response_type": "code",
        "client_id": "silent",
        "redirect_uri": "https://rp.example.com/cb",
        "scope": "openid",
        "state": STATE,
    }
    http = signed_in(login_page=True)
    page = http.get(url(prompt="select_account", **params))
    assert page.status_code == 200 and page.context["page"] == "confirm"
    assert b"Sign in with another account" in page.content


def test_third_party_client_gets_a_consent_page(third_party: Any, alice: Any) -> None:
    params = {
        "response_type": "code",
        "client_id": "third-party",
        "redirect_uri": THIRD_URI,
        "scope": "openid email",
        "state": STATE,
    }
    # Even right after signing in: consent is another question than identity.
    http = Client()
    response = http.get(url(**params))
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    page = http.get(next_url)
    assert page.status_code == 200
    assert page.context["page"] == "consent"
    assert b"Allow" in page.content and b"Deny" in page.content
    assert b"Know your email address" in page.content
    code = assert_code(confirm(http, page), THIRD_URI)
    tokens = exchange(code, THIRD_URI, "third-party", client_secret=SECRET)
    assert tokens.status_code == 200, tokens.content
    assert json.loads(tokens.content)["scope"] == "openid email"


def test_deny_on_the_consent_page_is_access_denied(third_party: Any, alice: Any) -> None:
    params = {
        "response_type": "code",
        "client_id": "third-party",
        "redirect_uri": THIRD_URI,
        "scope": "openid",
    }
    http = signed_in(login_page=True)
    page = http.get(url(state=STATE, **params))
    assert_redirect_error(confirm(http, page, allow=False), THIRD_URI, "access_denied")
    # Without state, none comes back.
    page = http.get(url(**params))
    assert_redirect_error(confirm(http, page, allow=False), THIRD_URI, "access_denied", state=None)


def test_prompt_consent_asks_a_first_party_client_too(default_clients: None, alice: Any) -> None:
    http = Client()
    response = http.get(url(**cli_params(prompt="consent")))
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    page = http.get(next_url)
    assert page.status_code == 200 and page.context["page"] == "consent"


# ---- the confirmation/consent POST cannot be tampered with ----------------------------------


def test_tampered_fields_on_the_consent_post_are_ignored(
    default_clients: None, third_party: Any, alice: Any
) -> None:
    http = signed_in(login_page=True)
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "third-party",
        "redirect_uri": THIRD_URI,
        "scope": "openid",
        "state": STATE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = http.get(url(**params))
    response = confirm(
        http,
        page,
        redirect_uri="https://evil.example/cb",
        client_id="cells-client",
        code_challenge="A" * 43,
        code_challenge_method="plain",
        scope="openid email pydio offline",
        response_type="token",
    )
    code = assert_code(response, THIRD_URI)
    grant = get_grant_model().objects.get(code=code)
    assert grant.application.client_id == "third-party"
    assert grant.redirect_uri == THIRD_URI
    assert (grant.code_challenge, grant.code_challenge_method) == (challenge, "S256")
    assert grant.scope == "openid"
    tokens = exchange(code, THIRD_URI, "third-party", client_secret=SECRET, code_verifier=verifier)
    assert tokens.status_code == 200, tokens.content


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "a:b:c", "x" * 40000, "eyJxIjoiY2xpZW50X2lkPWV2aWwifQ:1abc:sig"],
    ids=["empty", "garbage", "colons", "huge", "forged"],
)
def test_a_tampered_signed_request_gets_the_error_page(default_clients: None, alice: Any, value: str) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**sync_params()))
    response = confirm(http, page, authorization=value)
    assert_error_page(response, "invalid_request")
    assert not get_grant_model().objects.exists()


def test_a_signed_request_altered_by_one_character_is_refused(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**sync_params()))
    value = page.context["form"].initial["authorization"]
    altered = value[:5] + ("A" if value[5] != "A" else "B") + value[6:]
    assert_error_page(confirm(http, page, authorization=altered))


def test_a_signed_request_of_another_user_or_session_is_refused(
    default_clients: None, alice: Any, make_user: Any
) -> None:
    make_user("bob")
    alice_http = signed_in("alice", login_page=True)
    page = alice_http.get(url(**sync_params()))
    alices_value = page.context["form"].initial["authorization"]
    # Posted from bob's session: refused.
    bob_http = signed_in("bob", login_page=True)
    bob_page = bob_http.get(url(**sync_params()))
    assert_error_page(confirm(bob_http, bob_page, authorization=alices_value))
    # Posted by alice after she signed in again (a new session id): refused too.
    alice_http.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert_error_page(confirm(alice_http, page))
    assert not get_grant_model().objects.exists()


def test_an_old_confirmation_page_expires(
    default_clients: None, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**sync_params()))
    monkeypatch.setattr(authorize, "CONFIRM_MAX_AGE", -1)
    assert_error_page(confirm(http, page))


def test_the_consent_post_validates_the_registration_again(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**cli_params()))
    app = get_application_model().objects.get(client_id="cells-client")
    app.redirect_uris = "http://localhost:3636"
    app.save()
    assert_error_page(confirm(http, page))
    assert not get_grant_model().objects.exists()


def test_the_consent_post_requires_a_signed_in_user(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**cli_params()))
    http.post("/oidc/oauth2/sessions/logout")  # whatever the logout answers, end the session
    http.logout()
    response = confirm(http, page)
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert is_login_redirect(response)
    assert not get_grant_model().objects.exists()


def test_the_consent_post_requires_csrf(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True, enforce_csrf_checks=True)
    page = http.get(url(**sync_params()))
    assert page.status_code == 200
    # Without the token (a cross-site form): refused, nothing issued.
    response = confirm(http, page)
    assert response.status_code == 403
    assert not get_grant_model().objects.exists()
    # With a wrong token: refused.
    response = confirm(http, page, csrfmiddlewaretoken="x" * 64)
    assert response.status_code == 403
    assert not get_grant_model().objects.exists()
    # With the page's token: the code.
    token = page.context["csrf_token"]
    assert_code(confirm(http, page, csrfmiddlewaretoken=str(token)), SYNC_URI)


def test_a_post_without_the_form_is_a_posted_authorization_request(default_clients: None, alice: Any) -> None:
    # No cells_oidc_step field: treated as a (CSRF-free) authorization request, not a consent.
    http = signed_in(login_page=True, enforce_csrf_checks=True)
    response = http.post(AUTH, {**cli_params(), "allow": "on"})
    assert response.status_code == 303
    assert urlsplit(response["Location"]).path == AUTH
    assert not get_grant_model().objects.exists()


def test_the_step_field_alone_does_not_get_a_code(default_clients: None, alice: Any) -> None:
    http = signed_in(login_page=True)
    for data in (
        {"cells_oidc_step": "confirm", "allow": "on"},
        {"cells_oidc_step": "confirm", "allow": "on", **cli_params()},
    ):
        response = http.post(url(**cli_params()), data)
        assert_error_page(response, "invalid_request")
    assert not get_grant_model().objects.exists()


# ---- DOT's own code paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query_string",
    [
        "prompt=login",
        "prompt=login&prompt=login",
        "prompt=%20login%20",
        "prompt=login+select_account",
        "prompt=create",
        "approval_prompt=auto",
    ],
)
@pytest.mark.parametrize("session", [False, True], ids=["anonymous", "signed-in"])
def test_prompt_paths_inherited_from_dot_never_fail(
    default_clients: None, alice: Any, query_string: str, session: bool
) -> None:
    http = signed_in(login_page=True) if session else Client()
    response = http.get(f"{url(**cli_params())}&{query_string}")
    assert response.status_code in (200, 302, 400)
    if response.status_code == 302:
        location = response["Location"]
        assert location.startswith(CLI_URI + "?") or urlsplit(location).path == LOGIN, location


def test_other_methods_are_refused(default_clients: None) -> None:
    for method in ("put", "delete", "patch", "options"):
        response = getattr(Client(), method)(url(**cli_params()))
        assert response.status_code == 405


def test_a_login_whose_redirect_was_not_followed_soon_does_not_confirm_later(
    default_clients: None, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = Client()
    response = http.get(url(**cli_params()))
    next_url = query(response["Location"])["next"]
    http.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": next_url})
    monkeypatch.setattr(sessions, "FRESH_MAX_AGE", -1)
    page = http.get(next_url)
    assert page.status_code == 200 and page.context["page"] == "confirm"


# ---- remembered consent and the page headers ------------------------------------------------


def _third_party_params(scope: str = "openid email", **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "third-party",
        "redirect_uri": THIRD_URI,
        "scope": scope,
        "state": STATE,
        **extra,
    }


def test_an_allowed_consent_is_remembered_for_the_same_scopes(
    third_party: Any, alice: Any, make_user: Any
) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**_third_party_params()))
    assert page.context["page"] == "consent"
    assert_code(confirm(http, page), THIRD_URI)
    # The same or fewer scopes: no page (a confidential client: no "Continue as" either).
    assert_code(http.get(url(**_third_party_params())), THIRD_URI)
    assert_code(http.get(url(**_third_party_params("openid"))), THIRD_URI)
    assert_code(http.get(url(**_third_party_params(prompt="none"))), THIRD_URI)
    # A new scope is asked for, and so is everything with prompt=consent.
    assert http.get(url(**_third_party_params("openid email profile"))).context["page"] == "consent"
    assert http.get(url(**_third_party_params(prompt="consent"))).context["page"] == "consent"
    # Another user is asked.
    make_user("bob")
    assert signed_in("bob", login_page=True).get(url(**_third_party_params())).context["page"] == "consent"


def test_a_denied_consent_is_not_remembered(third_party: Any, alice: Any) -> None:
    http = signed_in(login_page=True)
    page = http.get(url(**_third_party_params()))
    assert_redirect_error(confirm(http, page, allow=False), THIRD_URI, "access_denied")
    assert http.get(url(**_third_party_params())).context["page"] == "consent"


def test_consent_is_not_remembered_with_a_zero_lifetime(third_party: Any, alice: Any, settings: Any) -> None:
    settings.CELLS_OIDC_CONSENT_LIFETIME = 0
    http = signed_in(login_page=True)
    assert_code(confirm(http, http.get(url(**_third_party_params()))), THIRD_URI)
    assert http.get(url(**_third_party_params())).context["page"] == "consent"


def test_a_public_third_party_client_still_gets_the_continue_as_page(
    make_app: Callable[..., Any], alice: Any
) -> None:
    # RFC 8252 §8.6: a remembered consent does not prove that the app asking now is the one
    # the user consented to (Hydra does not skip consent for public clients either).
    make_app("native", "com.example.app:/cb", skip_authorization=False)
    params = {"response_type": "code", "client_id": "native", "redirect_uri": "com.example.app:/cb"}
    http = signed_in(login_page=True)
    page = http.get(url(scope="openid", state=STATE, **params))
    assert page.context["page"] == "consent"
    assert_code(confirm(http, page), "com.example.app:/cb")
    page = http.get(url(scope="openid", state=STATE, **params))
    assert page.status_code == 200 and page.context["page"] == "confirm"


@pytest.mark.parametrize(
    ("params", "source"),
    [
        (_third_party_params(), "https://app.example.com"),
        (cli_params(), "http://localhost:3000"),
        (cli_params(client_id="cells-mobile", redirect_uri="cellsauth://callback"), "cellsauth:"),
    ],
)
def test_the_page_lets_its_form_redirect_to_the_client_only(
    default_clients: None, third_party: Any, alice: Any, params: dict[str, str], source: str
) -> None:
    page = signed_in(login_page=True).get(url(**params))
    assert page.status_code == 200
    csp = page["Content-Security-Policy"]
    assert f"form-action 'self' {source}" in csp
    assert "frame-ancestors 'none'" in csp
    assert page["X-Frame-Options"] == "DENY"
    assert page["Cache-Control"] == "no-store"
    # Never a Referer to another origin (same-origin keeps Chromium's Origin for the CSRF check).
    assert page["Referrer-Policy"] in ("no-referrer", "same-origin")
