"""Adversarial sweep of every HTTP entry point of the app and of the demo site.

Each endpoint gets families of hostile values (missing, empty and repeated parameters, 100 KB
values, NUL and other control characters, invalid UTF-8, percent-encoding garbage, RTL and
fullwidth text, JSON/multipart/XML bodies where a form is expected, every method, malformed
``Authorization`` headers, odd ids in paths, the Host names ALLOWED_HOSTS accepts), from an
anonymous browser, a signed-in one and with real tokens of a real sign-in. Every answer must:

- never be a server error (status < 500) nor show a traceback;
- from an API endpoint: be ``no-store``, and a JSON error when it is an error;
- from the authorization, logout and login endpoints: redirect only to a redirect URI the
  client registered (RFC 6749 §3.1.2.2, §10.15; RP-Initiated Logout §3) or to the site itself;
- when it is an error: write nothing (no code, token, family or grant appears).

The hostile values are drawn with a seeded generator: every run sends the same requests. Each
sweep collects every failure before asserting, so one run lists them all.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.core import signing
from django.test import Client

from tests.kit import (
    CLI_CALLBACK,
    PASSWORD,
    SCOPE,
    Browser,
    basic,
    code_from,
    exchange,
    pkce_pair,
    sign_in,
    token_request,
)

pytestmark = pytest.mark.django_db

SEED = 6749
FORM = "application/x-www-form-urlencoded"
TOKEN = "/oidc/oauth2/token"
AUTHORIZE = "/oidc/oauth2/auth"
LOGOUT = "/oidc/oauth2/sessions/logout"
SECRET = "resource-server-secret-0123456789"

Pairs = list[tuple[str, str]]
Check = Callable[[Any], "str | None"]

# ---- hostile material ----------------------------------------------------------------------------
#: Values put in place of a parameter. Lone surrogates end up as invalid UTF-8 once encoded.
HOSTILE: list[str] = [
    "",
    " ",
    "\t",
    "%",
    "%zz",
    "%00",
    "%ff%fe",
    "%%32%35",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[31m\x7f",
    "\r\nSet-Cookie: pwned=1",
    "\u202eevil\u202c",
    "\U0001f600" * 8,
    "ｃｅｌｌｓ－ｃｌｉｅｎｔ",
    "e\u0301" * 40,
    "\ufeff",
    "\uffff",
    "\u2028",
    "\ud800",
    "A" * 100_000,
    "<script>alert(1)</script>",
    "'\"><img src=x onerror=alert(1)>",
    "../../../../etc/passwd",
    "javascript:alert(1)",
    "data:text/html,<b>x</b>",
    "//evil.example",
    "http://evil.example/",
    "http://evil.example@localhost:3000/servers/callback",
    "http://localhost:3000@evil.example/servers/callback",
    "http://localhost:3000/servers/callback/../../evil",
    "http://localhost:3000/servers/callback#frag",
    "http://[::1",
    "http://localhost:99999/",
    "-1",
    "0",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    "null",
    "[]",
    '{"a":',
    '{"id_token": {"email": null}}',
    "true",
    "+",
    "&",
    "=",
    "?#",
    "\\",
    "${jndi:ldap://x}",
    "none login",
    "openid " * 500,
]

#: Values of URI-valued parameters (redirect_uri, resource, post_logout_redirect_uri, next, ...),
#: all sent every time: near misses of the registered URIs and URIs Python's parser refuses.
HOSTILE_URIS: list[str] = [
    "http://[::1",
    "https://api.example]/",
    "http://h:99999/",
    "http://h:-1/",
    "http://evil.example/",
    "//evil.example/servers/callback",
    "///evil.example",
    "http://localhost:3000@evil.example/servers/callback",
    "http://evil.example@localhost:3000/servers/callback",
    "http://localhost:3000\\@evil.example/servers/callback",
    "http://LOCALHOST:3000/servers/callback",
    "http://localhost:03000/servers/callback",
    "http://localhost:3000/servers/callback?x=1",
    "http://localhost:3000/servers/callback/",
    "http://localhost:3000/servers/callback%2F..%2F..%2Fevil",
    "http://localhost:3000/servers/callback\x00",
    "http://127.0.0.1:3000/servers/callback",
    "http://[::1]:3000/servers/callback",
    "http://localhost:3637/servers/callback",
    "http://localhost:3667/servers/callback",
    "https://localhost:3000/servers/callback",
    "cellsauth://callback/../x",
    "cellsauth:callback",
    "CELLSAUTH://callback",
    "http://serverName/oauth2/oob",
    "http://servername/auth/callback",
    "http://testserver.evil.example/auth/callback",
    "javascript://localhost:3000/%0aalert(1)",
    "https://app.example/cb?next=https://evil.example",
    "https://app.example/cb#",
    "https://app.example.evil/cb",
    "http://testserver/",
    "http://testserver",
]
URI_KEYS = frozenset({"redirect_uri", "resource", "post_logout_redirect_uri", "next", "request_uri"})
#: JSON nested about as deep as Python's decoder goes (OpenID Connect Core §5.5 ``claims``).
DEEP_CLAIMS = ['{"id_token": {"x": ' + "[" * depth + "]" * depth + "}}" for depth in (850, 903, 950, 4000)]

#: Raw query strings (bytes as they could arrive on the wire).
RAW_QUERIES: list[bytes] = [
    b"%",
    b"%zz=1",
    b"a=%ff%fe",
    b"\xff\xfe=\xc3\x28",
    b"=&&=&",
    b"x=" + b"A" * 100_000,
    b"%00=%00",
    b";;;",
    b"a[]=1&a[]=2",
    b"client_id=cells-client&client_id=cells-sync",
    b"scope=openid%C0%80",
    b"\x00",
    b"&".join(b"a%d=1" % i for i in range(1500)),  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
]

_MULTIPART = (
    b'--X\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nauthorization_code\r\n'
    b'--X\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n\x00\xff\r\n--X--\r\n'
)
#: Raw bodies: (content type, bytes).
RAW_BODIES: list[tuple[str, bytes]] = [
    (FORM, b"\xff\xfe\x00"),
    (FORM, b"%"),
    (FORM, b"a=%zz&b=%"),
    (FORM, b"=&=&&"),
    (FORM, b"x=" + b"A" * 100_000),
    (FORM, b"a=" + b"&a=" * 2000),
    (FORM, b"client_id=%C0%80&grant_type=\xc3\x28"),
    (FORM + "; charset=latin-1", b"client_id=\xe9t\xe9"),
    (FORM + "; charset=no-such-charset", b"client_id=x"),
    ("application/json", b'{"grant_type": "authorization_code", "code": ["x"], "client_id": 1}'),
    ("application/json", b'{"broken'),
    ("application/json", b"[" * 5000),
    ("multipart/form-data; boundary=X", _MULTIPART),
    ("multipart/form-data; boundary=X", b"--X\r\ngarbage"),
    ("multipart/form-data", b"no boundary at all"),
    (
        "application/xml",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
    ),
    ("text/plain", b"grant_type=authorization_code&code=x"),
    ("", b"grant_type=refresh_token&refresh_token=x"),
]

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "post"]


def _b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


#: Authorization header values (latin-1 strings, as WSGI hands them over). Two header lines
#: arrive joined with a comma.
AUTHORIZATION: list[str] = [
    "Basic",
    "Basic ",
    "Basic !!!not base64!!!",
    "Basic " + _b64("no-colon-here"),
    "Basic " + _b64("cells-client:") + "=",
    "Basic " + _b64(b"\xff\xfe:\xff"),
    "Basic " + _b64("%zz:%"),
    "Basic " + _b64("\x00:\x00"),
    "Basic " + _b64(":"),
    "Basic " + _b64("cells-client:wrong"),
    "Basic " + "A" * 10_000,
    "Basic " + _b64("a" * 6000 + ":b"),
    "Bearer",
    "Bearer ",
    "Bearer a b c",
    "Bearer " + "A" * 10_240,
    "Bearer \x00",
    "Bearer " + "é".encode().decode("latin-1"),
    "Bearer abc, Bearer def",
    "Basic " + _b64("cells-client:") + ", Bearer abc",
    "Digest username=x, realm=y",
    "bearer  x",
    "   ",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
]

#: Origin header values (CORS is answered per registered origin, RFC 6454 §7).
ORIGINS = [
    "null",
    "http://localhost:3636",
    "http://localhost:3636/",
    "http://LOCALHOST:3636",
    "http://localhost:3667",
    "http://[::1",
    "http://localhost:99999",
    "http://localhost:-1",
    "http://evil.example",
    "http://testserver",
    "http://localhost:3636, http://evil.example",
    "a" * 10_000,
    "\x00",
    "http://user@localhost:3636",
    "é".encode().decode("latin-1"),
]
#: Cookie header values: forged sessions and CSRF tokens, broken syntax.
COOKIES = [
    "sessionid=" + "A" * 40,
    "sessionid=\x00; csrftoken=\x00",
    "csrftoken=" + "x" * 10_000,
    "sessionid=; sessionid=; =;;",
    "sessionid=%ff%fe",
    '"unclosed=1',
]

#: Host headers that ALLOWED_HOSTS (testserver, 127.0.0.1, localhost) accepts, and one it refuses.
HOSTS = [
    "testserver",
    "TESTSERVER",
    "testserver.",
    "localhost:8000",
    "127.0.0.1:80",
    "localhost:0",
    "evil.example",
]

#: Parameter names no endpoint expects.
HOSTILE_KEYS = ["", "\x00", "a" * 300, "ｓｃｏｐｅ", "client_id[]", "__proto__", "\u202escope"]


def encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Form-encode ``pairs`` (lone surrogates become invalid UTF-8 on purpose)."""
    return urlencode(list(pairs), encoding="utf-8", errors="surrogatepass").encode("ascii")


def mutations(
    base: Pairs, rng: random.Random, *, optional: Sequence[tuple[str, str]] = (), per_key: int = 6
) -> Iterator[tuple[str, Pairs]]:
    """``(label, pairs)``: ``base`` with one parameter missing, empty, repeated or hostile."""
    keys = list(dict.fromkeys(k for k, _ in base))
    for key in keys:
        rest = [(k, v) for k, v in base if k != key]
        value = next(v for k, v in base if k == key)
        yield f"{key} missing", rest
        yield f"{key} empty", [*rest, (key, "")]
        yield f"{key} repeated", [*base, (key, value)]
        yield f"{key} repeated hostile", [*base, (key, rng.choice(HOSTILE))]
    for key in dict.fromkeys([*keys, *(k for k, _ in optional)]):
        rest = [(k, v) for k, v in base if k != key]
        values = rng.sample(HOSTILE, per_key) + (HOSTILE_URIS if key in URI_KEYS else [])
        values += DEEP_CLAIMS if key == "claims" else []
        for value in values:
            yield f"{key}={value[:30]!r}", [*rest, (key, value)]
    for key, value in optional:
        yield f"with {key}", [*base, (key, value)]
    for key in HOSTILE_KEYS:
        yield f"key {key[:20]!r}", [*base, (key, "x")]


