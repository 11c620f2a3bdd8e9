"""Tests of :mod:`cells_oidc.internal.redirects`: pattern parsing, validation and matching.

Plain pytest functions: no Django settings, no database.
"""

from __future__ import annotations

import ast
import random
import urllib.parse
from pathlib import Path

import pytest

from cells_oidc.internal import redirects
from cells_oidc.internal.redirects import (
    InvalidPattern,
    Pattern,
    default_redirect_uri,
    expand,
    is_loopback_host,
    origin_allowed,
    parse_origin_pattern,
    parse_origin_patterns,
    parse_redirect_pattern,
    parse_redirect_patterns,
    redirect_uri_allowed,
    validation_errors,
)

RANGE_PATTERN = "http://localhost:[3636-3666]/servers/callback"
SITES = ["https://cells.example.com", "http://127.0.0.1:8000"]
CYRILLIC_O = "\u043e"


# ---- the module itself --------------------------------------------------------------------


def test_module_imports_no_django() -> None:
    source = Path(redirects.__file__).read_text(encoding="utf-8")
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert imported  # the walk did find the imports
    assert [name for name in imported if name.split(".")[0] == "django"] == []


def test_invalid_pattern_is_a_value_error_with_details() -> None:
    with pytest.raises(InvalidPattern) as info:
        parse_redirect_pattern("http://app.example.com/cb")
    assert isinstance(info.value, ValueError)
    assert info.value.value == "http://app.example.com/cb"
    assert "https" in info.value.reason
    assert str(info.value).startswith("Invalid redirect URI 'http://app.example.com/cb': ")


# ---- parsing valid registrations ----------------------------------------------------------

VALID_REDIRECTS = [
    # raw, scheme, host, port_low, port_high, rest, server_name
    ("https://app.example.com/cb", "https", "app.example.com", None, None, "/cb", False),
    ("https://app.example.com", "https", "app.example.com", None, None, "", False),
    ("https://app.example.com/", "https", "app.example.com", None, None, "/", False),
    ("http://localhost:3000/servers/callback", "http", "localhost", 3000, 3000, "/servers/callback", False),
    ("https://x.example/cb?mode=a", "https", "x.example", None, None, "/cb?mode=a", False),
    ("https://x.example/cb?", "https", "x.example", None, None, "/cb?", False),
    ("https://x.example?mode=a", "https", "x.example", None, None, "?mode=a", False),
    (
        "https://x.example/cb?next=https://y.example/",
        "https",
        "x.example",
        None,
        None,
        "/cb?next=https://y.example/",
        False,
    ),
    ("http://localhost:[3636-3666]", "http", "localhost", 3636, 3666, "", False),
    (RANGE_PATTERN, "http", "localhost", 3636, 3666, "/servers/callback", False),
    ("http://localhost:[3636-3636]/cb", "http", "localhost", 3636, 3636, "/cb", False),
    ("http://127.0.0.1:[1-65535]/cb", "http", "127.0.0.1", 1, 65535, "/cb", False),
    ("http://[::1]:[8000-8010]/cb", "http", "[::1]", 8000, 8010, "/cb", False),
    ("https://localhost:[443-444]/cb", "https", "localhost", 443, 444, "/cb", False),
    ("http://127.0.0.1/cb", "http", "127.0.0.1", None, None, "/cb", False),
    ("http://[::1]/cb", "http", "[::1]", None, None, "/cb", False),
    ("http://[::1]:8080/cb", "http", "[::1]", 8080, 8080, "/cb", False),
    ("http://localhost", "http", "localhost", None, None, "", False),
    ("https://localhost/cb", "https", "localhost", None, None, "/cb", False),
    ("https://[2001:db8::1]/cb", "https", "[2001:db8::1]", None, None, "/cb", False),
    ("https://[2001:db8::1]:8443/cb", "https", "[2001:db8::1]", 8443, 8443, "/cb", False),
    ("https://192.0.2.10/cb", "https", "192.0.2.10", None, None, "/cb", False),
    ("https://app.example.com:8443/cb", "https", "app.example.com", 8443, 8443, "/cb", False),
    ("https://a.example:1/cb", "https", "a.example", 1, 1, "/cb", False),
    ("https://a.example:65535/cb", "https", "a.example", 65535, 65535, "/cb", False),
    ("https://xn--bcher-kva.example/cb", "https", "xn--bcher-kva.example", None, None, "/cb", False),
    ("https://my_service.internal/cb", "https", "my_service.internal", None, None, "/cb", False),
    ("https://app.example.com/a%2Fb", "https", "app.example.com", None, None, "/a%2Fb", False),
    (
        "https://app.example.com/a@b:c;d=e,f!$&'()+~",
        "https",
        "app.example.com",
        None,
        None,
        "/a@b:c;d=e,f!$&'()+~",
        False,
    ),
    ("https://app.example.com//double", "https", "app.example.com", None, None, "//double", False),
    ("http://serverName/oauth/oob", "http", "serverName", None, None, "/oauth/oob", True),
    ("https://serverName/oauth/oob?x=1", "https", "serverName", None, None, "/oauth/oob?x=1", True),
    ("http://serverName", "http", "serverName", None, None, "", True),
    ("cellsauth://serverName", "cellsauth", "serverName", None, None, "", True),
    ("cellsauth://serverName/cb?x=1", "cellsauth", "serverName", None, None, "/cb?x=1", True),
    ("cellsauth://callback", "cellsauth", "callback", None, None, "", False),
    ("cellsauth://Callback", "cellsauth", "Callback", None, None, "", False),
    ("cellsauth://localhost:[1-2]", "cellsauth", "localhost", 1, 2, "", False),
    ("my-app+v2.x://cb.local:1234/path", "my-app+v2.x", "cb.local", 1234, 1234, "/path", False),
    ("com.example.app:/oauth2redirect", "com.example.app", None, None, None, "/oauth2redirect", False),
    (
        "com.example.app:/oauth2redirect/example-provider",
        "com.example.app",
        None,
        None,
        None,
        "/oauth2redirect/example-provider",
        False,
    ),
    ("com.example.app:callback", "com.example.app", None, None, None, "callback", False),
]


@pytest.mark.parametrize(("raw", "scheme", "host", "low", "high", "rest", "server_name"), VALID_REDIRECTS)
def test_valid_redirect_pattern_fields(
    raw: str, scheme: str, host: str | None, low: int | None, high: int | None, rest: str, server_name: bool
) -> None:
    pattern = parse_redirect_pattern(raw)
    assert pattern == Pattern(raw, scheme, host, low, high, rest, server_name, origin=False)
    assert validation_errors(raw) == []


