"""Fixtures and helpers: the default clients, users, and a Cells client's view of the flow."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.core.signals import setting_changed
from django.test import Client

PASSWORD = "correct horse battery staple"
SCOPE = "openid email profile pydio offline"


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


def pkce_pair() -> tuple[str, str]:
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
        return self.http.post("/oidc/login/", {"username": username, "password": password, "next": next_url})

    def authorize(self, params: dict[str, str], *, username: str = "alice") -> Any:
        """Follow the authorization request as a person would: sign in when asked, confirm when asked."""
        url = "/oidc/oauth2/auth?" + urlencode(params)
        response = self.http.get(url)
        if response.status_code == 302 and urlsplit(response["Location"]).path == "/oidc/login/":
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
    assert response.status_code == 302, getattr(response, "content", b"")[:500]
    location = response["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return query(location)


@pytest.fixture
def browser() -> Browser:
    return Browser()


FORM = "application/x-www-form-urlencoded"


def form_post(path: str, data: dict[str, str], **headers: str) -> Any:
    """POST ``data`` form-urlencoded, as OAuth clients do (RFC 6749 §4.1.3)."""
    return Client().post(path, urlencode(data), content_type=FORM, **headers)


def token_request(data: dict[str, str], **headers: str) -> Any:
    return form_post("/oidc/oauth2/token", data, **headers)