# ---- the sweep -----------------------------------------------------------------------------------
@dataclass
class Sweep:
    """Sends requests, runs the checks on each answer and collects every failure."""

    failures: list[str] = field(default_factory=list)
    sent: int = 0

    def send(
        self,
        client: Client,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        body: bytes = b"",
        content_type: str = FORM,
        meta: dict[str, str] | None = None,
        checks: Sequence[Check] = (),
        note: str = "",
    ) -> Any:
        extra = dict(meta or {})
        if query:
            extra["QUERY_STRING"] = query.decode("latin-1")
        where = f"{method} {path}?{query[:100]!r} body={body[:100]!r} {note[:120]}"
        self.sent += 1
        try:
            response = client.generic(method, path, body, content_type=content_type, **extra)
        except Exception as exc:  # noqa: BLE001 - every exception is a finding
            self.failures.append(f"{where}: raised {type(exc).__name__}: {str(exc)[:200]}")
            return None
        problems = []
        if response.status_code >= 500:
            problems.append(f"answered {response.status_code}")
        if b"Traceback" in response.content:
            problems.append("shows a traceback")
        for check in checks:
            problem = check(response)
            if problem:
                problems.append(problem)
        if problems:
            self.failures.append(f"{where}: {'; '.join(problems)}")
        return response

    def assert_clean(self) -> None:
        assert not self.failures, f"{len(self.failures)} of {self.sent} requests failed:\n" + "\n".join(
            self.failures[:40]
        )


def oauth_json(response: Any) -> str | None:
    """RFC 6749 §5.1, §5.2: no-store on every answer; errors are JSON objects with ``error``.

    A CORS preflight (204, no body) is not cacheable anyway (RFC 9110 §9.3.7).
    """
    if response.status_code != 204 and "no-store" not in response.get("Cache-Control", ""):
        return f"{response.status_code} without Cache-Control: no-store"
    if response.status_code < 400:
        return None
    if not response.get("Content-Type", "").startswith("application/json"):
        return f"{response.status_code} error is {response.get('Content-Type')!r}, not JSON"
    if response.content:
        try:
            body = json.loads(response.content)
        except ValueError:
            return "error body is not JSON"
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return f"error body without an error code: {response.content[:100]!r}"
    return None


def rest_json(response: Any) -> str | None:
    """The bearer API under /a/: no-store on every answer; errors are JSON objects."""
    if "no-store" not in response.get("Cache-Control", ""):
        return f"{response.status_code} without Cache-Control: no-store"
    if response.status_code >= 400 and response.content:
        if not response.get("Content-Type", "").startswith("application/json"):
            return f"{response.status_code} error is {response.get('Content-Type')!r}, not JSON"
        try:
            body = json.loads(response.content)
        except ValueError:
            return "error body is not JSON"
        if not isinstance(body, dict):
            return "error body is not a JSON object"
    return None


def own_page(location: str) -> bool:
    """A page of this site: a local path, or an absolute URL of the configured site."""
    if "\\" in location or any(ord(c) < 0x20 for c in location):
        return False
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        # A relative reference (RFC 3986 §4.2) resolves on this origin; "//host" does not.
        return not location.startswith("//")
    return parts.scheme == "http" and parts.netloc == "testserver"


#: What the provider appends to a redirect URI (RFC 6749 §4.1.2, RFC 9207, RP-Initiated Logout §3).
ADDED_PARAMETERS = {"code", "state", "iss", "error", "error_description", "error_uri"}


def registered_target(location: str, client_ids: Iterable[str], uris_field: str) -> bool:
    """Whether ``location`` (less what the provider added) is registered by one of ``client_ids``."""
    from oauth2_provider.models import get_application_model

    from cells_oidc.conf import app_settings
    from cells_oidc.internal import redirects

    parts = urlsplit(location)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ADDED_PARAMETERS]
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    applications = get_application_model().objects.filter(client_id__in=[c for c in client_ids if c])
    return any(
        redirects.redirect_uri_allowed(base, getattr(app, uris_field), app_settings.SITE_URLS)
        for app in applications
    )


def redirects_only_to(client_ids: Iterable[str], uris_field: str = "redirect_uris") -> Check:
    ids = list(client_ids)

    def check(response: Any) -> str | None:
        location = response.get("Location")
        if location is None or own_page(location) or registered_target(location, ids, uris_field):
            return None
        return f"redirects to an unregistered URI {location[:200]!r}"

    return check


def stays_on_site(response: Any) -> str | None:
    location = response.get("Location")
    if location is None or own_page(location):
        return None
    return f"redirects off the site to {location[:200]!r}"


def state_counts() -> dict[str, int]:
    """How many rows of each kind of issued credential exist (one query)."""
    from django.db import connection
    from oauth2_provider.models import (
        get_access_token_model,
        get_device_grant_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    from cells_oidc.models import PersonalAccessToken, TokenFamily

    models = {
        "grant": get_grant_model(),
        "access": get_access_token_model(),
        "refresh": get_refresh_token_model(),
        "id_token": get_id_token_model(),
        "family": TokenFamily,
        "device": get_device_grant_model(),
        "pat": PersonalAccessToken,
    }
    quote = connection.ops.quote_name
    sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(m._meta.db_table)})" for m in models.values())
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    return dict(zip(models, row, strict=True))


def writes_nothing_unless(success: Callable[[Any], bool], kinds: Iterable[str]) -> Check:
    """A check (run after the request) that no row of ``kinds`` appeared unless ``success``."""
    kinds = list(kinds)
    before = {k: v for k, v in state_counts().items() if k in kinds}

    def check(response: Any) -> str | None:
        after = {k: v for k, v in state_counts().items() if k in kinds}
        if success(response):
            return None
        grown = {k: after[k] - before[k] for k in kinds if after[k] > before[k]}
        return f"{response.status_code} but wrote {grown}" if grown else None

    return check


def ok(response: Any) -> bool:
    return response.status_code == 200


def sends_code(response: Any) -> bool:
    location = response.get("Location") or ""
    return response.status_code == 302 and "code" in dict(parse_qsl(urlsplit(location).query))


def has_session(client: Client) -> bool:
    return "_auth_user_id" in client.session


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


@pytest.fixture
def sweep() -> Sweep:
    return Sweep()


@pytest.fixture
def clients(default_clients: None, alice: Any, db: Any) -> Any:
    """The default clients plus a third-party one (consent page) and a confidential resource server."""
    from django.core.cache import cache
    from oauth2_provider.models import get_application_model

    cache.clear()  # no rate limit or slow_down left over from an earlier test

    from cells_oidc.models import ClientPolicy

    model = get_application_model()
    third = model.objects.create(
        client_id="third-party",
        name="Third party \u202eppa",
        client_type=model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=model.GRANT_AUTHORIZATION_CODE,
        client_secret="third-party-secret",
        redirect_uris="https://app.example/cb",
        post_logout_redirect_uris="https://app.example/bye",
        skip_authorization=False,
        algorithm="RS256",
    )
    ClientPolicy.objects.create(application=third, require_pkce=False)
    model.objects.create(
        client_id="files-api",
        name="Files API",
        client_type=model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=model.GRANT_CLIENT_CREDENTIALS,
        client_secret=SECRET,
    )


@pytest.fixture
def browser_in(clients: None) -> Browser:
    """A browser signed in as alice."""
    browser = Browser()
    assert browser.sign_in("/oidc/account/").status_code == 303
    return browser


def cli_params(**extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "cells-client",
        "redirect_uri": CLI_CALLBACK,
        "scope": SCOPE,
        "state": "st4te-of-the-cli",
        **extra,
    }


#: Redeem a code of cells-client (RFC 6749 §4.1.3).
cli_exchange = partial(exchange, redirect_uri=CLI_CALLBACK, client_id="cells-client")


@pytest.fixture
def real_tokens(browser_in: Browser) -> dict[str, Any]:
    return sign_in(browser_in, redirect_uri=CLI_CALLBACK)


# ---- 1. transport garbage on every entry point -------------------------------------------------
#: (path, kind): "oauth" API endpoints (RFC 6749 JSON errors), "rest" (the bearer API), "authorize"
#: and "logout" (redirects checked against registrations), "page" (redirects stay on the site).
ENTRY_POINTS: list[tuple[str, str]] = [
    ("/oidc/", "page"),
    ("/oidc/.well-known/openid-configuration", "page"),
    ("/oidc/.well-known/openid-configuration/", "page"),
    ("/oidc/.well-known/jwks.json", "page"),
    (AUTHORIZE, "authorize"),
    (TOKEN, "oauth"),
    ("/oidc/oauth2/revoke", "oauth"),
    ("/oidc/oauth2/introspect", "oauth"),
    ("/oidc/userinfo", "oauth"),
    ("/oidc/oauth2/device/auth", "oauth"),
    (LOGOUT, "logout"),
    ("/oidc/login/", "page"),
    ("/oidc/logged-out/", "page"),
    ("/oidc/device", "page"),
    ("/oidc/device/confirm", "page"),
    ("/oidc/account/", "page"),
    ("/oidc/account/apps/00000000-0000-0000-0000-000000000000/revoke", "page"),
    ("/oidc/account/consents/1/withdraw", "page"),
    ("/oidc/account/sessions/1/end", "page"),
    ("/oidc/account/tokens/new", "page"),
    ("/oidc/account/tokens/1/revoke", "page"),
    ("/oidc/brand.css", "page"),
    ("/oauth2/oob", "page"),
    ("/oauth/oob", "page"),
    ("/a/user/me", "rest"),
    ("/a/tokens", "rest"),
    ("/a/tokens/1", "rest"),
    ("/a/personal-tokens", "rest"),
    ("/a/personal-tokens/1", "rest"),
    ("/a/openapi.json", "page"),
    ("/a/docs", "page"),
    ("/", "page"),
    ("/auth/callback", "page"),
]


def checks_for(kind: str, query: bytes = b"", body: bytes = b"") -> list[Check]:
    """The checks of an answer of an entry point of ``kind`` (run after the request)."""
    sent = [
        (k, v)
        for raw in (query, body)
        for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    ]
    client_ids = [v for k, v in sent if k == "client_id"]
    checks: list[Check] = []
    if kind == "oauth":
        checks.append(oauth_json)
    elif kind == "rest":
        checks.append(rest_json)
    elif kind == "authorize":
        checks.append(redirects_only_to(client_ids))
    elif kind == "logout":
        checks.append(redirects_only_to(client_ids or ["cells-frontend"], "post_logout_redirect_uris"))
    else:
        checks.append(stays_on_site)
    checks.append(
        writes_nothing_unless(lambda r: sends_code(r) or ok(r), ["grant", "access", "refresh", "family"])
    )
    return checks


