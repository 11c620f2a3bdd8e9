"""The test kit: the plain helpers every test module shares (fixtures live in ``tests/conftest.py``).

One of each: a person's browser (``Browser``), a signed-in session (``signed_in``), a complete
sign-in that returns the token response (``sign_in``), a code exchange (``exchange``), a refresh
(``refresh``), and the small pieces they are built from. Every call goes through HTTP (the Django
test client), as a Cells client or a person would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client

PASSWORD = "correct horse battery staple"
SCOPE = "openid email profile pydio offline"
FORM = "application/x-www-form-urlencoded"
ISSUER = "http://testserver/oidc/"
LOGIN = "/oidc/login/"
TOKEN = "/oidc/oauth2/token"

#: A registered redirect URI of each default client (cells_oidc/fixtures/default_clients.json).
OOB = "http://testserver/oauth2/oob"
CLI_CALLBACK = "http://localhost:3000/servers/callback"
SYNC_CALLBACK = "http://localhost:3640/servers/callback"
MOBILE_CALLBACK = "cellsauth://callback"
FRONTEND_CALLBACK = "http://testserver/auth/callback"
REDIRECT_URIS = {
    "cells-client": OOB,
    "cells-sync": SYNC_CALLBACK,
    "cells-mobile": MOBILE_CALLBACK,
    "cells-frontend": FRONTEND_CALLBACK,
}
#: The default clients that sign in with PKCE (RFC 7636) unless told otherwise.
PKCE_CLIENTS = frozenset({"cells-sync", "cells-frontend"})


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def basic(client_id: str, secret: str = "") -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Browser:
    """A user's browser: the Django test client plus the login and consent clicks."""

    http: Client = field(default_factory=Client)

    def sign_in(self, next_url: str, username: str = "alice", password: str = PASSWORD) -> Any:
        return self.http.post(LOGIN, {"username": username, "password": password, "next": next_url})

    def authorize(self, params: dict[str, str], *, username: str = "alice") -> Any:
        """Follow the authorization request as a person would: sign in when asked, confirm when asked."""
        url = "/oidc/oauth2/auth?" + urlencode(params)
        response = self.http.get(url)
        if response.status_code == 302 and urlsplit(response["Location"]).path == LOGIN:
            login = self.http.get(response["Location"])
            assert login.status_code == 200
            response = self.sign_in(query(response["Location"])["next"], username=username)
            assert response.status_code == 303, response.content
            response = self.http.get(response["Location"])
        if response.status_code == 200 and b"cells_oidc_step" in response.content:
            form = response.context["form"]
            data = {name: value for name, value in form.initial.items() if value is not None}
            data.update({"allow": "on", "cells_oidc_step": response.context["page"]})
            response = self.http.post(url, data)
        return response


def code_from(response: Any, redirect_uri: str) -> dict[str, str]:
    """The parameters of the redirect to ``redirect_uri`` that carries the code (RFC 6749 §4.1.2)."""
    assert response.status_code == 302, getattr(response, "content", b"")[:500]
    location = response["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return query(location)


def form_post(path: str, data: dict[str, str], **headers: str) -> Any:
    """POST ``data`` form-urlencoded, as OAuth clients do (RFC 6749 §4.1.3)."""
    return Client().post(path, urlencode(data), content_type=FORM, **headers)


def token_request(data: dict[str, str], **headers: str) -> Any:
    return form_post(TOKEN, data, **headers)


def _split(extra: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``HTTP_*`` keywords are request headers; the rest are form parameters."""
    headers = {k: v for k, v in extra.items() if k.startswith("HTTP_")}
    return {k: v for k, v in extra.items() if not k.startswith("HTTP_")}, headers


def exchange(code: str, redirect_uri: str | None, client_id: str | None, **extra: str) -> Any:
    """Redeem ``code`` at the token endpoint (RFC 6749 §4.1.3); a ``None`` parameter is left out."""
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if client_id is not None:
        data["client_id"] = client_id
    params, headers = _split(extra)
    return token_request({**data, **params}, **headers)


def refresh(client_id: str | None, refresh_token: str, scope: str | None = None, **extra: str) -> Any:
    """Spend ``refresh_token`` at the token endpoint (RFC 6749 §6); a ``None`` parameter is left out."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client_id is not None:
        data["client_id"] = client_id
    if scope is not None:
        data["scope"] = scope
    params, headers = _split(extra)
    return token_request({**data, **params}, **headers)


def ok(response: Any) -> dict[str, Any]:
    """The JSON body of a 200 answer."""
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def sign_in(
    browser: Browser,
    *,
    client_id: str = "cells-client",
    redirect_uri: str | None = None,
    scope: str = SCOPE,
    username: str = "alice",
    state: str = "s" * 16,
    nonce: str | None = None,
    pkce: bool | None = None,
    **token_extra: str,
) -> dict[str, Any]:
    """A complete sign-in: authorize, log in (and confirm) in ``browser``, exchange the code.

    The redirect URI defaults to one registered for the client (``REDIRECT_URIS``), PKCE to the
    clients that require it (``PKCE_CLIENTS``); ``token_extra`` goes to the token request
    (``HTTP_*`` as headers). Returns the token response plus ``_code`` and
    ``_authorization_response`` (the parameters of the redirect, RFC 6749 §4.1.2, RFC 9207).
    """
    redirect_uri = redirect_uri or REDIRECT_URIS[client_id]
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
    }
    if nonce is not None:
        params["nonce"] = nonce
    verifier = None
    if pkce if pkce is not None else client_id in PKCE_CLIENTS:
        verifier, challenge = pkce_pair()
        params.update(code_challenge=challenge, code_challenge_method="S256")
    result = code_from(browser.authorize(params, username=username), redirect_uri)
    assert result["iss"] == ISSUER  # RFC 9207 §2
    if verifier is not None:
        token_extra = {"code_verifier": verifier, **token_extra}
    body = ok(exchange(result["code"], redirect_uri, client_id, **token_extra))
    return {**body, "_code": result["code"], "_authorization_response": result}


def signed_in(username: str = "alice", *, login_page: bool = False, **client_kwargs: Any) -> Client:
    """A browser with a provider session that existed before any authorization request.

    ``login_page`` signs in through the login form (CSRF token, the view's throttles and events);
    otherwise through Django's ``Client.login``.
    """
    http = Client(**client_kwargs)
    if login_page:
        csrf = str(http.get(LOGIN).context["csrf_token"])
        response = http.post(LOGIN, {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf})
        assert response.status_code == 303, response.content[:300]
    else:
        assert http.login(username=username, password=PASSWORD)
    return http


def bearer_get(path: str, token: str | None = None, **extra: Any) -> Any:
    """GET ``path`` with ``token`` as a bearer token (RFC 6750 §2.1), no cookies."""
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().get(path, **extra)


def clear_of_window_edges(seconds: float) -> None:
    """Return at a moment with at least ``seconds`` left before the next whole minute: the
    throttles count in fixed windows of whole minutes here (docs/security.md), and a test that
    counts events up to a limit must not have them split between two windows."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)