def test_redirect_pattern_of_max_length_is_valid() -> None:
    raw = "https://a.example/" + "a" * (redirects.MAX_URI_LENGTH - len("https://a.example/"))
    assert len(raw) == 2048
    assert parse_redirect_pattern(raw).rest == "/" + "a" * (2048 - len("https://a.example/"))
    with pytest.raises(InvalidPattern, match="longer than 2048"):
        parse_redirect_pattern(raw + "a")


# ---- rejecting invalid registrations ------------------------------------------------------

INVALID_REDIRECTS = [
    # port ranges
    ("http://localhost:[3666-3636]", "reversed"),
    ("http://localhost:[0-99999]", "port"),
    ("http://localhost:[0-99]", "port"),
    ("http://localhost:[1-70000]", "port"),
    ("http://localhost:[1-65536]", "port"),
    ("http://localhost:[a-b]", "range"),
    ("http://localhost:[3636]", "range"),
    ("http://localhost:[3636-]", "range"),
    ("http://localhost:[-3636]", "range"),
    ("http://localhost:[3636-3666", "range"),
    ("http://localhost:[3636--3666]", "range"),
    ("http://localhost:[+3636-3666]", "range"),
    ("http://localhost:[03636-3666]", "leading zeros"),
    ("http://localhost:[ 3636-3666]", "whitespace"),
    ("http://localhost:[3636-3666]x/cb", "range"),
    ("https://app.example.com:[3636-3666]/cb", "loopback"),
    ("http://127.0.0.2:[1-2]/cb", "loopback"),
    ("cellsauth://callback:[1-2]", "loopback"),
    ("http://localhost[3636-3666]/cb", "brackets"),
    # serverName
    ("http://serverName:8080/x", "serverName"),
    ("http://serverName:[1-2]/x", "serverName"),
    ("cellsauth://serverName:1", "serverName"),
    ("http://servername/x", "case-sensitive"),
    ("https://SERVERNAME/x", "case-sensitive"),
    # schemes
    ("HTTP://localhost:3636/cb", "lowercase"),
    ("Https://app.example.com/cb", "lowercase"),
    ("CellsAuth://callback", "lowercase"),
    ("javascript:alert(1)", "javascript"),
    ("JavaScript:alert(1)", "unsafe"),
    ("VIEW-SOURCE:https://a.example", "unsafe"),
    ("javascript://localhost/%0aalert(1)", "javascript"),
    ("data:text/html,x", "data"),
    ("file:///etc/passwd", "file"),
    ("vbscript:msgbox", "vbscript"),
    ("about:blank", "about"),
    ("blob:https://a.example/x", "blob"),
    ("filesystem:https://a.example/x", "filesystem"),
    ("ws://localhost/x", "'ws'"),
    ("wss://a.example/x", "wss"),
    ("ftp://a.example/x", "ftp"),
    ("mailto:a@b.example", "mailto"),
    ("tel:123", "tel"),
    ("sms:123", "sms"),
    ("intent://x", "intent"),
    ("chrome://settings", "chrome"),
    ("view-source:https://a.example", "view-source"),
    # http only for loopback (RFC 9700 §2.1 / RFC 6749 §3.1.2.1)
    ("http://app.example.com/cb", "https"),
    ("http://10.0.0.1/cb", "https"),
    ("http://127.0.0.2/cb", "https"),
    ("http://[::2]/cb", "https"),
    ("http://localhost.example.com/cb", "https"),
    # fragments, userinfo, wildcards
    ("https://app.example.com/cb#frag", "fragment"),
    ("https://app.example.com/cb#", "fragment"),
    ("https://user@app.example.com/cb", "userinfo"),
    ("https://user:pw@app.example.com/cb", "userinfo"),
    ("https://@app.example.com/cb", "userinfo"),
    ("http://localhost:3636@evil.com/cb", "userinfo"),
    ("https://*.example.com/cb", "wildcard"),
    ("https://app.example.com/*", "wildcard"),
    ("http://localhost:*/cb", "wildcard"),
    ("*", "wildcard"),
    # whitespace, control characters, backslashes, non-ASCII
    ("https://app.example.com/c b", "whitespace"),
    ("https://app.example.com/cb\n", "whitespace"),
    ("https://app.example.com/cb\t", "whitespace"),
    ("https://app.example.com/cb\x00", "control"),
    ("https://app.example.com/cb\x7f", "control"),
    ("https://app.example.com/cb\x85", "control"),
    ("https://app.example.com/cb\u2028", "whitespace"),
    ("https://app.example.com/cb\u00a0", "whitespace"),
    ("https://app.example.com/cb\u200b", "non-ASCII"),
    ("https://app.example.com\\cb", "backslash"),
    ("https://app.example.com\\@evil.com/cb", "backslash"),
    ("https://b\u00fccher.example/cb", "non-ASCII"),
    (f"https://l{CYRILLIC_O}calhost/cb", "non-ASCII"),
    ("https://app.example.com/caf\u00e9", "non-ASCII"),
    # hosts
    ("https:///cb", "empty host"),
    ("https://:443/cb", "empty host"),
    ("https://", "empty host"),
    ("cellsauth:///cb", "empty host"),
    ("https://app%2eexample.com/cb", "percent-encoding"),
    ("http://loca%6Chost/cb", "percent-encoding"),
    ("https://App.Example.com/cb", "lowercase"),
    ("http://LOCALHOST/cb", "lowercase"),
    ("https://app.example.com./cb", "trailing dot"),
    ("https://app..example.com/cb", "not a valid host name"),
    ("https://-app.example.com/cb", "not a valid host name"),
    ("https://app-.example.com/cb", "not a valid host name"),
    ("https://app.example.com;evil/cb", "not a valid host name"),
    ("https://app.example.com!/cb", "not a valid host name"),
    ("https://" + "a" * 64 + ".example/cb", "not a valid host name"),
    ("https://" + ".".join(["a" * 60] * 5) + "/cb", "longer than 253"),
    ("http://127.1/cb", "IPv4"),
    ("http://2130706433/cb", "IPv4"),
    ("http://0x7f.0.0.1/cb", "IPv4"),
    ("http://127.0.0.0x1/cb", "IPv4"),
    ("https://1.2.3.256/cb", "IPv4"),
    ("http://127.000.0.1/cb", "IPv4"),
    ("https://[2001:db8::1/cb", "unterminated"),
    ("https://[2001:db8::g]/cb", "IPv6"),
    ("https://[v1.fe]/cb", "IPv6"),
    ("https://[]/cb", "IPv6"),
    ("https://[2001:DB8::1]/cb", "canonical"),
    ("https://[2001:db8:0:0:0:0:0:1]/cb", "canonical"),
    ("http://[0:0:0:0:0:0:0:1]/cb", "canonical"),
    ("https://[::ffff:127.0.0.1]/cb", "IPv4-mapped"),
    ("https://[::1]x/cb", "unexpected"),
    ("https://app.example.com]/cb", "brackets"),
    # ports
    ("http://localhost:0/cb", "port"),
    ("http://localhost:65536/cb", "port"),
    ("http://localhost:99999999999/cb", "port"),
    ("http://localhost:08080/cb", "leading zeros"),
    ("http://localhost:/cb", "port after ':' is empty"),
    ("https://[::1]:/cb", "port after ':' is empty"),
    ("http://localhost:80a/cb", "port"),
    ("http://localhost:+80/cb", "port"),
    ("http://localhost:-80/cb", "port"),
    ("http://localhost:3636:3637/cb", "port"),
    ("http://localhost:3636;evil/cb", "port"),
    # relative / scheme-less / authority-less web URIs
    ("/cb", "relative"),
    ("//app.example.com/cb", "relative"),
    ("app.example.com/cb", "relative"),
    ("cb", "relative"),
    (":cb", "relative"),
    ("1app:/cb", "relative"),
    ("https:app.example.com/cb", "'//'"),
    ("http:/localhost:3636/cb", "'//'"),
    ("localhost:3000/cb", "HOST:PORT"),
    ("localhost:3000", "HOST:PORT"),
    ("myapp:", "give a path"),
    ("myapp:?x", "give a path"),
    # path and query
    ("https://app.example.com/a/../b", "dot-segments"),
    ("https://app.example.com/a/./b", "dot-segments"),
    ("https://app.example.com/cb/..", "dot-segments"),
    ("https://app.example.com/a/%2e%2E/b", "dot-segments"),
    ("https://app.example.com/a/%2e/b", "dot-segments"),
    ("com.example.app:../cb", "dot-segments"),
    ("https://app.example.com/a%zz", "percent-encoding"),
    ("https://app.example.com/a%2", "percent-encoding"),
    ("https://app.example.com/a<b", "not allowed in a URI"),
    ('https://app.example.com/a"b', "not allowed in a URI"),
    ("https://app.example.com/a{b}", "not allowed in a URI"),
    ("https://app.example.com/a|b", "not allowed in a URI"),
    ("https://app.example.com/a^b", "not allowed in a URI"),
    ("https://app.example.com/a`b", "not allowed in a URI"),
    ("https://app.example.com/[x]", "not allowed in a URI"),
    ("https://app.example.com/cb?a=[1]", "not allowed in a URI"),
    ("https://a.example/cb,https://b.example/cb", "separate"),
    # miscellaneous
    ("", "empty"),
    ("null", "null"),
    ("https://a.example/" + "a" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize(("raw", "keyword"), INVALID_REDIRECTS)
def test_invalid_redirect_pattern(raw: str, keyword: str) -> None:
    with pytest.raises(InvalidPattern) as info:
        parse_redirect_pattern(raw)
    message = str(info.value)
    assert keyword.lower() in message.lower(), message
    assert message.startswith("Invalid redirect URI ")
    assert repr(raw)[:40] in message  # names the offending value
    if raw.split() == [raw]:  # a single whitespace-free token: the same message in a list
        assert validation_errors(raw) == [message]
        with pytest.raises(InvalidPattern):
            parse_redirect_patterns(f"https://ok.example/cb {raw}")


@pytest.mark.parametrize("raw", [None, b"https://a.example/cb", 42, ["https://a.example/cb"]])
def test_non_string_registration_is_invalid(raw: object) -> None:
    with pytest.raises(InvalidPattern, match="expected a string"):
        parse_redirect_pattern(raw)  # type: ignore[arg-type]
    with pytest.raises(InvalidPattern, match="expected a string"):
        parse_origin_pattern(raw)  # type: ignore[arg-type]


# ---- origins: parsing ---------------------------------------------------------------------

VALID_ORIGINS = [
    ("https://app.example.com", "https", "app.example.com", None, None, False),
    ("https://app.example.com:8443", "https", "app.example.com", 8443, 8443, False),
    ("http://localhost:3000", "http", "localhost", 3000, 3000, False),
    ("http://localhost:[3000-3010]", "http", "localhost", 3000, 3010, False),
    ("http://[::1]:8080", "http", "[::1]", 8080, 8080, False),
    ("http://127.0.0.1", "http", "127.0.0.1", None, None, False),
    ("http://serverName", "http", "serverName", None, None, True),
    ("https://serverName", "https", "serverName", None, None, True),
    ("capacitor://localhost", "capacitor", "localhost", None, None, False),
    ("cellsauth://serverName", "cellsauth", "serverName", None, None, True),
]


@pytest.mark.parametrize(("raw", "scheme", "host", "low", "high", "server_name"), VALID_ORIGINS)
def test_valid_origin_pattern_fields(
    raw: str, scheme: str, host: str, low: int | None, high: int | None, server_name: bool
) -> None:
    assert parse_origin_pattern(raw) == Pattern(raw, scheme, host, low, high, "", server_name, origin=True)
    assert validation_errors(raw, origins=True) == []


INVALID_ORIGINS = [
    ("https://app.example.com/", "trailing '/'"),
    ("https://app.example.com/path", "no path"),
    ("https://app.example.com?x", "no path or query"),
    ("http://app.example.com", "https"),
    ("https://app.example.com:[1-2]", "loopback"),
    ("http://localhost:[2-1]", "reversed"),
    ("http://serverName:80", "serverName"),
    ("HTTPS://app.example.com", "lowercase"),
    ("com.example.app:/x", "needs '//' and a host"),
    ("null", "null"),
    ("*", "wildcard"),
    ("https://*.example.com", "wildcard"),
    ("https://user@app.example.com", "userinfo"),
    ("https://app.example.com#", "fragment"),
    ("javascript:x", "javascript"),
    ("app.example.com", "relative"),
]


@pytest.mark.parametrize(("raw", "keyword"), INVALID_ORIGINS)
def test_invalid_origin_pattern(raw: str, keyword: str) -> None:
    with pytest.raises(InvalidPattern) as info:
        parse_origin_pattern(raw)
    message = str(info.value)
    assert keyword.lower() in message.lower(), message
    assert message.startswith(f"Invalid origin {raw!r}: ")
    assert validation_errors(raw, origins=True) == [message]


def test_origin_with_trailing_slash_is_a_valid_redirect_uri() -> None:
    assert validation_errors("https://app.example.com/") == []
    assert len(validation_errors("https://app.example.com/", origins=True)) == 1


# ---- list parsing, caching, validation_errors ---------------------------------------------


def test_parse_redirect_patterns_splits_on_whitespace_and_drops_duplicates() -> None:
    text = f" https://a.example/cb\n{RANGE_PATTERN}\t\tcellsauth://serverName  https://a.example/cb \n"
    patterns = parse_redirect_patterns(text)
    assert [p.raw for p in patterns] == ["https://a.example/cb", RANGE_PATTERN, "cellsauth://serverName"]
    assert parse_redirect_patterns("") == ()
    assert parse_redirect_patterns(" \n\t ") == ()


def test_parse_patterns_are_cached_per_text() -> None:
    text = "https://cache.example/cb http://localhost:[1-2]"
    first = parse_redirect_patterns(text)
    assert parse_redirect_patterns(text) is first
    assert parse_redirect_patterns.cache_info().maxsize == 1024
    origins = parse_origin_patterns("https://cache.example")
    assert parse_origin_patterns("https://cache.example") is origins
    assert parse_origin_patterns.cache_info().maxsize == 1024
    assert origins[0].origin is True
    assert first[0].origin is False


def test_parse_patterns_raise_on_first_bad_one() -> None:
    with pytest.raises(InvalidPattern) as info:
        parse_redirect_patterns(
            "https://a.example/cb http://first-bad.example/cb https://second-bad.example/#"
        )
    assert "first-bad.example" in str(info.value)
    with pytest.raises(InvalidPattern, match="trailing"):
        parse_origin_patterns("https://a.example https://b.example/")


def test_validation_errors_collects_every_problem() -> None:
    text = (
        "https://ok.example/cb http://bad.example/cb https://ok.example/cb *\n"
        "https://x.example/#f https://ok.example/cb http://localhost:[9-1]"
    )
    errors = validation_errors(text)
    assert len(errors) == 5
    assert "bad.example" in errors[0] and "https" in errors[0]
    assert errors[1] == "The redirect URI 'https://ok.example/cb' is listed more than once."
    assert "wildcard" in errors[2]
    assert "fragment" in errors[3]
    assert "reversed" in errors[4]


def test_validation_errors_for_origins() -> None:
    errors = validation_errors(
        "https://a.example/ https://b.example http://c.example https://b.example", origins=True
    )
    assert len(errors) == 3
    assert "trailing '/'" in errors[0]
    assert "https" in errors[1] and "c.example" in errors[1]
    assert errors[2] == "The origin 'https://b.example' is listed more than once."


@pytest.mark.parametrize(
    "text", ["", "   ", "\n", f"https://a.example/cb {RANGE_PATTERN} cellsauth://serverName"]
)
def test_validation_errors_empty_when_valid(text: str) -> None:
    assert validation_errors(text) == []


def test_validation_errors_on_non_string() -> None:
    assert validation_errors(None) == ["Expected a whitespace-separated string, got NoneType."]  # type: ignore[arg-type]


# ---- matching: the port-range pattern under attack ----------------------------------------

RANGE_ATTACKS = [
    "http://localhost.evil.com:3636/servers/callback",
    "http://localhost:3636@evil.com/servers/callback",
    "http://evil.com@localhost:3636/servers/callback",
    "http://@localhost:3636/servers/callback",
    "http://user:@localhost:3636/servers/callback",
    "http://localhost:3667/servers/callback",
    "http://localhost:3635/servers/callback",
    "http://localhost:36360/servers/callback",
    "http://localhost:0/servers/callback",
    "http://localhost:65536/servers/callback",
    "http://localhost/servers/callback",
    "https://localhost:3636/servers/callback",
    "http://127.0.0.1:3636/servers/callback",
    "http://[::1]:3636/servers/callback",
    "http://[::ffff:127.0.0.1]:3636/servers/callback",
    "http://0x7f.0.0.1:3636/servers/callback",
    "http://LOCALHOST:3636/servers/callback",
    "http://Localhost:3636/servers/callback",
    "http://locaIhost:3636/servers/callback",
    f"http://l{CYRILLIC_O}calhost:3636/servers/callback",
    "http://xn--lcalhost-9xf:3636/servers/callback",
    "http://localhost.:3636/servers/callback",
    "http://localhost:3636/servers/callback/",
    "http://localhost:3636//servers/callback",
    "http://localhost:3636/servers//callback",
    "http://localhost:3636/servers/./callback",
    "http://localhost:3636/servers/callback/../callback",
    "http://localhost:3636/servers%2Fcallback",
    "http://localhost:3636/servers/%63allback",
    "http://localhost:3636/servers/Callback",
    "http://localhost:3636/SERVERS/callback",
    "http://localhost:3636/servers/callback?x",
    "http://localhost:3636/servers/callback?",
    "http://localhost:3636/servers/callback;x",
    "http://localhost:3636/servers/callback#x",
    "http://localhost:3636/servers/callback#",
    "http://localhost:3636/servers/callback%23x",
    "http://localhost:3636/servers/callback%00",
    "http://localhost:3636/servers/callback\x00",
    "http://localhost:3636/servers/callback\x7f",
    "http://localhost:3636/servers/callback\u2028",
    "http://localhost:3636/servers/callback\u200b",
    "http://localhost:3636/servers/callback\u00a0",
    "http://localhost:3636/servers/callback ",
    " http://localhost:3636/servers/callback",
    "\thttp://localhost:3636/servers/callback",
    "http://local\thost:3636/servers/callback",
    "http://localhost:36\t36/servers/callback",
    "http://localhost:3636/servers/\ncallback",
    "http://localhost:3636/servers/callback\r\n",
    "http://localhost:3636\t/servers/callback",
    "http://localhost:3636 /servers/callback",
    "http://localhost:03636/servers/callback",
    "http://localhost:003636/servers/callback",
    "http://localhost:+3636/servers/callback",
    "http://localhost:3636:3636/servers/callback",
    "http://localhost:3636;evil/servers/callback",
    "http://localhost:3636;evil/",
    "http://localhost:\uff13\uff16\uff13\uff16/servers/callback",
    "http://localhost:36%336/servers/callback",
    "http://localhost:/servers/callback",
    "http://localhost:[3636-3666]/servers/callback",
    "http://localhost:3636\\@evil.com/servers/callback",
    "http://localhost\\@evil.com:3636/servers/callback",
    "http:\\\\localhost:3636/servers/callback",
    "http://localhost%2eevil.com:3636/servers/callback",
    "http://loca%6Chost:3636/servers/callback",
    "http://localhost\x00.evil.com:3636/servers/callback",
    "http://localhost:3636?/servers/callback",
    "http:/localhost:3636/servers/callback",
    "http:localhost:3636/servers/callback",
    "http:///localhost:3636/servers/callback",
    "HTTP://localhost:3636/servers/callback",
    "Http://localhost:3636/servers/callback",
    "ttp://localhost:3636/servers/callback",
    "//localhost:3636/servers/callback",
    "localhost:3636/servers/callback",
    "/servers/callback",
    "",
    "http://localhost:3636/servers/callback" + "/" * 3000,
    "http://localhost:3636/servers/callback?" + "a" * 3000,
]


@pytest.mark.parametrize("uri", RANGE_ATTACKS)
def test_range_pattern_refuses_attack(uri: str) -> None:
    assert redirect_uri_allowed(uri, RANGE_PATTERN, SITES) is False


@pytest.mark.parametrize("port", [3636, 3637, 3650, 3665, 3666])
def test_range_pattern_accepts_ports_in_range(port: int) -> None:
    assert redirect_uri_allowed(f"http://localhost:{port}/servers/callback", RANGE_PATTERN, SITES) is True


@pytest.mark.parametrize(
    "uri",
    [
        None,
        b"http://localhost:3636/servers/callback",
        bytearray(b"http://localhost:3636/servers/callback"),
        ["http://localhost:3636/servers/callback"],
        ("http://localhost:3636/servers/callback",),
        3636,
        object(),
    ],
)
def test_non_string_request_never_matches(uri: object) -> None:
    assert redirect_uri_allowed(uri, RANGE_PATTERN, SITES) is False
    assert origin_allowed(uri, "http://localhost:[3636-3666]", SITES) is False


@pytest.mark.parametrize(
    "patterns_text", [None, b"http://localhost:[3636-3666]/servers/callback", [RANGE_PATTERN]]
)
def test_non_string_registration_never_matches(patterns_text: object) -> None:
    uri = "http://localhost:3636/servers/callback"
    assert redirect_uri_allowed(uri, patterns_text, SITES) is False  # type: ignore[arg-type]
    assert origin_allowed("http://localhost:3636", patterns_text, SITES) is False  # type: ignore[arg-type]


def _single_edits(text: str, alphabet: str) -> set[str]:
    """Every string one deletion, insertion or substitution away from ``text``."""
    edits: set[str] = set()
    for i in range(len(text) + 1):
        if i < len(text):
            edits.add(text[:i] + text[i + 1 :])
        for char in alphabet:
            edits.add(text[:i] + char + text[i:])
            if i < len(text):
                edits.add(text[:i] + char + text[i + 1 :])
    return edits


EDIT_ALPHABET = "/:@.?#%\\[]-_;=&+ \t\n\x00\u2028\u0131" + CYRILLIC_O + "0125abhlsxyzAHLS"


def test_every_single_edit_of_a_range_uri_matches_only_when_legitimate() -> None:
    legitimate = {f"http://localhost:{port}/servers/callback" for port in range(3636, 3667)}
    edits = _single_edits("http://localhost:3640/servers/callback", EDIT_ALPHABET)
    matched = {uri for uri in edits if redirect_uri_allowed(uri, RANGE_PATTERN, SITES)}
    assert len(edits) > 2500
    assert matched == legitimate & edits
    assert "http://localhost:3641/servers/callback" in matched  # the check can fail both ways


def test_every_single_edit_of_a_server_name_uri_matches_only_when_legitimate() -> None:
    sites = ["https://h.example/cells", "http://127.0.0.1:8000"]
    legitimate = {"https://h.example/cells/oauth/oob", "http://127.0.0.1:8000/oauth/oob"}
    for base in sorted(legitimate):
        edits = _single_edits(base, EDIT_ALPHABET)
        matched = {uri for uri in edits if redirect_uri_allowed(uri, "http://serverName/oauth/oob", sites)}
        assert matched == legitimate & edits
        assert redirect_uri_allowed(base, "http://serverName/oauth/oob", sites) is True


def test_random_garbage_never_raises_and_matches_only_exact_uri() -> None:
    rng = random.Random(8252)
    alphabet = "htps:/localhost3660[]-@.?#%\\ \t\x00\u2028\u043eSNamerv"
    registration = f"{RANGE_PATTERN} http://serverName/x cellsauth://serverName com.example.app:/cb"
    for _ in range(3000):
        uri = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert redirect_uri_allowed(uri, registration, SITES) is False
        assert origin_allowed(uri, "http://localhost:[3636-3666] http://serverName", SITES) is False
        assert validation_errors(uri) is not None  # never raises


# ---- matching: plain, custom schemes, serverName, loopback --------------------------------

MATCH_CASES = [
    # (requested uri, registration, site urls, expected)
    ("https://app.example.com/cb", "https://app.example.com/cb", SITES, True),
    ("https://app.example.com/cb/", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com:443/cb", "https://app.example.com/cb", SITES, False),
    ("https://APP.example.com/cb", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com/CB", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com/cb?", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com/cb?x=1", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com.evil.com/cb", "https://app.example.com/cb", SITES, False),
    ("https://evil.com/app.example.com/cb", "https://app.example.com/cb", SITES, False),
    ("http://app.example.com/cb", "https://app.example.com/cb", SITES, False),
    ("https://app.example.com:8443/cb", "https://app.example.com:8443/cb", SITES, True),
    ("https://app.example.com/cb", "https://app.example.com:8443/cb", SITES, False),
    ("https://app.example.com:8444/cb", "https://app.example.com:8443/cb", SITES, False),
    ("https://x.example/cb?mode=a", "https://x.example/cb?mode=a", SITES, True),
    ("https://x.example/cb?mode=b", "https://x.example/cb?mode=a", SITES, False),
    ("https://x.example/cb?mode=a&x=1", "https://x.example/cb?mode=a", SITES, False),
    ("https://x.example/cb", "https://x.example/cb?mode=a", SITES, False),
    ("https://x.example/cb?", "https://x.example/cb?", SITES, True),
    ("https://x.example/cb", "https://x.example/cb?", SITES, False),
    ("https://app.example.com/a%2Fb", "https://app.example.com/a%2Fb", SITES, True),
    ("https://app.example.com/a%2fb", "https://app.example.com/a%2Fb", SITES, False),
    ("https://app.example.com/a/b", "https://app.example.com/a%2Fb", SITES, False),
    ("http://localhost:3000/servers/callback", "http://localhost:3000/servers/callback", SITES, True),
    ("http://localhost:3001/servers/callback", "http://localhost:3000/servers/callback", SITES, False),
    ("http://localhost/servers/callback", "http://localhost:3000/servers/callback", SITES, False),
    ("http://localhost:3636", "http://localhost:3636", SITES, True),
    ("http://localhost:3636/", "http://localhost:3636", SITES, False),
    ("http://localhost:3636", "http://localhost:3636/", SITES, False),
    ("http://localhost:3636", "http://localhost:[3636-3666]", SITES, True),
    ("http://localhost:3666/", "http://localhost:[3636-3666]", SITES, False),
    ("http://localhost", "http://localhost:[3636-3666]", SITES, False),
    ("http://[::1]:8005/cb", "http://[::1]:[8000-8010]/cb", SITES, True),
    ("http://[::1]:8011/cb", "http://[::1]:[8000-8010]/cb", SITES, False),
    ("http://[::1]/cb", "http://[::1]:[8000-8010]/cb", SITES, False),
    ("http://[0::1]:8005/cb", "http://[::1]:[8000-8010]/cb", SITES, False),
    ("http://localhost:3636/cb", "http://localhost:[3636-3636]/cb", SITES, True),
    ("http://localhost:3637/cb", "http://localhost:[3636-3636]/cb", SITES, False),
    ("https://[2001:db8::1]/cb", "https://[2001:db8::1]/cb", SITES, True),
    ("https://[2001:DB8::1]/cb", "https://[2001:db8::1]/cb", SITES, False),
    ("https://[2001:db8:0::1]/cb", "https://[2001:db8::1]/cb", SITES, False),
    ("https://[2001:db8::1/cb", "https://[2001:db8::1]/cb", SITES, False),
    # custom schemes
    ("com.example.app:/oauth2redirect", "com.example.app:/oauth2redirect", SITES, True),
    ("com.example.app:/oauth2redirect/", "com.example.app:/oauth2redirect", SITES, False),
    ("com.example.app://oauth2redirect", "com.example.app:/oauth2redirect", SITES, False),
    ("COM.example.app:/oauth2redirect", "com.example.app:/oauth2redirect", SITES, False),
    ("com.example.app:/oauth2redirect?x", "com.example.app:/oauth2redirect", SITES, False),
    ("com.example.app:/oauth2redirect#x", "com.example.app:/oauth2redirect", SITES, False),
    ("com.example.app:oauth2redirect", "com.example.app:/oauth2redirect", SITES, False),
    ("com.example.evil:/oauth2redirect", "com.example.app:/oauth2redirect", SITES, False),
    ("cellsauth://callback", "cellsauth://callback", SITES, True),
    ("cellsauth://callback/", "cellsauth://callback", SITES, False),
    ("cellsauth://CALLBACK", "cellsauth://callback", SITES, False),
    ("cellsauth://callback:1", "cellsauth://callback", SITES, False),
    ("cellsauth://callback@evil", "cellsauth://callback", SITES, False),
    ("cellsauth:/callback", "cellsauth://callback", SITES, False),
    ("cellsauth://Callback", "cellsauth://Callback", SITES, True),
    ("cellsauth://callback", "cellsauth://Callback", SITES, False),
    ("my-app+v2.x://cb.local:1234/path", "my-app+v2.x://cb.local:1234/path", SITES, True),
    # serverName, custom scheme
    ("cellsauth://cells.example.com", "cellsauth://serverName", ["https://cells.example.com"], True),
    ("cellsauth://cells.example.com/", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://evil.com", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://serverName", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://servername", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://CELLS.example.com", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://cells.example.com:443", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("https://cells.example.com", "cellsauth://serverName", ["https://cells.example.com"], False),
    ("cellsauth://127.0.0.1:8000", "cellsauth://serverName", SITES, True),
    ("cellsauth://cells.example.com", "cellsauth://serverName", SITES, True),
    ("cellsauth://127.0.0.1", "cellsauth://serverName", SITES, False),
    ("cellsauth://127.0.0.1:8001", "cellsauth://serverName", SITES, False),
    ("cellsauth://h.example", "cellsauth://serverName", ["https://h.example/cells"], True),
    ("cellsauth://h.example/cells", "cellsauth://serverName", ["https://h.example/cells"], False),
    (
        "cellsauth://h.example:8443/cb?x=1",
        "cellsauth://serverName/cb?x=1",
        ["https://h.example:8443/c"],
        True,
    ),
    ("cellsauth://h.example:8443/cb", "cellsauth://serverName/cb?x=1", ["https://h.example:8443/c"], False),
    ("cellsauth://[::1]:8000", "cellsauth://serverName", ["http://[::1]:8000"], True),
    ("cellsauth://cells.example.com", "cellsauth://serverName", [], False),
    # serverName, http(s): scheme, host, port and path prefix from the site URL
    ("https://h.example/cells/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], True),
    ("https://h.example/cells/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells/"], True),
    ("https://h.example/cells/oauth/oob", "https://serverName/oauth/oob", ["https://h.example/cells"], True),
    ("https://h.example/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], False),
    ("http://h.example/cells/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], False),
    (
        "https://h.example/cells//oauth/oob",
        "http://serverName/oauth/oob",
        ["https://h.example/cells/"],
        False,
    ),
    ("https://h.example/cellsoauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], False),
    ("http://serverName/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], False),
    ("https://serverName/cells/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/cells"], False),
    ("https://h.example/oauth/oob", "http://serverName/oauth/oob", ["https://h.example/"], True),
    ("https://h.example//oauth/oob", "http://serverName/oauth/oob", ["https://h.example/"], False),
    ("https://h.example/cells", "http://serverName", ["https://h.example/cells"], True),
    ("https://h.example/cells/", "http://serverName", ["https://h.example/cells"], False),
    ("https://h.example/cells/", "http://serverName/", ["https://h.example/cells/"], True),
    ("https://h.example", "http://serverName", ["https://h.example/"], True),
    ("https://h.example/cells?x=1", "http://serverName?x=1", ["https://h.example/cells"], True),
    ("https://h.example:8443/cells/x", "http://serverName/x", ["https://h.example:8443/cells"], True),
    ("https://h.example/cells/x", "http://serverName/x", ["https://h.example:8443/cells"], False),
    ("https://h.example:8444/cells/x", "http://serverName/x", ["https://h.example:8443/cells"], False),
    ("https://cells.example.com/x", "http://serverName/x", ["https://Cells.Example.COM"], True),
    ("https://cells.example.com/x", "http://serverName/x", [], False),
    ("https://cells.example.com/x", "http://serverName/x", ["not a url", "ftp://cells.example.com"], False),
    ("https://cells.example.com/x", "http://serverName/x", "https://cells.example.com", True),
    # a broken registered value never matches, the valid ones next to it still do
    ("https://a.example/cb", "https://a.example/cb http://bad.example/cb", SITES, True),
    ("http://bad.example/cb", "https://a.example/cb http://bad.example/cb", SITES, False),
    ("https://a.example/cb#", "https://a.example/cb#", SITES, False),
    ("https://a.example/cb", "", SITES, False),
    # several patterns
    ("http://localhost:3640/servers/callback", f"https://a.example/cb\n{RANGE_PATTERN}", SITES, True),
    ("https://a.example/cb", f"https://a.example/cb\n{RANGE_PATTERN}", SITES, True),
    ("https://a.example/servers/callback", f"https://a.example/cb\n{RANGE_PATTERN}", SITES, False),
]


@pytest.mark.parametrize(("uri", "registration", "sites", "expected"), MATCH_CASES)
def test_redirect_uri_allowed(uri: str, registration: str, sites: list[str], expected: bool) -> None:
    assert redirect_uri_allowed(uri, registration, sites) is expected


SERVER_NAME_SITES = ["https://cells.example.com", "http://127.0.0.1:8000", "https://h.example:8443/cells/"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://cells.example.com/oauth/oob", True),
        ("http://127.0.0.1:8000/oauth/oob", True),
        ("https://h.example:8443/cells/oauth/oob", True),
        ("http://127.0.0.1:8001/oauth/oob", False),  # no RFC 8252 any-port for serverName
        ("http://127.0.0.1/oauth/oob", False),
        ("https://127.0.0.1:8000/oauth/oob", False),
        ("https://h.example/cells/oauth/oob", False),
        ("https://h.example:8443/oauth/oob", False),
        ("https://evil.example/oauth/oob", False),
        ("http://cells.example.com/oauth/oob", False),
        ("https://cells.example.com:443/oauth/oob", False),
        ("https://cells.example.com/oauth/oob/", False),
    ],
)
def test_server_name_with_several_sites(uri: str, expected: bool) -> None:
    assert redirect_uri_allowed(uri, "http://serverName/oauth/oob", SERVER_NAME_SITES) is expected


# ---- RFC 8252 §7.3: any port for port-less http loopback IP literals -----------------------

LOOPBACK_CASES = [
    ("http://127.0.0.1:1/cb", "http://127.0.0.1/cb", True),
    ("http://127.0.0.1:51004/cb", "http://127.0.0.1/cb", True),
    ("http://127.0.0.1:65535/cb", "http://127.0.0.1/cb", True),
    ("http://127.0.0.1/cb", "http://127.0.0.1/cb", True),
    ("http://127.0.0.1:0/cb", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:65536/cb", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:051004/cb", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:/cb", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:5000/cb/", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:5000/cb?x", "http://127.0.0.1/cb", False),
    ("http://127.0.0.2:5000/cb", "http://127.0.0.1/cb", False),
    ("https://127.0.0.1:5000/cb", "http://127.0.0.1/cb", False),
    ("http://localhost:5000/cb", "http://127.0.0.1/cb", False),
    ("http://127.0.0.1:5000", "http://127.0.0.1", True),
    ("http://127.0.0.1:5000/", "http://127.0.0.1", False),
    ("http://[::1]:5000/cb", "http://[::1]/cb", True),
    ("http://[::1]/cb", "http://[::1]/cb", True),
    ("http://[::1]:65535/cb", "http://[::1]/cb", True),
    ("http://[::1]:0/cb", "http://[::1]/cb", False),
    ("http://[0:0:0:0:0:0:0:1]:5000/cb", "http://[::1]/cb", False),
    ("http://127.0.0.1:5000/cb", "http://[::1]/cb", False),
    # not for localhost (RFC 8252 §8.3) ...
    ("http://localhost:5000/cb", "http://localhost/cb", False),
    ("http://localhost/cb", "http://localhost/cb", True),
    # ... not for https ...
    ("https://127.0.0.1:5000/cb", "https://127.0.0.1/cb", False),
    ("https://127.0.0.1/cb", "https://127.0.0.1/cb", True),
    ("https://[::1]:5000/cb", "https://[::1]/cb", False),
    # ... and not when a port is registered
    ("http://127.0.0.1:5001/cb", "http://127.0.0.1:5000/cb", False),
    ("http://127.0.0.1:5000/cb", "http://127.0.0.1:5000/cb", True),
    ("http://127.0.0.1/cb", "http://127.0.0.1:5000/cb", False),
    ("http://127.0.0.1:7000/cb", "http://127.0.0.1:[5000-6000]/cb", False),
]


@pytest.mark.parametrize(("uri", "registration", "expected"), LOOPBACK_CASES)
def test_rfc8252_any_port_loopback(uri: str, registration: str, expected: bool) -> None:
    assert redirect_uri_allowed(uri, registration, SITES) is expected


def test_length_limit_on_requested_uri() -> None:
    registration = "http://127.0.0.1/" + "a" * (2043 - len("http://127.0.0.1/"))
    assert len(registration) == 2043
    at_limit = registration.replace("127.0.0.1/", "127.0.0.1:1234/", 1)
    over_limit = registration.replace("127.0.0.1/", "127.0.0.1:12345/", 1)
    assert (len(at_limit), len(over_limit)) == (2048, 2049)
    assert redirect_uri_allowed(at_limit, registration, SITES) is True
    assert redirect_uri_allowed(over_limit, registration, SITES) is False


# ---- origins: matching --------------------------------------------------------------------

ORIGIN_REGISTRATION = (
    "https://app.example.com http://localhost:[3000-3010] http://serverName cellsauth://serverName "
    "http://127.0.0.1 https://[2001:db8::1]:8443"
)
ORIGIN_SITES = ["https://cells.example.com", "http://127.0.0.1:8000/cells"]

ORIGIN_CASES = [
    ("https://app.example.com", True),
    ("https://app.example.com/", False),
    ("https://app.example.com/x", False),
    ("https://app.example.com?x", False),
    ("https://app.example.com#", False),
    ("https://app.example.com:443", False),
    ("http://app.example.com", False),
    ("HTTPS://app.example.com", False),
    ("https://APP.example.com", False),
    ("https://app.example.com.evil.com", False),
    ("https://evil.com@app.example.com", False),
    ("https://app.example.com ", False),
    ("https://app.example.com\n", False),
    ("http://localhost:3000", True),
    ("http://localhost:3010", True),
    ("http://localhost:3011", False),
    ("http://localhost:2999", False),
    ("http://localhost", False),
    ("http://localhost:03000", False),
    ("http://localhost:3000/", False),
    ("https://cells.example.com", True),
    ("https://cells.example.com/", False),
    ("http://127.0.0.1:8000", True),
    ("http://127.0.0.1:8000/cells", False),
    ("http://127.0.0.1:8001", False),  # no RFC 8252 any-port rule for CORS origins
    ("http://127.0.0.1", True),
    ("cellsauth://cells.example.com", True),
    ("cellsauth://127.0.0.1:8000", True),
    ("cellsauth://serverName", False),
    ("http://serverName", False),
    ("https://[2001:db8::1]:8443", True),
    ("https://[2001:db8::1]", False),
    ("null", False),
    ("", False),
    ("*", False),
    ("file://", False),
]


@pytest.mark.parametrize(("origin", "expected"), ORIGIN_CASES)
def test_origin_allowed(origin: str, expected: bool) -> None:
    assert origin_allowed(origin, ORIGIN_REGISTRATION, ORIGIN_SITES) is expected


def test_invalid_origin_registration_never_matches() -> None:
    assert origin_allowed("https://app.example.com", "https://app.example.com/", SITES) is False
    assert (
        origin_allowed("https://app.example.com", "https://app.example.com/ https://app.example.com", SITES)
        is True
    )
    assert origin_allowed("null", "null", SITES) is False


def test_redirect_patterns_are_not_origin_patterns() -> None:
    # A redirect URI registration with a path never authorizes an origin and vice versa.
    assert origin_allowed("https://app.example.com", "https://app.example.com/cb", SITES) is False
    assert redirect_uri_allowed("https://app.example.com", "https://app.example.com", SITES) is True
    assert redirect_uri_allowed("https://app.example.com/", "https://app.example.com", SITES) is False


# ---- expand / default_redirect_uri ------------------------------------------------------

EXPAND_CASES = [
    ("https://app.example.com/cb", SITES, ["https://app.example.com/cb"]),
    ("com.example.app:/cb", SITES, ["com.example.app:/cb"]),
    ("cellsauth://callback", SITES, ["cellsauth://callback"]),
    ("http://localhost:3636/cb", SITES, ["http://localhost:3636/cb"]),
    ("http://localhost:[3636-3666]/cb", SITES, None),
    ("http://localhost:[3636-3636]/cb", SITES, ["http://localhost:3636/cb"]),
    ("http://127.0.0.1/cb", SITES, None),
    ("http://[::1]/cb", SITES, None),
    ("http://127.0.0.1:5000/cb", SITES, ["http://127.0.0.1:5000/cb"]),
    ("https://127.0.0.1/cb", SITES, ["https://127.0.0.1/cb"]),
    ("http://localhost/cb", SITES, ["http://localhost/cb"]),
    (
        "http://serverName/oauth/oob",
        SITES,
        ["https://cells.example.com/oauth/oob", "http://127.0.0.1:8000/oauth/oob"],
    ),
    ("http://serverName/oauth/oob", ["https://h.example/cells/"], ["https://h.example/cells/oauth/oob"]),
    ("http://serverName", ["https://h.example/cells/"], ["https://h.example/cells"]),
    ("http://serverName/x", ["https://h.example", "https://h.example/"], ["https://h.example/x"]),
    ("http://serverName/x", [], []),
    ("cellsauth://serverName", SITES, ["cellsauth://cells.example.com", "cellsauth://127.0.0.1:8000"]),
    ("cellsauth://serverName/cb", ["https://h.example:8443/cells"], ["cellsauth://h.example:8443/cb"]),
]


@pytest.mark.parametrize(("raw", "sites", "expected"), EXPAND_CASES)
def test_expand(raw: str, sites: list[str], expected: list[str] | None) -> None:
    pattern = parse_redirect_pattern(raw)
    assert expand(pattern, sites) == expected
    for uri in expected or []:
        assert redirect_uri_allowed(uri, raw, sites) is True


@pytest.mark.parametrize("sites", [None, 42, [None, b"https://h.example", ["https://h.example"]], ["", " "]])
def test_unusable_site_urls_make_server_name_match_nothing(sites: object) -> None:
    pattern = parse_redirect_pattern("http://serverName/x")
    assert expand(pattern, sites) == []  # type: ignore[arg-type]
    assert redirect_uri_allowed("https://h.example/x", "http://serverName/x", sites) is False  # type: ignore[arg-type]
    assert redirect_uri_allowed("https://a.example/x", "https://a.example/x", sites) is True  # type: ignore[arg-type]


def test_expand_origins() -> None:
    sites = ["https://h.example/cells", "http://127.0.0.1:8000"]
    assert expand(parse_origin_pattern("http://serverName"), sites) == [
        "https://h.example",
        "http://127.0.0.1:8000",
    ]
    assert expand(parse_origin_pattern("http://localhost:[1-2]"), sites) is None
    assert expand(parse_origin_pattern("http://127.0.0.1"), sites) == ["http://127.0.0.1"]


DEFAULT_CASES = [
    ("https://app.example.com/cb", SITES, "https://app.example.com/cb"),
    ("  https://app.example.com/cb\n", SITES, "https://app.example.com/cb"),
    ("https://app.example.com/cb https://app.example.com/cb", SITES, "https://app.example.com/cb"),
    ("https://app.example.com/cb https://app.example.com/cb2", SITES, None),
    ("com.example.app:/cb", SITES, "com.example.app:/cb"),
    ("http://localhost:[3636-3666]/cb", SITES, None),
    ("http://localhost:[3636-3636]/cb", SITES, "http://localhost:3636/cb"),
    ("http://127.0.0.1/cb", SITES, None),
    ("http://localhost/cb", SITES, "http://localhost/cb"),
    ("http://serverName/x", ["https://cells.example.com"], "https://cells.example.com/x"),
    ("http://serverName/x", ["https://h.example/cells/"], "https://h.example/cells/x"),
    ("http://serverName/x", SITES, None),
    ("http://serverName/x", [], None),
    ("cellsauth://serverName", ["https://cells.example.com"], "cellsauth://cells.example.com"),
    ("cellsauth://serverName", SITES, None),
    ("", SITES, None),
    ("http://bad.example/cb", SITES, None),
    ("https://a.example/cb http://bad.example/cb", SITES, None),
]


@pytest.mark.parametrize(("registration", "sites", "expected"), DEFAULT_CASES)
def test_default_redirect_uri(registration: str, sites: list[str], expected: str | None) -> None:
    assert default_redirect_uri(registration, sites) == expected
    if expected is not None:
        assert redirect_uri_allowed(expected, registration, sites) is True


def test_default_redirect_uri_never_raises() -> None:
    assert default_redirect_uri(None, SITES) is None  # type: ignore[arg-type]
    assert default_redirect_uri(["https://a.example/cb"], SITES) is None  # type: ignore[arg-type]
    assert default_redirect_uri("https://a.example/cb", None) == "https://a.example/cb"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("::1", False),
        ("LOCALHOST", False),
        ("localhost.", False),
        ("127.0.0.2", False),
        ("[0:0:0:0:0:0:0:1]", False),
        ("serverName", False),
        ("", False),
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


# ---- defence in depth: urlsplit disagreement ----------------------------------------------


def test_disagreement_with_urlsplit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = urllib.parse.urlsplit

    def lying_urlsplit(url: str, *args: object, **kwargs: object) -> urllib.parse.SplitResult:
        return real(url.replace("localhost", "evil.example"))

    raw = "http://localhost:4242/urlsplit-check"
    assert redirect_uri_allowed(raw, raw, []) is True
    monkeypatch.setattr(redirects, "urlsplit", lying_urlsplit)
    with pytest.raises(InvalidPattern, match="ambiguous"):
        parse_redirect_pattern(raw)
    # The cached registration was parsed before; the request itself is now refused.
    assert redirect_uri_allowed(raw, raw, []) is False
    assert origin_allowed("http://localhost:4242", "http://localhost:4242", []) is False


def test_unexpected_errors_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(redirects, "_matches", broken)
    assert redirect_uri_allowed("https://a.example/cb", "https://a.example/cb", SITES) is False
    assert origin_allowed("https://a.example", "https://a.example", SITES) is False
    monkeypatch.setattr(redirects, "expand", broken)
    assert default_redirect_uri("https://a.example/cb", SITES) is None