def garbage_requests(path: str) -> Iterator[dict[str, Any]]:
    """Every method, raw query, raw body and Authorization header, for ``path``."""
    for method in METHODS:
        yield {"method": method}
    for query in RAW_QUERIES:
        yield {"method": "GET", "query": query}
    for content_type, body in RAW_BODIES:
        yield {"method": "POST", "body": body, "content_type": content_type}
    for content_type, body in RAW_BODIES[::4]:
        yield {"method": "PUT", "body": body, "content_type": content_type}
    for header in AUTHORIZATION:
        yield {"method": "GET", "meta": {"HTTP_AUTHORIZATION": header}}
        yield {
            "method": "POST",
            "body": b"client_id=cells-client&token=x&grant_type=refresh_token&refresh_token=x",
            "meta": {"HTTP_AUTHORIZATION": header},
        }
    for origin in ORIGINS:
        yield {"method": "POST", "body": b"client_id=cells-sync&token=x", "meta": {"HTTP_ORIGIN": origin}}
        yield {
            "method": "OPTIONS",
            "meta": {"HTTP_ORIGIN": origin, "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"},
        }
    for cookie in COOKIES:
        yield {"method": "GET", "meta": {"HTTP_COOKIE": cookie}}
        yield {"method": "POST", "body": b"a=b", "meta": {"HTTP_COOKIE": cookie}}
    yield {"method": "GET", "meta": {"HTTP_X_REQUEST_ID": "\x00" * 10, "HTTP_USER_AGENT": "A" * 100_000}}


#: Entry points whose answer depends on the browser session (the API ones take no session).
SESSION_ENTRY_POINTS = [(p, k) for p, k in ENTRY_POINTS if k in ("authorize", "logout", "page")]


@pytest.mark.parametrize(
    ("path", "kind", "who"),
    [(p, k, "anonymous") for p, k in ENTRY_POINTS] + [(p, k, "signed in") for p, k in SESSION_ENTRY_POINTS],
    ids=[f"{p}-anonymous" for p, _ in ENTRY_POINTS] + [f"{p}-signed-in" for p, _ in SESSION_ENTRY_POINTS],
)
def test_entry_points_survive_transport_garbage(
    clients: None, sweep: Sweep, path: str, kind: str, who: str
) -> None:
    browser = Browser()
    if who == "signed in":
        assert browser.sign_in("/").status_code == 303
    for request in garbage_requests(path):
        request = {"query": b"", "body": b"", **request}
        sweep.send(
            browser.http, path=path, checks=checks_for(kind, request["query"], request["body"]), **request
        )
        if who == "signed in" and not has_session(browser.http):
            browser.sign_in("/")  # a logout answered: sign in again for the next request
    sweep.assert_clean()


def path_variants(path: str) -> list[str]:
    return [
        path.rstrip("/") if path.endswith("/") else path + "/",
        path + "%00",
        path + "%2F..%2F",
        path.upper(),
        "/" + path,
        path.replace("/", "//"),
        path + "/..;/",
        path + "‮",
        path + "%ff",
    ]


def test_entry_point_path_variants(clients: None, sweep: Sweep, browser_in: Browser) -> None:
    for path, _kind in ENTRY_POINTS:
        for variant in path_variants(path):
            for method in ("GET", "POST"):
                for http in (Client(), browser_in.http):
                    sweep.send(
                        http,
                        method,
                        variant,
                        body=b"a=b" if method == "POST" else b"",
                        checks=[stays_on_site],
                    )
    sweep.assert_clean()


# ---- 2. the authorization endpoint, parameter by parameter --------------------------------------
def authorization_bases() -> dict[str, Pairs]:
    _verifier, challenge = pkce_pair()
    pkce = [("code_challenge", challenge), ("code_challenge_method", "S256")]
    common = [("response_type", "code"), ("scope", SCOPE), ("state", "st4te-0123456789")]
    return {
        "cells-client": [*common, ("client_id", "cells-client"), ("redirect_uri", CLI_CALLBACK)],
        "cells-sync": [
            *common,
            ("client_id", "cells-sync"),
            ("redirect_uri", "http://localhost:3636/servers/callback"),
            *pkce,
        ],
        "cells-mobile": [*common, ("client_id", "cells-mobile"), ("redirect_uri", "cellsauth://callback")],
        "cells-frontend": [
            *common,
            ("client_id", "cells-frontend"),
            ("redirect_uri", "http://testserver/auth/callback"),
            ("nonce", "n0nce"),
            *pkce,
        ],
        "third-party": [
            *common,
            ("client_id", "third-party"),
            ("redirect_uri", "https://app.example/cb"),
        ],
    }


def optional_authorization_parameters(id_token: str) -> list[tuple[str, str]]:
    return [
        ("prompt", "none"),
        ("prompt", "login"),
        ("prompt", "consent"),
        ("prompt", "select_account"),
        ("max_age", "0"),
        ("id_token_hint", id_token),
        ("claims", '{"userinfo": {"email": null}}'),
        ("resource", "https://api.example/files"),
        ("response_mode", "fragment"),
        ("login_hint", "alice"),
        ("ui_locales", "fr-CA"),
        ("acr_values", "urn:x"),
        ("request", "eyJhbGciOiJub25lIn0.e30."),
        ("request_uri", "https://evil.example/r"),
        ("display", "popup"),
        ("nonce", "x" * 300),
        ("code_challenge_method", "plain"),
    ]


@pytest.mark.parametrize("client_id", list(authorization_bases()))
def test_authorization_endpoint_parameters(
    clients: None, sweep: Sweep, rng: random.Random, real_tokens: dict[str, Any], client_id: str
) -> None:
    base = authorization_bases()[client_id]
    optional = optional_authorization_parameters(real_tokens["id_token"])
    anonymous, browser = Client(), Browser()
    assert browser.sign_in("/").status_code == 303
    for label, pairs in mutations(base, rng, optional=optional, per_key=4):
        ids = [v for k, v in pairs if k == "client_id"]
        for http in (anonymous, browser.http):
            checks = [
                redirects_only_to(ids),
                writes_nothing_unless(sends_code, ["grant", "family", "access", "refresh"]),
            ]
            sweep.send(http, "GET", AUTHORIZE, query=encode(pairs), checks=checks, note=label)
        if rng.random() < 0.2:  # OpenID Connect Core §3.1.2.1: the same request as a form POST
            checks = [redirects_only_to(ids), writes_nothing_unless(sends_code, ["grant", "family"])]
            sweep.send(browser.http, "POST", AUTHORIZE, body=encode(pairs), checks=checks, note=label)
        if not has_session(browser.http):
            browser.sign_in("/")
    sweep.assert_clean()


# ---- 3. the confirmation and consent forms -------------------------------------------------------
def confirmation_form(browser: Browser, pairs: Pairs) -> tuple[str, dict[str, str]]:
    """The page (confirm/consent) shown for the authorization request ``pairs`` and its form fields."""
    response = browser.http.get(f"{AUTHORIZE}?{encode(pairs).decode()}")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    form = response.context["form"]
    fields = {name: str(value) for name, value in form.initial.items() if value is not None}
    fields["csrfmiddlewaretoken"] = response.context["csrf_token"]
    return response.context["page"], fields


def forged(browser: Browser, query: str, page: str = "confirm", **payload: Any) -> str:
    """A form value signed with the site's key (what only the server can make): tests that the POST
    validates the request inside it again instead of trusting it."""
    from cells_oidc.internal import sessions
    from cells_oidc.internal.views.authorize import SIGNING_SALT

    data: dict[str, Any] = {
        "q": query,
        "p": page,
        "u": str(browser.http.session["_auth_user_id"]),
        "s": browser.http.session[sessions.SID_KEY],
    }
    data.update(payload)
    return signing.dumps(data.get("raw", data), salt=SIGNING_SALT, compress=True)


@pytest.mark.parametrize("client_id", ["cells-client", "third-party"])
def test_confirmation_and_consent_forms(
    clients: None, sweep: Sweep, rng: random.Random, client_id: str
) -> None:
    from cells_oidc.internal.views.authorize import STEP_FIELD

    browser = Browser()
    assert browser.sign_in("/").status_code == 303
    request = authorization_bases()[client_id]
    if client_id == "third-party":
        request.append(("prompt", "consent"))  # asked every time, not only until the first "Allow"
    # The sign-in itself was the confirmation: a second request gets the page.
    browser.http.get(f"{AUTHORIZE}?{encode(request).decode()}")
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = browser.http.cookies
    form = [
        (STEP_FIELD, "<page>"),
        ("authorization", "<signed>"),
        ("allow", "on"),
        ("csrfmiddlewaretoken", "<csrf>"),
    ]
    for label, pairs in mutations(form, rng, per_key=8):
        page, fields = confirmation_form(browser, request)
        real = {"<page>": page, "<signed>": fields["authorization"], "<csrf>": fields["csrfmiddlewaretoken"]}
        filled = [(k, real.get(v, v)) for k, v in pairs]
        for http in (browser.http, strict):
            checks = [redirects_only_to([client_id]), writes_nothing_unless(sends_code, ["grant", "family"])]
            sweep.send(http, "POST", AUTHORIZE, body=encode(filled), checks=checks, note=label)
        if not has_session(browser.http):
            browser.sign_in("/")
    # Forged but validly signed requests: each must be validated again.
    for label, pairs in mutations(
        request, rng, optional=[("prompt", "none"), ("redirect_uri", "https://evil.example/cb")], per_key=5
    ):
        page, fields = confirmation_form(browser, request)
        for value in (
            forged(browser, encode(pairs).decode(), page),
            forged(browser, encode(pairs).decode(), "nonsense"),
            forged(browser, encode(request).decode(), page, u="0"),
            forged(browser, encode(request).decode(), page, raw=["q", encode(pairs).decode()]),
            forged(browser, encode(request).decode(), page, q=None),
            fields["authorization"][:-2] + "xx",
        ):
            body = encode([(STEP_FIELD, page), ("authorization", value), ("allow", "on")])
            ids = [v for k, v in pairs if k == "client_id"]
            checks = [redirects_only_to(ids), writes_nothing_unless(sends_code, ["grant", "family"])]
            sweep.send(browser.http, "POST", AUTHORIZE, body=body, checks=checks, note=f"forged {label}")
    sweep.assert_clean()


# ---- 4. the token endpoint, grant type by grant type ---------------------------------------------
FRONTEND_CALLBACK = "http://testserver/auth/callback"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def frontend_code(browser: Browser) -> tuple[str, str]:
    """A fresh code of cells-frontend (no confirmation page) and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    response = browser.http.get(
        f"{AUTHORIZE}?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": "cells-frontend",
                "redirect_uri": FRONTEND_CALLBACK,
                "scope": SCOPE,
                "state": "frontend-state",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    return code_from(response, FRONTEND_CALLBACK)["code"], verifier


def token_checks(extra: Sequence[Check] = ()) -> list[Check]:
    return [oauth_json, writes_nothing_unless(ok, ["access", "refresh", "id_token", "family"]), *extra]


def test_token_endpoint_authorization_code_grant(
    clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser
) -> None:
    base = [
        ("grant_type", "authorization_code"),
        ("code", "<code>"),
        ("redirect_uri", FRONTEND_CALLBACK),
        ("client_id", "cells-frontend"),
        ("code_verifier", "<verifier>"),
    ]
    optional = [
        ("scope", "openid"),
        ("client_secret", "x"),
        ("resource", "https://api.example/"),
        ("nonce", "n"),
    ]
    for label, pairs in mutations(base, rng, optional=optional, per_key=5):
        code, verifier = frontend_code(browser_in)  # a fresh code each time: every request gets deep
        filled = [(k, {"<code>": code, "<verifier>": verifier}.get(v, v)) for k, v in pairs]
        sweep.send(Client(), "POST", TOKEN, body=encode(filled), checks=token_checks(), note=label)
    # The same, with the client named in a Basic header.
    for header in AUTHORIZATION:
        code, verifier = frontend_code(browser_in)
        body = encode([(k, {"<code>": code, "<verifier>": verifier}.get(v, v)) for k, v in base])
        meta = {"HTTP_AUTHORIZATION": header}
        sweep.send(Client(), "POST", TOKEN, body=body, meta=meta, checks=token_checks(), note=header[:40])
    sweep.assert_clean()


def test_token_endpoint_refresh_grant(
    clients: None, sweep: Sweep, rng: random.Random, real_tokens: dict[str, Any]
) -> None:
    current = real_tokens["refresh_token"]
    base = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "<rt>"),
        ("client_id", "cells-client"),
        ("scope", SCOPE),
    ]
    requests = [
        (label, pairs, {})
        for label, pairs in mutations(base, rng, optional=[("client_secret", "")], per_key=6)
    ]
    requests += [(h[:40], base, {"HTTP_AUTHORIZATION": h}) for h in AUTHORIZATION]
    for label, pairs, meta in requests:
        body = encode([(k, current if v == "<rt>" else v) for k, v in pairs])
        response = sweep.send(
            Client(), "POST", TOKEN, body=body, meta=meta, checks=token_checks(), note=label
        )
        if response is not None and response.status_code == 200:
            current = json.loads(response.content)["refresh_token"]  # rotated (RFC 9700 §4.14.2)
    sweep.assert_clean()
    # No failed request revoked or spent the sign-in: its current refresh token still works.
    last = token_request(
        {"grant_type": "refresh_token", "refresh_token": current, "client_id": "cells-client"}
    )
    assert last.status_code == 200, last.content


def device_code(scope: str = "openid pydio offline") -> dict[str, Any]:
    response = Client().post(
        "/oidc/oauth2/device/auth",
        urlencode({"client_id": "cells-client", "scope": scope}),
        content_type=FORM,
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def approve(browser: Browser, user_code: str) -> None:
    answer = browser.http.post("/oidc/device", {"user_code": user_code})
    assert answer.status_code == 303, answer.content[:300]
    done = browser.http.post("/oidc/device/confirm", {"action": "approve"})
    assert done.status_code == 200, done.content[:300]


def test_token_endpoint_device_grant(
    clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser
) -> None:
    from django.core.cache import cache

    base = [("grant_type", DEVICE_GRANT), ("device_code", "<dc>"), ("client_id", "cells-client")]
    for label, pairs in mutations(
        base, rng, optional=[("scope", "openid offline"), ("client_secret", "")], per_key=6
    ):
        pending = device_code()
        approved = device_code()
        approve(browser_in, approved["user_code"])
        for code in (pending, approved):
            cache.clear()  # no slow_down: every request reaches the grant
            body = encode([(k, code["device_code"] if v == "<dc>" else v) for k, v in pairs])
            sweep.send(Client(), "POST", TOKEN, body=body, checks=token_checks(), note=label)
    sweep.assert_clean()


OTHER_GRANTS = [
    "client_credentials",
    "password",
    "implicit",
    "openid",
    "refresh_token ",
    "AUTHORIZATION_CODE",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]


def test_token_endpoint_other_grant_types(clients: None, sweep: Sweep, rng: random.Random) -> None:
    grants = OTHER_GRANTS + rng.sample(HOSTILE, 20)
    for grant in grants:
        for auth in (
            "",
            basic("files-api", SECRET),
            basic("cells-client"),
            basic("third-party", "third-party-secret"),
        ):
            body = encode(
                [
                    ("grant_type", grant),
                    ("scope", "openid"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("client_id", "cells-client"),
                ]
            )
            meta = {"HTTP_AUTHORIZATION": auth} if auth else {}
            succeeded = ok if grant == "client_credentials" else (lambda r: False)
            checks = [
                oauth_json,
                writes_nothing_unless(succeeded, ["access", "refresh", "id_token", "family"]),
            ]
            sweep.send(
                Client(),
                "POST",
                TOKEN,
                body=body,
                meta=meta,
                checks=checks,
                note=f"{grant[:30]!r} {auth[:30]}",
            )
    sweep.assert_clean()


# ---- 5. revocation, introspection, userinfo, device authorization ---------------------------------
def test_revocation_endpoint(clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser) -> None:
    base = [("token", "<token>"), ("token_type_hint", "refresh_token"), ("client_id", "cells-client")]
    requests = [(label, pairs, {}) for label, pairs in mutations(base, rng, per_key=6)]
    requests += [(h[:40], base[:2], {"HTTP_AUTHORIZATION": h}) for h in AUTHORIZATION]
    tokens = sign_in(browser_in, redirect_uri=CLI_CALLBACK)
    for label, pairs, meta in requests:
        if rng.random() < 0.1:
            tokens = sign_in(browser_in, redirect_uri=CLI_CALLBACK)  # now and then a live token again
        secret = tokens["refresh_token"] if rng.random() < 0.5 else tokens["access_token"]
        body = encode([(k, secret if v == "<token>" else v) for k, v in pairs])
        checks = [
            oauth_json,
            writes_nothing_unless(lambda r: False, ["access", "refresh", "id_token", "family"]),
        ]
        sweep.send(Client(), "POST", "/oidc/oauth2/revoke", body=body, meta=meta, checks=checks, note=label)
    sweep.assert_clean()


def test_introspection_endpoint(
    clients: None, sweep: Sweep, rng: random.Random, real_tokens: dict[str, Any]
) -> None:
    base = [("token", real_tokens["access_token"]), ("token_type_hint", "access_token")]
    confidential = {"HTTP_AUTHORIZATION": basic("files-api", SECRET)}
    requests = [(label, pairs, confidential) for label, pairs in mutations(base, rng, per_key=8)]
    requests += [
        (label, [*pairs, ("client_id", "files-api"), ("client_secret", SECRET)], {})
        for label, pairs in mutations(base, rng, per_key=2)
    ]
    requests += [(h[:40], base, {"HTTP_AUTHORIZATION": h}) for h in AUTHORIZATION]
    for token in (real_tokens["refresh_token"], real_tokens["id_token"], "cpat_" + "A" * 40, "x" * 20_000):
        requests.append(("other token", [("token", token)], confidential))
    for label, pairs, meta in requests:
        checks = [
            oauth_json,
            writes_nothing_unless(lambda r: False, ["access", "refresh", "id_token", "family", "pat"]),
        ]
        sweep.send(
            Client(),
            "POST",
            "/oidc/oauth2/introspect",
            body=encode(pairs),
            meta=meta,
            checks=checks,
            note=label,
        )
    sweep.assert_clean()


def test_userinfo_endpoint(
    clients: None, sweep: Sweep, rng: random.Random, real_tokens: dict[str, Any]
) -> None:
    access = real_tokens["access_token"]
    headers = [
        *AUTHORIZATION,
        f"Bearer {access}",
        f"bearer {access}",
        f"Bearer  {access} ",
        f"Bearer {access}, Bearer {access}",
        f"Bearer {access[:-3]}abc",
        f"Bearer {real_tokens['id_token']}",
        f"Basic {access}",
    ]
    for header in headers:
        for method in ("GET", "POST", "PUT", "HEAD"):
            meta = {"HTTP_AUTHORIZATION": header}
            sweep.send(Client(), method, "/oidc/userinfo", meta=meta, checks=[oauth_json], note=header[:40])
    for label, pairs in mutations([("access_token", access)], rng, per_key=12):
        sweep.send(Client(), "POST", "/oidc/userinfo", body=encode(pairs), checks=[oauth_json], note=label)
        sweep.send(Client(), "GET", "/oidc/userinfo", query=encode(pairs), checks=[oauth_json], note=label)
        meta = {"HTTP_AUTHORIZATION": f"Bearer {access}"}
        sweep.send(
            Client(), "POST", "/oidc/userinfo", body=encode(pairs), meta=meta, checks=[oauth_json], note=label
        )
    sweep.assert_clean()


def test_device_authorization_endpoint(clients: None, sweep: Sweep, rng: random.Random) -> None:
    base = [("client_id", "cells-client"), ("scope", "openid pydio offline")]
    requests = [(label, pairs, {}) for label, pairs in mutations(base, rng, per_key=10)]
    requests += [(h[:40], base[1:], {"HTTP_AUTHORIZATION": h}) for h in AUTHORIZATION]
    requests += [(c, [("client_id", c)], {}) for c in ("cells-sync", "third-party", "files-api")]
    for label, pairs, meta in requests:
        checks = [oauth_json, writes_nothing_unless(ok, ["device"])]
        sweep.send(
            Client(),
            "POST",
            "/oidc/oauth2/device/auth",
            body=encode(pairs),
            meta=meta,
            checks=checks,
            note=label,
        )
    sweep.assert_clean()


# ---- 6. RP-initiated logout, login, signed-out and OOB pages -------------------------------------
def frontend_tokens(browser: Browser) -> dict[str, Any]:
    code, verifier = frontend_code(browser)
    response = token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": FRONTEND_CALLBACK,
            "client_id": "cells-frontend",
            "code_verifier": verifier,
        }
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_logout_endpoint(clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser) -> None:
    id_token = frontend_tokens(browser_in)["id_token"]
    base = [
        ("id_token_hint", id_token),
        ("client_id", "cells-frontend"),
        ("post_logout_redirect_uri", "http://testserver/"),
        ("state", "logout-state"),
    ]
    optional = [
        ("ui_locales", "de"),
        ("logout_hint", "alice"),
        ("id_token_hint", id_token[:-4] + "AAAA"),
        ("id_token_hint", sign_in(browser_in, redirect_uri=CLI_CALLBACK)["id_token"]),
        ("client_id", "third-party"),
        ("post_logout_redirect_uri", "https://app.example/bye"),
    ]
    anonymous = Client()
    for label, pairs in mutations(base, rng, optional=optional, per_key=4):
        ids = [v for k, v in pairs if k == "client_id"] or ["cells-frontend", "cells-client"]
        check = redirects_only_to(ids, "post_logout_redirect_uris")
        for http in (anonymous, browser_in.http):
            sweep.send(http, "GET", LOGOUT, query=encode(pairs), checks=[check], note=label)
            if not has_session(browser_in.http):
                browser_in.sign_in("/")
        body = encode([*pairs, ("allow", "on")])
        sweep.send(browser_in.http, "POST", LOGOUT, body=body, checks=[check], note=f"POST {label}")
        if not has_session(browser_in.http):
            browser_in.sign_in("/")
    sweep.assert_clean()


def test_login_page(clients: None, sweep: Sweep, rng: random.Random) -> None:
    authorize_next = f"{AUTHORIZE}?{urlencode(cli_params())}"
    base = [("username", "alice"), ("password", PASSWORD), ("next", authorize_next)]
    for label, pairs in mutations(
        base, rng, optional=[("username", "alice@example.com"), ("next", "/oidc/account/")], per_key=6
    ):
        http = Client()
        sweep.send(
            http,
            "GET",
            "/oidc/login/",
            query=encode([p for p in pairs if p[0] == "next"]),
            checks=[stays_on_site],
            note=label,
        )
        sweep.send(http, "POST", "/oidc/login/", body=encode(pairs), checks=[stays_on_site], note=label)
    sweep.assert_clean()


@pytest.mark.parametrize(
    "path",
    [
        "/oauth2/oob",
        "/oauth/oob",
        "/oidc/logged-out/",
        "/oidc/brand.css",
        "/oidc/",
        "/oidc/.well-known/openid-configuration",
        "/oidc/.well-known/jwks.json",
        "/",
        "/auth/callback",
        "/a/docs",
        "/a/openapi.json",
    ],
)
def test_plain_pages(clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser, path: str) -> None:
    code = code_from(
        browser_in.authorize(cli_params(redirect_uri="http://testserver/oauth2/oob")),
        "http://testserver/oauth2/oob",
    )["code"]
    base = [("code", code), ("state", "s"), ("error", "access_denied"), ("iss", "http://testserver/oidc/")]
    for label, pairs in mutations(base, rng, per_key=6):
        for http in (Client(), browser_in.http):
            sweep.send(http, "GET", path, query=encode(pairs), checks=[stays_on_site], note=label)
    sweep.assert_clean()


# ---- 7. the account page, its buttons, and the device pages --------------------------------------
#: Path ids: what the URL converters let through (and what they do not).
HOSTILE_INT_IDS = [
    "0",
    "1",
    "007",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999999999",
    "9" * 400,
    "-1",
    "1.0",
    "1e3",
    "%31",
    "%00",
    "١",
    "abc",
    " 1",
]
HOSTILE_UUID_IDS = [
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "00000000000000000000000000000000",
    "not-a-uuid",
    "00000000-0000-0000-0000-0000000000000",
    "%30" * 36,
]


@dataclass
class Bob:
    """Another user with something of each kind the account page can end: nothing of his may change."""

    user: Any
    family: Any
    consent: Any
    session: Any
    token: Any

    def intact(self) -> bool:
        from cells_oidc.models import Consent, PersonalAccessToken, TokenFamily, UserSession

        return (
            TokenFamily.objects.get(pk=self.family.pk).revoked is None
            and Consent.objects.filter(pk=self.consent.pk).exists()
            and UserSession.objects.filter(pk=self.session.pk).exists()
            and PersonalAccessToken.objects.get(pk=self.token.pk).revoked is None
        )


@pytest.fixture
def bob(clients: None, make_user: Any) -> Bob:
    from oauth2_provider.models import get_application_model

    from cells_oidc.internal import consent, pat
    from cells_oidc.models import Consent, PersonalAccessToken, TokenFamily, UserSession

    user = make_user("bob")
    browser = Browser()
    assert browser.sign_in("/", username="bob").status_code == 303
    sign_in(browser, redirect_uri=CLI_CALLBACK, username="bob")
    third = get_application_model().objects.get(client_id="third-party")
    consent.remember(user, third, ["openid"])
    pat.mint(user, expires_in=pat.parse_duration("1d"), label="bob's")
    return Bob(
        user=user,
        family=TokenFamily.objects.filter(user=user).latest("created"),
        consent=Consent.objects.get(user=user),
        session=UserSession.objects.get(user=user),
        token=PersonalAccessToken.objects.get(user=user),
    )


def test_account_buttons_with_hostile_ids(
    clients: None, sweep: Sweep, browser_in: Browser, bob: Bob, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    bobs = {
        "apps": [str(bob.family.pk)],
        "consents": [str(bob.consent.pk)],
        "sessions": [str(bob.session.pk)],
        "tokens": [str(bob.token.pk)],
    }
    paths = [f"/oidc/account/apps/{i}/revoke" for i in HOSTILE_UUID_IDS + bobs["apps"]]
    paths += [
        f"/oidc/account/{kind}/{i}/{action}"
        for kind, action in (("consents", "withdraw"), ("sessions", "end"), ("tokens", "revoke"))
        for i in HOSTILE_INT_IDS + bobs[kind]
    ]
    for path in paths:
        for http in (Client(), browser_in.http):
            for method in ("POST", "GET", "DELETE"):
                checks = [
                    stays_on_site,
                    writes_nothing_unless(lambda r: False, ["access", "refresh", "family", "pat"]),
                ]
                sweep.send(http, method, path, checks=checks)
    for done in ["", "revoked", "x" * 10_000, "\x00", "%ff", "<b>"]:
        sweep.send(
            browser_in.http, "GET", "/oidc/account/", query=encode([("done", done)]), checks=[stays_on_site]
        )
    sweep.assert_clean()
    assert bob.intact(), "a button of alice's account page changed something of bob's"


def test_minting_form_of_the_account_page(
    clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser, settings: Any
) -> None:
    import secrets

    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    base = [
        ("label", "backup"),
        ("scope", "pydio"),
        ("scope", "profile"),
        ("mode", "fixed"),
        ("expires_in", "30d"),
        ("auto_refresh", "1d"),
        ("nonce", "<nonce>"),
    ]
    for label, pairs in mutations(
        base, rng, optional=[("mode", "auto_refresh"), ("scope", "openid")], per_key=5
    ):
        filled = [(k, secrets.token_urlsafe(16) if v == "<nonce>" else v) for k, v in pairs]
        checks = [stays_on_site, writes_nothing_unless(ok, ["pat"])]
        sweep.send(
            browser_in.http,
            "POST",
            "/oidc/account/tokens/new",
            body=encode(filled),
            checks=checks,
            note=label,
        )
    sweep.assert_clean()


def test_device_pages(clients: None, sweep: Sweep, rng: random.Random, browser_in: Browser) -> None:
    from django.core.cache import cache

    pending = device_code()
    codes = [
        pending["user_code"],
        pending["user_code"].lower().replace("-", " "),
        *rng.sample(HOSTILE, 25),
        "BCDF-GHJK",
        "B" * 64,
        "ＢＣＤＦ－ＧＨＪＫ",
    ]
    for code in codes:
        cache.clear()  # past the rate limit: every request reaches the lookup
        for http in (Client(), browser_in.http):
            sweep.send(
                http, "GET", "/oidc/device", query=encode([("user_code", code)]), checks=[stays_on_site]
            )
            sweep.send(
                http, "POST", "/oidc/device", body=encode([("user_code", code)]), checks=[stays_on_site]
            )
            for action in ["approve", "deny", "", "APPROVE", "approve\x00", "x" * 100_000]:
                body = encode([("action", action)])
                checks = [
                    stays_on_site,
                    writes_nothing_unless(lambda r: False, ["access", "refresh", "family"]),
                ]
                sweep.send(http, "POST", "/oidc/device/confirm", body=body, checks=checks, note=action[:20])
            sweep.send(http, "GET", "/oidc/device/confirm", checks=[stays_on_site])
    sweep.assert_clean()


def resolves(path: str) -> bool:
    from urllib.parse import unquote

    from django.urls import Resolver404, resolve

    try:
        resolve(unquote(path))
    except Resolver404:
        return False
    return True


# ---- 8. the bearer API under /a/ -----------------------------------------------------------------
API_IDS = (
    HOSTILE_INT_IDS
    + HOSTILE_UUID_IDS
    + ["..", "%2e%2e", "%2F", "a" * 5000, "\u202e1", "1 OR 1=1", "1;", "null"]
)
JSON_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"{",
    b"\xff\xfe",
    b"[" * 5000 + b"]" * 5000,
    b'{"expires_in": 3600}',
    b'{"expires_in": 3600, "label": "' + b"A" * 100_000 + b'"}',
    b'{"expires_in": -1}',
    b'{"expires_in": 1e309}',
    b'{"expires_in": NaN}',
    b'{"expires_in": 100000000000000000000000000000}',
    b'{"expires_in": "3600"}',
    b'{"expires_in": true}',
    b'{"expires_in": [3600]}',
    b'{"auto_refresh_seconds": 600, "max_lifetime": 0}',
    b'{"auto_refresh_seconds": 600, "expires_in": 600}',
    b'{"expires_in": 3600, "scope": "openid offline pydio profile email admin"}',
    b'{"expires_in": 3600, "scope": ["pydio"]}',
    b'{"expires_in": 3600, "scope": "\\u0000"}',
    b'{"expires_in": 3600, "user": "bob"}',
    b'{"expires_in": 3600, "user": {"$ne": null}}',
    b'{"expires_in": 3600, "label": "\\ud800"}',
    b'{"expires_in": 3600, "label": "a\\u0000b"}',
    b'{"expires_in": 3600, "__proto__": {"admin": true}}',
]


def test_bearer_api(
    clients: None, sweep: Sweep, rng: random.Random, real_tokens: dict[str, Any], bob: Bob, settings: Any
) -> None:
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    auth = {"HTTP_AUTHORIZATION": f"Bearer {real_tokens['access_token']}"}
    for token_id in API_IDS + [str(bob.family.pk), str(bob.token.pk)]:
        for path in (f"/a/tokens/{token_id}", f"/a/personal-tokens/{token_id}"):
            # A path no URL pattern matches (an encoded "/") is the site's 404, not the API's.
            api = resolves(path)
            for method in ("DELETE", "GET", "POST"):
                checks = [rest_json if api else stays_on_site]
                checks.append(writes_nothing_unless(lambda r: False, ["access", "refresh", "family", "pat"]))
                sweep.send(Client(), method, path, meta=auth, checks=checks)
    for body in JSON_BODIES:
        for content_type in ("application/json", FORM, "multipart/form-data; boundary=X", "application/xml"):
            checks = [rest_json, writes_nothing_unless(lambda r: r.status_code == 201, ["pat"])]
            sweep.send(
                Client(),
                "POST",
                "/a/personal-tokens",
                body=body,
                content_type=content_type,
                meta=auth,
                checks=checks,
                note=content_type,
            )
    for path in ("/a/user/me", "/a/tokens", "/a/personal-tokens"):
        for header in AUTHORIZATION:
            sweep.send(
                Client(),
                "GET",
                path,
                meta={"HTTP_AUTHORIZATION": header},
                checks=[rest_json],
                note=header[:40],
            )
        for query in RAW_QUERIES + [b"access_token=" + real_tokens["access_token"].encode()]:
            sweep.send(Client(), "GET", path, query=query, meta=auth, checks=[rest_json])
    sweep.assert_clean()
    assert bob.intact(), "alice's token changed something of bob's"


# ---- 9. the admin change form of clients --------------------------------------------------------
def admin_form_data(response: Any) -> Pairs:
    """The fields the admin's change form would POST as it is (the client and its policy inline)."""
    pairs: Pairs = []
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        forms += [formset.management_form, *formset.forms]
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False:
                continue
            if value is True:
                value = "on"
            for item in value if isinstance(value, list) else [value]:
                pairs.append((bound.html_name, str(item)))
    return pairs


def saves_only_valid_registrations(pk: int) -> Check:
    """RFC 6749 §3.1.2.2: whatever the form saved is a valid registration (never half-checked)."""

    def check(response: Any) -> str | None:
        from oauth2_provider.models import get_application_model

        from cells_oidc.internal import redirects

        app = get_application_model().objects.get(pk=pk)
        problems = (
            redirects.validation_errors(app.redirect_uris)
            + redirects.validation_errors(app.post_logout_redirect_uris)
            + redirects.validation_errors(app.allowed_origins, origins=True)
        )
        return f"saved an invalid registration: {problems[:2]}" if problems else None

    return check


ADMIN_FIELDS = [
    "name",
    "client_id",
    "client_type",
    "authorization_grant_type",
    "redirect_uris",
    "post_logout_redirect_uris",
    "allowed_origins",
    "user",
    "cells_policy-0-allowed_scopes",
]


def test_admin_change_form_of_clients(
    clients: None, sweep: Sweep, rng: random.Random, make_user: Any
) -> None:
    from oauth2_provider.models import get_application_model

    admin = make_user("root", is_staff=True, is_superuser=True)
    http = Client()
    http.force_login(admin)
    app = get_application_model().objects.get(client_id="cells-client")
    base = f"/admin/cells_oidc/client/{app.pk}/change/"
    for object_id in HOSTILE_INT_IDS + ["%2F", "\u202e1", "1/../2"]:
        for suffix in ("change/", "delete/", "history/", ""):
            sweep.send(http, "GET", f"/admin/cells_oidc/client/{object_id}/{suffix}", checks=[stays_on_site])
    page = http.get(base)
    assert page.status_code == 200
    form = admin_form_data(page)
    before = get_application_model().objects.filter(pk=app.pk).values().get()
    values = (
        rng.sample(HOSTILE, 8)
        + HOSTILE_URIS[:12]
        + [
            "http://localhost:[3636-3666]",
            "http://localhost:[1-99999]",
            "http://localhost:[3666-3636]",
            "cellsauth://[1-2]",
            "http://*/",
        ]
    )
    for field_name in ADMIN_FIELDS:
        rest = [(k, v) for k, v in form if k != field_name]
        for value in rng.sample(values, 10) + ["", "\x00"]:
            pairs = [*rest, (field_name, value)]
            checks = [stays_on_site, saves_only_valid_registrations(app.pk)]
            sweep.send(
                http, "POST", base, body=encode(pairs), checks=checks, note=f"{field_name}={value[:30]!r}"
            )
            if get_application_model().objects.filter(pk=app.pk).values().get() != before:
                # Saved (a valid value): restore the registration for the next request.
                get_application_model().objects.filter(pk=app.pk).update(
                    **{k: v for k, v in before.items() if k != "id"}
                )
    for field_name in ("name", "redirect_uris"):
        pairs = [*[(k, v) for k, v in form if k != field_name], (field_name, "A" * 100_000)]
        sweep.send(
            http, "POST", base, body=encode(pairs), checks=[stays_on_site], note=f"{field_name} 100 KB"
        )
    sweep.send(
        http,
        "POST",
        "/admin/cells_oidc/client/add/",
        body=encode([(k, v) for k, v in form if k != "client_id"] + [("client_id", "\x00")]),
        checks=[stays_on_site],
    )
    sweep.assert_clean()


# ---- 10. Host header variants ALLOWED_HOSTS accepts ---------------------------------------------
@pytest.mark.parametrize("host", HOSTS)
def test_host_header_variants(clients: None, sweep: Sweep, host: str) -> None:
    meta = {"HTTP_HOST": host}
    browser = Browser(http=Client(HTTP_HOST=host))
    response = browser.http.post("/oidc/login/", {"username": "alice", "password": PASSWORD, "next": "/"})
    assert response.status_code in (303, 400), response.status_code  # 400: Django refuses the host
    frontend = [
        ("response_type", "code"),
        ("client_id", "cells-frontend"),
        ("redirect_uri", FRONTEND_CALLBACK),
        ("scope", SCOPE),
        ("state", "host-state"),
        ("code_challenge", pkce_pair()[1]),
        ("code_challenge_method", "S256"),
    ]
    requests = [
        ("GET", "/oidc/", b""),
        ("GET", "/oidc/.well-known/openid-configuration", b""),
        ("GET", "/oidc/.well-known/jwks.json", b""),
        ("GET", AUTHORIZE, encode(frontend)),
        ("GET", AUTHORIZE, encode(authorization_bases()["cells-client"])),
        (
            "GET",
            LOGOUT,
            encode([("post_logout_redirect_uri", "http://testserver/"), ("client_id", "cells-frontend")]),
        ),
        ("GET", "/oidc/login/", encode([("next", "//evil.example/")])),
        ("GET", "/oidc/account/", b""),
        ("GET", "/oauth2/oob", b"code=abc"),
        ("GET", "/", b""),
        ("GET", "/auth/callback", b"code=x&state=y"),
        ("GET", "/a/docs", b""),
        ("GET", "/oidc/device", b""),
        ("GET", "/a/user/me", b""),
    ]
    # Django answers a host outside ALLOWED_HOSTS with its own 400 before any view runs.
    allowed = host != "evil.example"
    for method, path, query in requests:
        kind = dict(ENTRY_POINTS).get(path, "page")
        for http in (Client(), browser.http):
            checks = checks_for(kind, query) if allowed else []
            sweep.send(http, method, path, query=query, meta=meta, checks=checks, note=host)
    body = encode([("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", "cells-client")])
    sweep.send(
        Client(),
        "POST",
        TOKEN,
        body=body,
        meta=meta,
        checks=checks_for("oauth") if allowed else [],
        note=host,
    )
    sweep.assert_clean()


# ---- the checks themselves -------------------------------------------------------------------------
def test_the_checks_catch_what_they_look_for(clients: None, alice: Any) -> None:
    """A sweep whose checks could never fail would prove nothing: each one refuses its target."""
    from django.http import HttpResponse, HttpResponseRedirect, JsonResponse

    from cells_oidc.internal import pat

    to_registered = HttpResponseRedirect(f"{CLI_CALLBACK}?code=abc&state=s&iss=x")
    assert redirects_only_to(["cells-client"])(to_registered) is None
    for location in (
        "http://localhost:3636/servers/callback?code=abc",  # cells-sync's, not cells-client's
        "cellsauth://callback?code=abc",
        "//evil.example/",
        "http://evil.example/",
    ):
        redirect = HttpResponse(status=302)
        redirect["Location"] = location
        assert redirects_only_to(["cells-client"])(redirect), location
    assert stays_on_site(HttpResponseRedirect("/oidc/account/")) is None
    assert stays_on_site(HttpResponseRedirect("https://evil.example/"))
    assert oauth_json(HttpResponse("<h1>Bad Request</h1>", status=400))
    assert oauth_json(JsonResponse({"error": "invalid_request"}, status=400))  # no no-store
    assert rest_json(JsonResponse({"detail": "x"}, status=404))
    check = writes_nothing_unless(ok, ["pat"])
    pat.mint(alice, expires_in=pat.parse_duration("1h"))
    assert check(HttpResponse(status=400))
    assert check(HttpResponse(status=200)) is None


# ---- regressions: one focused test per bug the sweep found ---------------------------------------
OAUTH_ENDPOINTS = [
    TOKEN,
    "/oidc/oauth2/revoke",
    "/oidc/oauth2/introspect",
    "/oidc/userinfo",
    "/oidc/oauth2/device/auth",
]


@pytest.mark.parametrize("path", OAUTH_ENDPOINTS)
def test_a_form_body_in_another_charset_gets_a_json_error(clients: None, path: str) -> None:
    # RFC 6749 Appendix B: form bodies are UTF-8. Django refuses a form declaring another charset
    # with an exception that used to become its HTML "Bad Request" page, without no-store.
    response = Client().generic(
        "POST", path, b"client_id=cells-client&token=\xe9t\xe9", content_type=FORM + "; charset=latin-1"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert json.loads(response.content)["error"] == "invalid_request"


#: Pages (CSRF-protected), a path nothing serves, and the discovery document (answered in JSON).
UNREADABLE_BODY_PATHS = [
    ("/oidc/login/", "page"),
    ("/oidc/oauth2/sessions/logout", "page"),
    ("/oidc/device", "page"),
    ("/oidc/account/", "page"),
    ("/oauth2/oob", "page"),
    ("/admin/login/", "page"),
    ("/oidc/no-such-page", "page"),
    ("/oidc/.well-known/openid-configuration", "json"),
]
#: Bodies Django refuses to parse: a form in another charset (Django #34709), a multipart body
#: without a boundary, a multipart body past DATA_UPLOAD_MAX_NUMBER_FIELDS.
UNREADABLE_BODIES = {
    "latin-1 form": (FORM + "; charset=latin-1", b"username=\xe9t\xe9"),
    "multipart without boundary": ("multipart/form-data", b"a=b"),
    "multipart with 1500 fields": (
        "multipart/form-data; boundary=x",
        b"".join(b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n1\r\n' % i for i in range(1500))
        + b"--x--\r\n",
    ),
}


def _demo_routes_with_djangos_error_views() -> list[Any]:
    from project.urls import urlpatterns as demo

    return list(demo)


#: This module as a URLconf: the demo's routes without its handler400, i.e. Django's own error views
#: (a site that did not opt in to cells_oidc.views.bad_request): the middleware alone must do.
urlpatterns = _demo_routes_with_djangos_error_views()


@pytest.mark.parametrize("urlconf", ["project.urls", "tests.test_fuzz"], ids=["handler400", "django-views"])
@pytest.mark.parametrize("body", UNREADABLE_BODIES, ids=list(UNREADABLE_BODIES))
@pytest.mark.parametrize(("path", "kind"), UNREADABLE_BODY_PATHS, ids=[p for p, _ in UNREADABLE_BODY_PATHS])
def test_a_body_django_cannot_read_gets_a_400_not_a_500(
    clients: None, settings: Any, path: str, kind: str, body: str, urlconf: str
) -> None:
    # A browser with a CSRF cookie (any visitor of a page has one). Django's CSRF check reads the
    # body; so do its error views (requires_csrf_token): the latin-1 form raised again there and
    # left Django for the WSGI server's bare 500; the multipart bodies turned a 404 into a 500.
    settings.ROOT_URLCONF = urlconf
    content_type, data = UNREADABLE_BODIES[body]
    # raise_request_exception=False: the test client would re-raise what Django's error views
    # raised even once the middleware answered; an exception leaving Django still fails the test.
    browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
    browser.cookies["csrftoken"] = "a" * 32
    response = browser.generic(
        "POST", path, data, content_type=content_type, HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    if response.status_code == 403 and path.endswith("/login/") and body.startswith("multipart"):
        # The login throttle reads the typed username first: a multipart body Django could not
        # parse is then an empty form, and the CSRF check refuses it with the styled page.
        assert b"csrf_failure" in response.content
        return
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert b"Traceback" not in response.content
    if urlconf != "project.urls" and body.startswith("multipart") and "no-such" not in path:
        return  # Django's own 400 page: what a site without the handler400 gets, not a 500
    assert_providers_400(response, kind)


def assert_providers_400(response: Any, kind: str) -> None:
    """The provider's 400 for a request it cannot read: JSON invalid_request or the error page."""
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response["Cache-Control"] == "no-store"
    if kind == "json":
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content)["error"] == "invalid_request"
    else:
        assert response["Content-Type"].startswith("text/html")
        assert b"invalid_request" in response.content


@pytest.mark.parametrize(
    ("path", "kind"),
    [(TOKEN, "json"), ("/oidc/.well-known/openid-configuration", "json"), ("/oidc/login/", "page")],
)
def test_a_host_outside_allowed_hosts_gets_the_providers_400(clients: None, path: str, kind: str) -> None:
    # Django refuses the host before the URL is resolved; handler400 (cells_oidc.views.bad_request)
    # still answers an API endpoint in JSON: the path says which endpoint was meant.
    assert_providers_400(
        Client(HTTP_HOST="evil.example").post(path, b"grant_type=x", content_type=FORM), kind
    )


#: Requests naming a client id with a NUL where the provider looked the client up before refusing
#: the request: PostgreSQL refuses NUL in a text parameter (DataError, a 500); SQLite does not.
NUL_CLIENT_REQUESTS = {
    "token error with an Origin": (
        "POST",
        TOKEN,
        b"grant_type=refresh_token&refresh_token=x&client_id=cells%00sync",
        {"HTTP_ORIGIN": "http://localhost:3000"},
    ),
    "token with Basic and an Origin": (
        "POST",
        TOKEN,
        b"grant_type=refresh_token&refresh_token=x",
        {"HTTP_ORIGIN": "http://localhost:3000", "HTTP_AUTHORIZATION": basic("cells\x00sync", "")},
    ),
    "logout": ("GET", LOGOUT + "?client_id=cells%00sync", b"", {}),
    "logout to a redirect": (
        "GET",
        LOGOUT + "?client_id=cells%00sync&post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A3000",
        b"",
        {},
    ),
    "login with a next naming it": (
        "GET",
        "/oidc/login/?next=" + "%2Foidc%2Foauth2%2Fauth%3Fclient_id%3Dcells%2500sync",
        b"",
        {},
    ),
    "authorization": (
        "GET",
        AUTHORIZE + "?response_type=code&client_id=cells%00sync&redirect_uri=http%3A%2F%2Flocalhost%3A3000",
        b"",
        {},
    ),
    "authorization with a resource": (
        "GET",
        AUTHORIZE + "?response_type=code&client_id=cells%00sync&resource=https%3A%2F%2Fapi.example%2F",
        b"",
        {},
    ),
    "device authorization": ("POST", "/oidc/oauth2/device/auth", b"client_id=cells%00client", {}),
}


@pytest.mark.parametrize("name", NUL_CLIENT_REQUESTS, ids=list(NUL_CLIENT_REQUESTS))
def test_a_client_id_with_a_nul_is_refused_not_a_500(clients: None, name: str) -> None:
    method, path, body, meta = NUL_CLIENT_REQUESTS[name]
    browser = Client(raise_request_exception=False)
    response = browser.generic(method, path, body, content_type=FORM, **meta)
    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert response.status_code != 200 or b"<form" in response.content  # a page, not a grant


@pytest.mark.parametrize("resource", ["http://[::1", "https://api.example]/", "http://h:99999/"])
@pytest.mark.parametrize("signed", [False, True])
def test_a_malformed_resource_at_the_authorization_endpoint_is_invalid_target(
    clients: None, browser_in: Browser, resource: str, signed: bool
) -> None:
    # RFC 8707 §2: DOT's resource check raised ValueError (a 500) on a malformed IPv6 host.
    http = browser_in.http if signed else Client()
    response = http.get(f"{AUTHORIZE}?{urlencode(cli_params(resource=resource))}")
    assert response.status_code == 302
    params = code_from(response, CLI_CALLBACK)
    assert params["error"] == "invalid_target"
    assert "code" not in params


@pytest.mark.parametrize("resource", ["http://[::1", "not a uri", "https://api.example/#frag"])
def test_a_code_exchange_with_a_bad_resource_writes_nothing(
    clients: None, browser_in: Browser, resource: str
) -> None:
    # RFC 8707 §2: DOT checked the resource only while saving the tokens, after the ID token was
    # stored: the invalid_target error left an ID token behind (or was a 500).
    code = code_from(browser_in.authorize(cli_params()), CLI_CALLBACK)["code"]
    before = state_counts()
    response = cli_exchange(code, resource=resource)
    assert response.status_code == 400, response.content
    assert json.loads(response.content)["error"] == "invalid_target"
    assert state_counts() == before  # no ID token left behind, and the code is not spent:
    assert cli_exchange(code).status_code == 200


@pytest.mark.parametrize("resource", ["http://[::1", "not a uri", "https://other.example/"])
def test_a_refresh_with_a_bad_or_wider_resource_writes_nothing(
    clients: None, browser_in: Browser, resource: str
) -> None:
    # RFC 8707 §2: a refresh may not name a resource the grant did not have; DOT refused it only
    # after storing a new ID token (and answered without an error code).
    from cells_oidc.models import ClientPolicy

    ClientPolicy.objects.filter(application__client_id="cells-client").update(
        allowed_resources="https://api.example/files https://other.example/"
    )
    code = code_from(browser_in.authorize(cli_params(resource="https://api.example/files")), CLI_CALLBACK)[
        "code"
    ]
    tokens = json.loads(cli_exchange(code).content)
    before = state_counts()
    response = token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "cells-client",
            "resource": resource,
        }
    )
    assert response.status_code == 400, response.content
    assert json.loads(response.content)["error"] == "invalid_target"
    assert state_counts() == before
    again = token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cells-client"}
    )
    assert again.status_code == 200, again.content


@pytest.mark.parametrize("resource", ["http://[::1", "not a uri"])
def test_a_device_token_request_with_a_bad_resource_writes_nothing(
    clients: None, browser_in: Browser, resource: str
) -> None:
    # RFC 8707 §2, RFC 8628 §3.4: the approval is neither spent nor half-redeemed by a bad request.
    grant = device_code()
    approve(browser_in, grant["user_code"])
    before = state_counts()
    body = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "cells-client"}
    response = token_request({**body, "resource": resource})
    assert response.status_code == 400, response.content
    assert json.loads(response.content)["error"] == "invalid_target"
    assert state_counts() == before
    assert token_request(body).status_code == 200


def test_a_json_body_nested_too_deeply_is_a_json_400(
    clients: None, real_tokens: dict[str, Any], settings: Any
) -> None:
    # RFC 8259 §9 lets a parser limit nesting; DRF's JSON parser let Python's RecursionError
    # through (a 500) instead of its ParseError.
    settings.CELLS_OIDC_PAT_SELF_SERVICE = True
    before = state_counts()
    response = Client().post(
        "/a/personal-tokens",
        b'{"expires_in": 600, "label": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {real_tokens['access_token']}",
    )
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert "detail" in json.loads(response.content)
    assert state_counts() == before


def test_a_claims_request_nested_deeply_does_not_break_the_code_exchange(
    clients: None, browser_in: Browser
) -> None:
    # OpenID Connect Core §5.5: a claims request the authorization endpoint accepted (oauthlib
    # parses it with stack to spare) could not be parsed again at the token endpoint, deeper in
    # the stack: RecursionError, a 500, after the code was spent.
    depth = next(
        d
        for d in range(1000, 0, -2)
        if "code="
        in (
            response := browser_in.authorize(
                cli_params(claims='{"id_token": {"x": ' + "[" * d + "]" * d + "}}")
            )
        ).get("Location", "")
    )
    code = code_from(response, CLI_CALLBACK)["code"]
    answer = cli_exchange(code)
    assert answer.status_code == 200, (depth, answer.content[:200])
    assert json.loads(answer.content)["id_token"]


@pytest.mark.parametrize("path", ["/oidc/userinfo", "/a/user/me"])
def test_a_query_with_too_many_fields_gets_a_json_error(
    clients: None, real_tokens: dict[str, Any], path: str
) -> None:
    # Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS with an exception that became its HTML
    # 400 page when the endpoint looked for an access_token in the query (RFC 6750 §2.3, §3.1).
    query = "&".join(f"a{i}=1" for i in range(1500))
    response = Client().get(f"{path}?{query}", HTTP_AUTHORIZATION=f"Bearer {real_tokens['access_token']}")
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert body.get("error") == "invalid_request" or "too many parameters" in body.get("detail", "")


@pytest.mark.urls("tests.test_resource")
def test_a_query_with_too_many_fields_to_a_decorated_view_gets_a_json_error(
    clients: None, real_tokens: dict[str, Any]
) -> None:
    # The same through cells_oidc.decorators.bearer_token_required (resource.bearer_token).
    query = "&".join(f"a{i}=1" for i in range(1500))
    response = Client().get(f"/plain/me?{query}", HTTP_AUTHORIZATION=f"Bearer {real_tokens['access_token']}")
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"] == "invalid_request"


def test_a_device_token_request_cannot_widen_an_approval_without_scopes(
    clients: None, browser_in: Browser, settings: Any
) -> None:
    # RFC 8628 §3.4: the token request carries no scope; the tokens have what the user approved.
    # With no default scopes, a device grant approved with none shown took the scope the device
    # then asked at the token endpoint (oauthlib reads an empty list as "not set").
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "DEFAULT_SCOPES": []}
    grant = json.loads(
        Client().post("/oidc/oauth2/device/auth", "client_id=cells-client", content_type=FORM).content
    )
    assert browser_in.http.post("/oidc/device", {"user_code": grant["user_code"]}).status_code == 303
    assert browser_in.http.get("/oidc/device/confirm").context["scopes"] == []
    approve_page = browser_in.http.post("/oidc/device/confirm", {"action": "approve"})
    assert approve_page.status_code == 200
    response = token_request(
        {
            "grant_type": DEVICE_GRANT,
            "device_code": grant["device_code"],
            "client_id": "cells-client",
            "scope": "openid pydio offline email",
        }
    )
    assert response.status_code == 200, response.content
    assert json.loads(response.content).get("scope", "") == ""


# ---- 7. empty values are omitted values (RFC 6749 §3.1) -------------------------------------------
# "Parameters sent without a value MUST be treated as if they were omitted from the request."
# Every parameter of every endpoint is sent empty and omitted, each time with fresh state (a new
# code, token or session), and what a client can tell of the two answers must be the same; both
# answers also pass the checks of the sweep.
def api_answer(response: Any) -> tuple[Any, ...]:
    """What a client reads in an API answer (never the fresh secrets themselves)."""
    if not response.get("Content-Type", "").startswith("application/json") or not response.content:
        return (response.status_code, response.content)
    body = json.loads(response.content)
    if response.status_code >= 400:
        return (response.status_code, body.get("error"), body.get("error_description"))
    fixed = {key: body[key] for key in ("scope", "active", "token_type", "client_id", "name") if key in body}
    return (response.status_code, sorted(body), fixed)


def browser_answer(response: Any) -> tuple[Any, ...]:
    """What a browser shows: where it is sent (and with which parameters), or which page."""
    location = response.get("Location")
    if location is not None:
        parts = urlsplit(location)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "code" in params:
            params["code"] = "<a fresh code>"
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        return (response.status_code, base, params)
    page = scopes = None
    context = getattr(response, "context", None)
    if context is not None:
        try:
            page, scopes = context.get("page"), context.get("scopes")
        except (AttributeError, KeyError):
            pass
    return (response.status_code, page, list(scopes) if scopes is not None else None)


def same_as_omitted(
    sweep: Sweep, label: str, empty: Any, omitted: Any, answer: Callable[[Any], tuple[Any, ...]]
) -> None:
    if empty is None or omitted is None:
        return  # already a failure of the sweep
    seen, expected = answer(empty), answer(omitted)
    if seen != expected:
        sweep.failures.append(f"{label}: empty gives {seen!r}, omitted gives {expected!r}")


def empty_and_omitted(base: Pairs, keys: Iterable[str]) -> Iterator[tuple[str, Pairs, Pairs]]:
    """``(label, pairs with key empty, pairs without key)`` for each key, then all keys at once."""
    keys = list(dict.fromkeys(keys))
    for key in keys:
        rest = [(k, v) for k, v in base if k != key]
        yield key, [*rest, (key, "")], rest
    rest = [(k, v) for k, v in base if k not in keys]
    yield "all", [*rest, *((key, "") for key in keys)], rest


def test_empty_authorization_parameters_are_omitted(
    clients: None, sweep: Sweep, real_tokens: dict[str, Any]
) -> None:
    optional = [
        ("nonce", "n0nce"),
        ("prompt", "select_account"),
        ("max_age", "3600"),
        ("id_token_hint", real_tokens["id_token"]),
        ("claims", '{"userinfo": {"email": null}}'),
        ("response_mode", "query"),
        ("login_hint", "alice"),
        ("ui_locales", "fr-CA"),
        ("acr_values", "urn:x"),
        ("display", "page"),
    ]
    for client_id, base in authorization_bases().items():
        keys = [k for k, _ in base] + [k for k, _ in optional] + ["resource", "request", "request_uri"]
        full = [*base, *(pair for pair in optional if pair[0] not in dict(base))]
        checks = [redirects_only_to([client_id])]
        for key, empty, omitted in empty_and_omitted(full, keys):
            label = f"{client_id} {key}"
            answers = []
            for pairs in (empty, omitted):
                browser = Browser()  # signed in just before, every time: the same state
                assert browser.sign_in("/").status_code == 303
                answers.append(
                    [
                        sweep.send(
                            Client(), "GET", AUTHORIZE, query=encode(pairs), checks=checks, note=label
                        ),
                        sweep.send(
                            browser.http, "GET", AUTHORIZE, query=encode(pairs), checks=checks, note=label
                        ),
                        sweep.send(
                            browser.http, "POST", AUTHORIZE, body=encode(pairs), checks=checks, note=label
                        ),
                    ]
                )
            for seen, expected in zip(*answers, strict=True):
                same_as_omitted(sweep, label, seen, expected, browser_answer)
    sweep.assert_clean()


def cli_code_and_verifier(browser: Browser) -> tuple[str, str]:
    return code_from(browser.authorize(cli_params()), CLI_CALLBACK)["code"], ""


CODE_EXCHANGES: dict[str, tuple[Callable[[Browser], tuple[str, str]], Pairs]] = {
    "cells-client": (
        cli_code_and_verifier,
        [
            ("grant_type", "authorization_code"),
            ("code", "<code>"),
            ("redirect_uri", CLI_CALLBACK),
            ("client_id", "cells-client"),
        ],
    ),
    "cells-frontend": (
        frontend_code,
        [
            ("grant_type", "authorization_code"),
            ("code", "<code>"),
            ("redirect_uri", FRONTEND_CALLBACK),
            ("client_id", "cells-frontend"),
            ("code_verifier", "<verifier>"),
        ],
    ),
}


@pytest.mark.parametrize("client_id", list(CODE_EXCHANGES))
def test_empty_parameters_of_a_code_exchange_are_omitted(
    clients: None, sweep: Sweep, browser_in: Browser, client_id: str
) -> None:
    new_code, base = CODE_EXCHANGES[client_id]
    keys = [k for k, _ in base] + ["code_verifier", "scope", "client_secret", "resource", "nonce", "state"]
    for key, empty, omitted in empty_and_omitted(base, keys):
        answers = []
        for pairs in (empty, omitted):
            code, verifier = new_code(browser_in)  # a fresh code each time: nothing is spent twice
            filled = [(k, {"<code>": code, "<verifier>": verifier}.get(v, v)) for k, v in pairs]
            note = f"{client_id} {key}"
            answers.append(
                sweep.send(Client(), "POST", TOKEN, body=encode(filled), checks=token_checks(), note=note)
            )
        same_as_omitted(sweep, f"{client_id} {key}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_a_refresh_are_omitted(clients: None, sweep: Sweep, browser_in: Browser) -> None:
    base = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "<rt>"),
        ("client_id", "cells-client"),
        ("scope", SCOPE),
    ]
    for key, empty, omitted in empty_and_omitted(base, [*(k for k, _ in base), "client_secret", "resource"]):
        answers = []
        for pairs in (empty, omitted):
            current = sign_in(browser_in, redirect_uri=CLI_CALLBACK)["refresh_token"]
            body = encode([(k, current if v == "<rt>" else v) for k, v in pairs])
            answers.append(sweep.send(Client(), "POST", TOKEN, body=body, checks=token_checks(), note=key))
        same_as_omitted(sweep, f"refresh {key}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_a_device_token_request_are_omitted(
    clients: None, sweep: Sweep, browser_in: Browser
) -> None:
    from django.core.cache import cache

    base = [("grant_type", DEVICE_GRANT), ("device_code", "<dc>"), ("client_id", "cells-client")]
    for approved in (False, True):
        for key, empty, omitted in empty_and_omitted(
            base, ["grant_type", "device_code", "client_id", "scope", "client_secret"]
        ):
            answers = []
            for pairs in (empty, omitted):
                code = device_code()
                if approved:
                    approve(browser_in, code["user_code"])
                cache.clear()  # no slow_down: both requests reach the grant
                body = encode([(k, code["device_code"] if v == "<dc>" else v) for k, v in pairs])
                answers.append(
                    sweep.send(Client(), "POST", TOKEN, body=body, checks=token_checks(), note=key)
                )
            same_as_omitted(sweep, f"device token approved={approved} {key}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_the_device_authorization_endpoint_are_omitted(
    clients: None, sweep: Sweep
) -> None:
    base = [("client_id", "cells-client"), ("scope", "openid pydio offline")]
    for key, empty, omitted in empty_and_omitted(base, ["client_id", "scope", "client_secret", "resource"]):
        answers = [
            sweep.send(
                Client(),
                "POST",
                "/oidc/oauth2/device/auth",
                body=encode(pairs),
                checks=[oauth_json, writes_nothing_unless(ok, ["device"])],
                note=key,
            )
            for pairs in (empty, omitted)
        ]
        same_as_omitted(sweep, f"device authorization {key}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_revocation_and_introspection_are_omitted(
    clients: None, sweep: Sweep, browser_in: Browser
) -> None:
    def checks() -> list[Check]:
        return [
            oauth_json,
            writes_nothing_unless(lambda r: False, ["access", "refresh", "id_token", "family"]),
        ]

    base = [("token", "<token>"), ("token_type_hint", "refresh_token"), ("client_id", "cells-client")]
    for key, empty, omitted in empty_and_omitted(
        base, ["token", "token_type_hint", "client_id", "client_secret"]
    ):
        answers = []
        for pairs in (empty, omitted):
            secret = sign_in(browser_in, redirect_uri=CLI_CALLBACK)["refresh_token"]
            body = encode([(k, secret if v == "<token>" else v) for k, v in pairs])
            answers.append(
                sweep.send(Client(), "POST", "/oidc/oauth2/revoke", body=body, checks=checks(), note=key)
            )
        same_as_omitted(sweep, f"revoke {key}", *answers, api_answer)
    tokens = sign_in(browser_in, redirect_uri=CLI_CALLBACK)
    confidential = {"HTTP_AUTHORIZATION": basic("files-api", SECRET)}
    for token in ("access_token", "refresh_token"):
        base = [("token", tokens[token]), ("token_type_hint", token)]
        variants = [
            (base, confidential),
            ([*base, ("client_id", "files-api"), ("client_secret", SECRET)], {}),
        ]
        for pairs_base, meta in variants:
            keys = ["token", "token_type_hint", "client_id", "client_secret"]
            for key, empty, omitted in empty_and_omitted(pairs_base, keys):
                answers = [
                    sweep.send(
                        Client(),
                        "POST",
                        "/oidc/oauth2/introspect",
                        body=encode(p),
                        meta=meta,
                        checks=checks(),
                        note=key,
                    )
                    for p in (empty, omitted)
                ]
                same_as_omitted(sweep, f"introspect {token} {key} {bool(meta)}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_userinfo_are_omitted(
    clients: None, sweep: Sweep, real_tokens: dict[str, Any]
) -> None:
    access = real_tokens["access_token"]
    for meta in ({}, {"HTTP_AUTHORIZATION": f"Bearer {access}"}):
        for method in ("GET", "POST"):
            for extra in ([], [("access_token", access)] if not meta else []):
                base = [*extra, ("claims", "x")]
                for key, empty, omitted in empty_and_omitted(base, ["access_token", "claims", "schema"]):
                    answers = []
                    for pairs in (empty, omitted):
                        where = {"query": encode(pairs)} if method == "GET" else {"body": encode(pairs)}
                        answers.append(
                            sweep.send(
                                Client(),
                                method,
                                "/oidc/userinfo",
                                meta=meta,
                                checks=[oauth_json],
                                note=key,
                                **where,
                            )
                        )
                    same_as_omitted(sweep, f"userinfo {method} {bool(meta)} {key}", *answers, api_answer)
    sweep.assert_clean()


def test_empty_parameters_of_logout_are_omitted(clients: None, sweep: Sweep) -> None:
    base = [
        ("id_token_hint", "<hint>"),
        ("client_id", "cells-frontend"),
        ("post_logout_redirect_uri", "http://testserver/"),
        ("state", "logout-state"),
        ("ui_locales", "de"),
        ("logout_hint", "alice"),
    ]
    check = redirects_only_to(["cells-frontend"], "post_logout_redirect_uris")
    for key, empty, omitted in empty_and_omitted(base, [k for k, _ in base]):
        for method in ("GET", "POST"):
            answers, sessions = [], []
            for pairs in (empty, omitted):
                browser = Browser()
                assert browser.sign_in("/").status_code == 303
                hint = frontend_tokens(browser)["id_token"]  # of this browser session
                filled = [(k, hint if v == "<hint>" else v) for k, v in pairs]
                if method == "GET":
                    response = sweep.send(
                        browser.http, "GET", LOGOUT, query=encode(filled), checks=[check], note=key
                    )
                else:
                    # The confirmation form's POST (the test client skips CSRF).
                    filled += [("allow", "on")]
                    response = sweep.send(
                        browser.http, "POST", LOGOUT, body=encode(filled), checks=[check], note=key
                    )
                answers.append(response)
                sessions.append(has_session(browser.http))
            same_as_omitted(sweep, f"logout {method} {key}", *answers, browser_answer)
            if sessions[0] != sessions[1]:
                sweep.failures.append(
                    f"logout {method} {key}: signed in after empty {sessions[0]}, omitted {sessions[1]}"
                )
    sweep.assert_clean()
