"""Registered redirect URIs and CORS origins: parsing, validation and matching.

Clients register redirect URIs (and allowed CORS origins) in a small pattern syntax that goes
a little beyond plain URIs:

``https://app.example.com/cb``
    A plain absolute URI (a query is allowed and compared exactly).
``http://localhost:[3636-3666]/servers/callback``
    A port range, only for the loopback hosts ``localhost``, ``127.0.0.1`` and ``[::1]``.
``http://serverName/oauth/oob``, ``cellsauth://serverName``
    ``serverName`` stands for the server's own public host; it is resolved at match time from
    the configured site URLs (for ``http``/``https`` the scheme, host, port and path prefix
    all come from the site URL; for a custom scheme only the host and port).
``cellsauth://callback``, ``com.example.app:/oauth2redirect``
    Private-use URI schemes of native apps (RFC 8252 §7.1).

This module is security critical. Matching is an exact, case-sensitive string comparison of
every component except where a pattern explicitly allows variation (a port range, the
``serverName`` placeholder, the RFC 8252 §7.3 any-port rule for loopback IP literals).
Registered values and requested URIs are both parsed by the strict hand-written parser
below; :func:`urllib.parse.urlsplit` is only consulted as a cross-check, and any value on
which the two disagree is refused (invalid registration) or never matches (request).

Nothing here imports Django: the rest of the app passes in the site URLs and, for the messages
shown to administrators, the function that translates them (``validation_errors(...,
translate=gettext)``; the messages are marked with :func:`gettext_noop` for ``makemessages``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn
from urllib.parse import urlsplit

__all__ = [
    "ANY_PORT_LOOPBACK_HOSTS",
    "FORBIDDEN_SCHEMES",
    "LOOPBACK_HOSTS",
    "MAX_URI_LENGTH",
    "SERVER_NAME",
    "InvalidPattern",
    "Pattern",
    "Explanation",
    "default_redirect_uri",
    "expand",
    "explain",
    "is_loopback_host",
    "origin_allowed",
    "parse_origin_pattern",
    "parse_origin_patterns",
    "parse_redirect_pattern",
    "parse_redirect_patterns",
    "redirect_uri_allowed",
    "server_url_error",
    "validation_errors",
]

#: Longest registered value or requested URI/origin considered at all.
MAX_URI_LENGTH = 2048

#: The placeholder host standing for the server's own public host (exact, case-sensitive).
SERVER_NAME = "serverName"

#: Hosts for which ``http`` and port ranges are allowed (RFC 8252 §7.3, §8.3).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})

_LOOPBACK_LIST = "localhost, 127.0.0.1, [::1]"

#: Loopback IP literals whose port-less ``http`` registration matches any port (RFC 8252 §7.3).
#: ``localhost`` is deliberately absent: it is matched exactly (RFC 8252 §8.3).
ANY_PORT_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]"})

#: Schemes that can run code, read local data or leave the browser: never a redirect target.
FORBIDDEN_SCHEMES = frozenset(
    {
        "javascript",
        "data",
        "file",
        "vbscript",
        "about",
        "blob",
        "filesystem",
        "ws",
        "wss",
        "ftp",
        "mailto",
        "tel",
        "sms",
        "intent",
        "chrome",
        "view-source",
    }
)

_WEB_SCHEMES = frozenset({"http", "https"})

# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) -- the same rule urlsplit
# uses to decide whether the text before the first ':' is a scheme.
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Registrations must spell the scheme in lowercase (RFC 3986 §3.1: the canonical form).
_LOWER_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*")
# A port: decimal, no sign, no leading zero (range 1-65535 checked numerically).
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_RANGE_RE = re.compile(r"\[([0-9]{1,6})-([0-9]{1,6})\]")
# One DNS label (RFC 1123 §2.1, underscores tolerated as browsers do), at most 63 characters.
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")
# Request hosts: any case, letters/digits/'.'/'-'/'_' only (every registered host fits this).
_REQUEST_HOST_RE = re.compile(r"[A-Za-z0-9_.\-]+")
# WHATWG URL Standard "ends in a number": such a host is parsed as an IPv4 address by browsers.
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# Printable ASCII except backslash and '#': the only characters a requested URI may contain.
_REQUEST_CHARS_RE = re.compile(r"[\x21-\x22\x24-\x5b\x5d-\x7e]*")
# RFC 3986 §3.3/§3.4: pchar / "/" / "?" = unreserved / pct-encoded / sub-delims / ":" / "@".
# '*' (a sub-delim) is left out on purpose: it reads like a wildcard and is refused as one.
_REST_CHARS_RE = re.compile(r"[A-Za-z0-9\-._~%!$&'()+,;=:@/?]*")
# RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG.
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# "localhost:3000/cb" parses as scheme "localhost" + path "3000/cb": almost surely a typo.
_PORT_LOOKALIKE_RE = re.compile(r"[0-9]+(?:[/?]|$)")


class InvalidPattern(ValueError):
    """A registered redirect URI or origin is not acceptable.

    ``str(exc)`` is a human message for administrators naming the offending value;
    :attr:`value` is that value and :attr:`reason` the bare explanation.
    """

    def __init__(self, message: str, *, value: object = None, reason: str = "") -> None:
        super().__init__(message)
        self.value = value
        self.reason = reason or message


@dataclass(frozen=True)
class Pattern:
    """One parsed registered redirect URI or origin.

    ``host`` keeps IPv6 literals in brackets (``[::1]``). Ports: an explicit port has
    ``port_low == port_high``; a range ``[a-b]`` has ``port_low <= port_high``; no port has
    both ``None``. ``rest`` is everything after the authority (path and ``?query``), ``''``
    for none; for authority-less custom-scheme URIs (``host is None``) it is everything after
    ``scheme:`` and the whole ``raw`` value is what gets compared.
    """

    raw: str
    scheme: str
    host: str | None
    port_low: int | None
    port_high: int | None
    rest: str
    server_name: bool
    origin: bool = False

    @property
    def is_range(self) -> bool:
        """Whether the port is a range of more than one port."""
        return self.port_low is not None and self.port_low != self.port_high

    @property
    def any_loopback_port(self) -> bool:
        """Whether the RFC 8252 §7.3 rule applies: ``http`` to a loopback IP literal, no port.

        Such a registered redirect URI matches the same URI with any port, because native
        apps get an ephemeral port from the OS. Not for ``localhost`` (RFC 8252 §8.3), not
        for ``https`` and not for CORS origins.
        """
        return (
            not self.origin
            and self.scheme == "http"
            and self.host in ANY_PORT_LOOPBACK_HOSTS
            and self.port_low is None
        )


class _URI(NamedTuple):
    """A strictly parsed requested URI, origin or site URL."""

    raw: str
    scheme: str
    host: str | None
    port: int | None
    rest: str


class _Site(NamedTuple):
    """A configured site URL, split for ``serverName`` resolution."""

    scheme: str
    host: str
    port: int | None
    prefix: str  # path prefix without trailing slash ('' for none)


# ---- helpers ------------------------------------------------------------------------------

#: A function translating a message into the reader's language (Django's ``gettext``); the
#: identity by default, so this module stays free of Django.
Translate = Callable[[str], str]


def gettext_noop(message: str) -> str:
    """Mark ``message`` for translation (``makemessages`` collects it); it is translated when shown."""
    return message


def _untranslated(message: str) -> str:
    return message


EXPECTED_STRING = gettext_noop("Expected a whitespace-separated string, got %(type)s.")


def _show(value: object, limit: int = 80) -> str:
    """Quote ``value`` for a message, escaping control characters and truncating it."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 4] + "...'"
    return text


def _ascii_port(text: str) -> int | None:
    """The value of a strictly written port (1-65535, no sign, no leading zero), else None."""
    if _PORT_RE.fullmatch(text) is None:
        return None
    port = int(text)
    return port if port <= 65535 else None


def _format(scheme: str, host: str, port: int | None, rest: str) -> str:
    """Assemble ``scheme://host[:port]rest``."""
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{rest}"


def _agrees_with_urlsplit(text: str, scheme: str, host: str | None, port: int | None, rest: str) -> bool:
    """Whether :func:`urllib.parse.urlsplit` reads ``text`` exactly as this module does.

    Other code (oauthlib, DOT, Django) uses urlsplit/urlparse on redirect URIs, e.g. to add
    the ``code`` parameter; a value that the two parsers read differently is refused.
    """
    try:
        parts = urlsplit(text)
        path, _, query = rest.partition("?")
        if parts.scheme != scheme.lower() or parts.fragment or parts.path != path or parts.query != query:
            return False
        if host is None:
            return parts.netloc == ""
        bare = host[1:-1] if host.startswith("[") else host
        return (
            parts.hostname == bare.lower()
            and parts.port == port
            and parts.username is None
            and parts.password is None
        )
    except ValueError:
        return False


def _valid_ipv6_literal(host: str) -> bool:
    """Whether ``host`` is ``[IPv6]`` that :mod:`ipaddress` accepts (callers refuse '%' zones first)."""
    if len(host) < 3 or not host.startswith("[") or not host.endswith("]"):
        return False
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


# ---- requested URIs (untrusted) -----------------------------------------------------------


def _split_request_authority(authority: str) -> tuple[str, int | None] | None:
    """Split ``host[:port]`` of an untrusted URI strictly; None when anything is off."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, after = authority[: end + 1], authority[end + 1 :]
        if not _valid_ipv6_literal(host):
            return None
        if not after:
            return host, None
        if not after.startswith(":"):
            return None
        port = _ascii_port(after[1:])
        return None if port is None else (host, port)
    host, sep, port_text = authority.partition(":")
    if _REQUEST_HOST_RE.fullmatch(host) is None:
        return None
    if not sep:
        return host, None
    port = _ascii_port(port_text)  # also refuses '', '+3636', '03636', '65536', '3636;x'
    return None if port is None else (host, port)


def _split_authority(after: str) -> tuple[str, str]:
    """``//host:port/path?q`` → ``("host:port", "/path?q")``: RFC 3986 §3.2, the authority ends at
    the first ``/`` or ``?`` (``#`` never reaches here: both callers refuse it first)."""
    body = after[2:]
    cut = len(body)
    for delimiter in "/?":
        index = body.find(delimiter)
        if 0 <= index < cut:
            cut = index
    return body[:cut], body[cut:]


def _parse_request(value: object, *, origin: bool) -> _URI | None:
    """Parse an untrusted redirect URI (or ``Origin`` value), or return None to reject it."""
    if not isinstance(value, str) or not value or len(value) > MAX_URI_LENGTH:
        return None
    # Whitespace, control characters (incl. NUL, DEL, U+2028), anything non-ASCII, '\' and
    # '#' (RFC 6749 §3.1.2: no fragment) are refused outright: no registration contains them.
    if _REQUEST_CHARS_RE.fullmatch(value) is None:
        return None
    match = _SCHEME_RE.match(value)
    if match is None:
        return None  # relative reference, e.g. '//localhost:3636/cb'
    scheme = match.group(1)
    after = value[match.end() :]
    if after.startswith("//"):
        authority, rest = _split_authority(after)
        if "@" in authority or "%" in authority:
            return None  # userinfo / percent-encoded host
        split = _split_request_authority(authority)
        if split is None:
            return None
        host: str | None = split[0]
        port = split[1]
    else:
        if origin:
            return None
        host, port, rest = None, None, after
    if origin and rest:
        return None  # RFC 6454 §6.2: an origin is scheme://host[:port], nothing after it
    if not _agrees_with_urlsplit(value, scheme, host, port, rest):
        return None
    return _URI(value, scheme, host, port, rest)


# ---- registered patterns ------------------------------------------------------------------


class _Fail:
    """Raise :class:`InvalidPattern` for one registered value, with a uniform message."""

    def __init__(self, raw: object, *, origin: bool, translate: Translate = _untranslated) -> None:
        self.raw = raw
        self.origin = origin
        self.translate = translate

    def __call__(self, reason: str, **params: object) -> NoReturn:
        """Raise for ``reason`` (a :func:`gettext_noop` message), filled in with ``params``."""
        text = self.translate(reason)
        if params:
            text = text % params
        if self.origin:
            template = gettext_noop("Invalid origin %(value)s: %(reason)s.")
        else:
            template = gettext_noop("Invalid redirect URI %(value)s: %(reason)s.")
        message = self.translate(template) % {"value": _show(self.raw), "reason": text}
        raise InvalidPattern(message, value=self.raw, reason=text)


def _check_host(host: str, scheme: str, fail: _Fail) -> bool:
    """Validate a registered host; return whether it is the ``serverName`` placeholder."""
    if host.startswith("["):
        if not _valid_ipv6_literal(host):
            fail(gettext_noop("%(host)s is not a valid IPv6 address in brackets"), host=_show(host))
        address = ipaddress.IPv6Address(host[1:-1])
        if address.ipv4_mapped is not None:
            fail(
                gettext_noop("use the IPv4 address %(ipv4)s instead of the IPv4-mapped IPv6 address"),
                ipv4=address.ipv4_mapped,
            )
        canonical = f"[{address.compressed}]"
        if host != canonical:
            # Browsers serialize IPv6 hosts canonically (WHATWG URL §3.5), so only that matches.
            fail(gettext_noop("write the IPv6 address in canonical form: %(canonical)s"), canonical=canonical)
        return False
    if host == SERVER_NAME:
        return True
    if host.lower() == SERVER_NAME.lower():
        fail(
            gettext_noop("the placeholder is spelled %(placeholder)s (case-sensitive), not %(host)s"),
            placeholder=repr(SERVER_NAME),
            host=repr(host),
        )
    if "[" in host or "]" in host:
        fail(gettext_noop("brackets are only allowed around an IPv6 address or a port range after ':'"))
    if host.endswith("."):
        fail(gettext_noop("remove the trailing dot from the host %(host)s"), host=repr(host))
    if len(host) > 253:
        fail(gettext_noop("the host is longer than 253 characters"))
    for label in host.split("."):
        if _LABEL_RE.fullmatch(label) is None:
            fail(gettext_noop("%(host)s is not a valid host name"), host=_show(host))
    if _NUMERIC_LABEL_RE.fullmatch(host.rsplit(".", 1)[-1]) and _IPV4_RE.fullmatch(host) is None:
        # WHATWG URL §3.5: a host ending in a number is an IPv4 address (127.1, 0x7f.0.0.1, ...)
        fail(
            gettext_noop("%(host)s is not a valid IPv4 address (write four decimal numbers, e.g. 127.0.0.1)"),
            host=repr(host),
        )
    if scheme in _WEB_SCHEMES and host != host.lower():
        # RFC 3986 §3.2.2 / §6.2.2.1: hosts are case-insensitive and browsers send them lowercase.
        fail(gettext_noop("write the host in lowercase: %(host)s"), host=repr(host.lower()))
    return False


def _check_port(port_text: str, host: str, server_name: bool, fail: _Fail) -> tuple[int, int]:
    """Validate a registered port or port range; return ``(low, high)``."""
    if server_name:
        fail(
            gettext_noop(
                "%(placeholder)s cannot have a port or port range: the port comes from the site URL"
            ),
            placeholder=SERVER_NAME,
        )
    if port_text == "":
        fail(gettext_noop("the port after ':' is empty; remove the ':' or give a port"))
    if port_text.startswith("["):
        match = _RANGE_RE.fullmatch(port_text)
        if match is None:
            fail(
                gettext_noop("malformed port range %(range)s: write [LOW-HIGH], e.g. [3636-3666]"),
                range=repr(port_text),
            )
        low_text, high_text = match.groups()
        for text in (low_text, high_text):
            if _ascii_port(text) is None:
                fail(
                    gettext_noop(
                        "port %(port)s in the range is invalid: ports are 1-65535 without leading zeros"
                    ),
                    port=repr(text),
                )
        low, high = int(low_text), int(high_text)
        if low > high:
            fail(
                gettext_noop("port range [%(low)s-%(high)s] is reversed: write [%(high)s-%(low)s]"),
                low=low,
                high=high,
            )
        if not is_loopback_host(host):
            # Ranges exist for native apps listening on a loopback port (RFC 8252 §7.3).
            fail(
                gettext_noop("port ranges are only allowed for loopback hosts (%(hosts)s)"),
                hosts=_LOOPBACK_LIST,
            )
        return low, high
    port = _ascii_port(port_text)
    if port is None:
        fail(
            gettext_noop("invalid port %(port)s: ports are 1-65535, decimal, without leading zeros"),
            port=repr(port_text),
        )
    return port, port


def _check_rest(rest: str, fail: _Fail) -> None:
    """Validate the path and query of a registered value (exact-compare material)."""
    bad = next((char for char in rest if _REST_CHARS_RE.fullmatch(char) is None), None)
    if bad is not None:
        fail(
            gettext_noop("the character %(char)s is not allowed in a URI (RFC 3986 §2); percent-encode it"),
            char=repr(bad),
        )
    if _BAD_PERCENT_RE.search(rest):
        # xgettext:no-python-format
        fail(
            gettext_noop("malformed percent-encoding: '%' must be followed by two hex digits (RFC 3986 §2.1)")
        )
    path = rest.partition("?")[0]
    for segment in path.split("/"):
        # RFC 3986 §5.2.4: '.'/'..' segments (also as %2e) are removed by browsers before use.
        if segment.lower().replace("%2e", ".") in (".", ".."):
            fail(gettext_noop("the path contains a '.' or '..' segment; write the path without dot-segments"))
    if "://" in path:
        fail(gettext_noop("the path contains '://': separate several URIs with whitespace, not commas"))


def _parse_pattern(raw: object, *, origin: bool, translate: Translate = _untranslated) -> Pattern:
    """Parse one registered redirect URI (or origin) pattern, raising :class:`InvalidPattern`."""
    fail = _Fail(raw, origin=origin, translate=translate)
    if not isinstance(raw, str):
        fail(gettext_noop("expected a string, got %(type)s"), type=type(raw).__name__)
    if not raw:
        fail(gettext_noop("the value is empty"))
    if len(raw) > MAX_URI_LENGTH:
        fail(gettext_noop("longer than %(max)s characters"), max=MAX_URI_LENGTH)
    if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in raw):
        fail(gettext_noop("contains whitespace or control characters"))
    if any(ord(char) > 0x7E for char in raw):
        fail(
            gettext_noop(
                "contains non-ASCII characters: use punycode (xn--) for hosts and percent-encode paths"
            )
        )
    if "\\" in raw:
        fail(gettext_noop("contains a backslash"))
    if "#" in raw:
        fail(gettext_noop("a fragment ('#') is not allowed (RFC 6749 §3.1.2)"))
    if "*" in raw:
        fail(gettext_noop("wildcards ('*') are not supported; list each URI, or use a loopback port range"))
    if raw == "null":
        fail(gettext_noop("the 'null' origin is never allowed"))
    match = _SCHEME_RE.match(raw)
    if match is None:
        fail(
            gettext_noop(
                "not an absolute URI: a relative URI or missing scheme (write e.g. https://host/path)"
            )
        )
    scheme = match.group(1)
    if scheme.lower() in FORBIDDEN_SCHEMES:
        fail(
            gettext_noop("the scheme %(scheme)s is not allowed (it is unsafe as a redirect target)"),
            scheme=repr(scheme.lower()),
        )
    if _LOWER_SCHEME_RE.fullmatch(scheme) is None:
        fail(
            gettext_noop("the scheme must be lowercase: write %(lower)s instead of %(scheme)s"),
            lower=repr(scheme.lower()),
            scheme=repr(scheme),
        )
    after = raw[match.end() :]

    if not after.startswith("//"):
        # Authority-less form (RFC 8252 §7.1: com.example.app:/oauth2redirect/example-provider).
        if scheme in _WEB_SCHEMES:
            fail(gettext_noop("an %(scheme)s URI needs '//' and a host after '%(scheme)s:'"), scheme=scheme)
        if origin:
            fail(gettext_noop("an origin needs '//' and a host after the scheme"))
        if not after or after.startswith("?"):
            fail(gettext_noop("nothing but a query follows '%(scheme)s:'; give a path"), scheme=scheme)
        if _PORT_LOOKALIKE_RE.match(after):
            fail(
                gettext_noop("this looks like HOST:PORT without a scheme; write e.g. http://%(value)s"),
                value=raw,
            )
        _check_rest(after, fail)
        if not _agrees_with_urlsplit(raw, scheme, None, None, after):
            fail(gettext_noop("Python's urlsplit reads this URI differently (ambiguous URI)"))
        return Pattern(raw, scheme, None, None, None, after, False, origin)

    authority, rest = _split_authority(after)
    if "@" in authority:
        fail(gettext_noop("userinfo ('user@' before the host) is not allowed"))
    if "%" in authority:
        fail(gettext_noop("percent-encoding in the host or port is not allowed"))
    if not authority:
        fail(gettext_noop("the URI has an empty host"))
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            fail(gettext_noop("unterminated '[' in the host"))
        host, tail = authority[: end + 1], authority[end + 1 :]
        if tail and not tail.startswith(":"):
            fail(gettext_noop("unexpected %(text)s after the IPv6 address"), text=repr(tail))
        has_port, port_text = bool(tail), tail[1:]
    else:
        host, colon, port_text = authority.partition(":")
        has_port = bool(colon)
    if not host:
        fail(gettext_noop("the URI has an empty host"))
    server_name = _check_host(host, scheme, fail)
    low = high = None
    if has_port:
        low, high = _check_port(port_text, host, server_name, fail)
    if scheme == "http" and not server_name and not is_loopback_host(host):
        # RFC 9700 §2.1 / RFC 6749 §3.1.2.1: redirects must be protected by TLS.
        fail(
            gettext_noop("http is only allowed for loopback hosts (%(hosts)s); use https"),
            hosts=_LOOPBACK_LIST,
        )
    if origin and rest:
        if rest == "/":
            fail(gettext_noop("an origin has no path: remove the trailing '/'"))
        fail(gettext_noop("an origin is scheme://host[:port] with no path or query"))
    _check_rest(rest, fail)
    if not _agrees_with_urlsplit(_format(scheme, host, low, rest), scheme, host, low, rest):
        fail(gettext_noop("Python's urlsplit reads this URI differently (ambiguous URI)"))
    return Pattern(raw, scheme, host, low, high, rest, server_name, origin)


def parse_redirect_pattern(raw: str) -> Pattern:
    """Parse one registered redirect URI pattern; raise :class:`InvalidPattern` if invalid."""
    return _parse_pattern(raw, origin=False)


def parse_origin_pattern(raw: str) -> Pattern:
    """Parse one registered CORS origin pattern; raise :class:`InvalidPattern` if invalid."""
    return _parse_pattern(raw, origin=True)


def _parse_all(text: str, *, origin: bool) -> tuple[Pattern, ...]:
    if not isinstance(text, str):
        raise InvalidPattern(EXPECTED_STRING % {"type": type(text).__name__})
    patterns: dict[str, Pattern] = {}
    for raw in text.split():
        if raw not in patterns:
            patterns[raw] = _parse_pattern(raw, origin=origin)
    return tuple(patterns.values())


@functools.lru_cache(maxsize=1024)
def parse_redirect_patterns(text: str) -> tuple[Pattern, ...]:
    """Parse a whitespace-separated list of redirect URI patterns (duplicates dropped).

    Raise :class:`InvalidPattern` for the first invalid one. Cached per ``text``.
    """
    return _parse_all(text, origin=False)


@functools.lru_cache(maxsize=1024)
def parse_origin_patterns(text: str) -> tuple[Pattern, ...]:
    """Parse a whitespace-separated list of origin patterns (duplicates dropped).

    Raise :class:`InvalidPattern` for the first invalid one. Cached per ``text``.
    """
    return _parse_all(text, origin=True)


@functools.lru_cache(maxsize=1024)
def _valid_patterns(text: str, origin: bool) -> tuple[Pattern, ...]:
    """The valid patterns of ``text``, silently skipping invalid ones (fail closed)."""
    patterns: dict[str, Pattern] = {}
    for raw in text.split():
        if raw in patterns:
            continue
        try:
            patterns[raw] = _parse_pattern(raw, origin=origin)
        except InvalidPattern:
            continue
    return tuple(patterns.values())


def validation_errors(text: str, *, origins: bool = False, translate: Translate | None = None) -> list[str]:
    """Every problem of a whitespace-separated list of patterns, one message each.

    Returns ``[]`` when every value is valid. Values listed more than once are reported too.
    ``translate`` (Django's ``gettext`` in the admin) puts the messages in the reader's language;
    without it they are in English.
    """
    translate = translate or _untranslated
    if not isinstance(text, str):
        return [translate(EXPECTED_STRING) % {"type": type(text).__name__}]
    errors: list[str] = []
    seen: set[str] = set()
    reported: set[str] = set()
    for raw in text.split():
        if raw in seen:
            if raw not in reported:
                if origins:
                    duplicate = gettext_noop("The origin %(value)s is listed more than once.")
                else:
                    duplicate = gettext_noop("The redirect URI %(value)s is listed more than once.")
                errors.append(translate(duplicate) % {"value": _show(raw)})
                reported.add(raw)
            continue
        seen.add(raw)
        try:
            _parse_pattern(raw, origin=origins, translate=translate)
        except InvalidPattern as exc:
            errors.append(str(exc))
    return errors


# ---- site URLs and serverName -------------------------------------------------------------


def _parse_site(url: object) -> _Site | None:
    """Split a configured site URL ``http(s)://host[:port][/path][/]``; None if unusable."""
    if not isinstance(url, str):
        return None
    parsed = _parse_request(url.strip(), origin=False)
    if parsed is None or parsed.host is None or parsed.scheme.lower() not in _WEB_SCHEMES:
        return None
    if "?" in parsed.rest:
        return None
    # RFC 3986 §6.2.2.1: scheme and host are case-insensitive; browsers send them lowercase.
    return _Site(parsed.scheme.lower(), parsed.host.lower(), parsed.port, parsed.rest.rstrip("/"))


@functools.lru_cache(maxsize=64)
def _sites_cached(site_urls: tuple[str, ...]) -> tuple[_Site, ...]:
    sites = (_parse_site(url) for url in site_urls)
    return tuple(site for site in sites if site is not None)


def _sites(site_urls: Sequence[str]) -> tuple[_Site, ...]:
    """The usable site URLs (unusable ones are skipped: ``serverName`` fails closed)."""
    if isinstance(site_urls, str):
        site_urls = [site_urls]  # a lone string is one URL, not a sequence of characters
    try:
        urls = tuple(site_urls)
    except TypeError:  # None or another non-iterable: no site, serverName matches nothing
        return ()
    try:
        return _sites_cached(urls)
    except TypeError:  # unhashable entries: parse without the cache
        sites = (_parse_site(url) for url in urls)
        return tuple(site for site in sites if site is not None)


def _resolve(pattern: Pattern, site: _Site) -> tuple[str, str, int | None, str]:
    """The ``(scheme, host, port, rest)`` a ``serverName`` pattern stands for on ``site``."""
    if pattern.scheme in _WEB_SCHEMES:
        # http(s)://serverName/PATH stands for SITEURL/PATH: scheme, host, port and path prefix
        # all come from the site URL (whose trailing slash was dropped, so no '//' appears).
        rest = "" if pattern.origin else site.prefix + pattern.rest
        return site.scheme, site.host, site.port, rest
    # Custom scheme: only the host[:port] of the site replaces the placeholder.
    return pattern.scheme, site.host, site.port, pattern.rest


# ---- matching -----------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is exactly ``localhost``, ``127.0.0.1`` or ``[::1]`` (case-sensitive)."""
    return isinstance(host, str) and host in LOOPBACK_HOSTS


#: Longest URL of a client's endpoint that this server calls (:func:`server_url_error`).
MAX_SERVER_URL_LENGTH = 2000


def server_url_error(uri: object) -> str | None:
    """Why ``uri`` may not be a URL of a client's that this server calls, or ``None``.

    One rule for every such URL (``backchannel_logout_uri``, Back-Channel Logout §2.2, and
    ``jwks_uri``, RFC 7591 §2): an absolute URL with a host, no credentials and no fragment
    (it may have a query); https is required, http only on a loopback host, as for redirect
    URIs (RFC 8252 §7.3, :data:`LOOPBACK_HOSTS`).
    """
    if not isinstance(uri, str) or not uri or len(uri) > MAX_SERVER_URL_LENGTH:
        return "an absolute URL of at most 2000 characters"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri) or not uri.isascii():
        return "no spaces, control or non-ASCII characters"
    parts = urlsplit(uri)
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "not a URL"
    if "#" in uri or parts.username or parts.password or not host:
        return "an absolute URL with a host, without credentials or fragment"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(_netloc_host(parts.netloc)):
        return None
    return "https is required (http only on a loopback host)"


def _netloc_host(netloc: str) -> str:
    """``[::1]:8080`` → ``[::1]``, ``127.0.0.1:80`` → ``127.0.0.1`` (the form of LOOPBACK_HOSTS)."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def _port_matches(pattern: Pattern, port: int | None) -> bool:
    if pattern.port_low is None or pattern.port_high is None:
        if port is None:
            return True
        # RFC 8252 §7.3: any port for a port-less http registration on 127.0.0.1 / [::1].
        return pattern.any_loopback_port
    return port is not None and pattern.port_low <= port <= pattern.port_high


def _matches(pattern: Pattern, request: _URI, sites: tuple[_Site, ...]) -> bool:
    if pattern.host is None:
        # Authority-less custom-scheme URI: exact full-string comparison.
        return request.host is None and request.raw == pattern.raw
    if request.host is None:
        return False
    if pattern.server_name:
        wanted = (request.scheme, request.host, request.port, request.rest)
        return any(_resolve(pattern, site) == wanted for site in sites)
    return (
        request.scheme == pattern.scheme
        and request.host == pattern.host
        and request.rest == pattern.rest
        and _port_matches(pattern, request.port)
    )


def redirect_uri_allowed(uri: object, patterns_text: str, site_urls: Sequence[str]) -> bool:
    """Whether the untrusted ``uri`` matches one of the registered redirect URI patterns.

    Never raises. Invalid registered values never match (fail closed); the valid ones of the
    same registration still do.
    """
    return _allowed(uri, patterns_text, site_urls, origin=False)


def origin_allowed(origin: object, patterns_text: str, site_urls: Sequence[str]) -> bool:
    """Whether the untrusted ``Origin`` header value matches one of the registered origins.

    The origin must be exactly ``scheme://host[:port]`` (RFC 6454 §6.2). ``null`` never
    matches. Never raises.
    """
    return _allowed(origin, patterns_text, site_urls, origin=True)


def _allowed(value: object, patterns_text: str, site_urls: Sequence[str], *, origin: bool) -> bool:
    try:
        request = _parse_request(value, origin=origin)
        if request is None or not isinstance(patterns_text, str):
            return False
        sites = _sites(site_urls)
        return any(_matches(pattern, request, sites) for pattern in _valid_patterns(patterns_text, origin))
    except Exception:  # a bug must not open the door: fail closed
        return False


def expand(pattern: Pattern, site_urls: Sequence[str]) -> list[str] | None:
    """The concrete URIs ``pattern`` stands for, or None when there are too many.

    None for a range of more than one port and for the RFC 8252 §7.3 any-port loopback case;
    a ``serverName`` pattern gives one URI per (usable) site URL, duplicates dropped.
    """
    if pattern.host is None:
        return [pattern.raw]
    if pattern.server_name:
        uris: list[str] = []
        for site in _sites(site_urls):
            uri = _format(*_resolve(pattern, site))
            if uri not in uris:
                uris.append(uri)
        return uris
    if pattern.is_range or pattern.any_loopback_port:
        return None
    return [_format(pattern.scheme, pattern.host, pattern.port_low, pattern.rest)]


def default_redirect_uri(patterns_text: str, site_urls: Sequence[str]) -> str | None:
    """The redirect URI to use when a request omits it, or None when that is ambiguous.

    RFC 6749 §3.1.2.3: only when the registration stands for exactly one concrete URI.
    Any invalid registered value makes the registration ambiguous (None). Never raises.
    """
    try:
        patterns = parse_redirect_patterns(patterns_text)
        uris: list[str] = []
        for pattern in patterns:
            expanded = expand(pattern, site_urls)
            if expanded is None:
                return None
            for uri in expanded:
                if uri not in uris:
                    uris.append(uri)
        return uris[0] if len(uris) == 1 else None
    except Exception:  # fail closed: no default
        return None


# ---- explaining a match (the admin's "test a redirect URI" box) ---------------------------


@dataclass(frozen=True)
class Explanation:
    """Why a redirect URI matches a registration or not: :func:`explain`'s answer.

    ``matched`` is what :func:`redirect_uri_allowed` says; ``pattern`` the registered value that
    matched (or came closest); ``reason`` a message for administrators, marked for translation and
    formatted with ``params`` (``translate(reason) % params``).
    """

    matched: bool
    reason: str
    params: dict[str, str]
    pattern: str | None = None

    def message(self, translate: Translate = _untranslated) -> str:
        return translate(self.reason) % self.params


def _request_problem(uri: object) -> str:
    """Which rule of :func:`_parse_request` refuses ``uri`` (a message marked for translation)."""
    if not isinstance(uri, str) or not uri:
        return gettext_noop("Enter a redirect URI.")
    if len(uri) > MAX_URI_LENGTH:
        return gettext_noop("The URI is longer than %(max)s characters.")
    if "#" in uri:
        return gettext_noop("A redirect URI must not have a fragment (RFC 6749 §3.1.2).")
    if _REQUEST_CHARS_RE.fullmatch(uri) is None:
        return gettext_noop(
            "The URI contains a character never allowed: whitespace, a control or non-ASCII character, "
            "or a backslash."
        )
    if _SCHEME_RE.match(uri) is None:
        return gettext_noop("The URI has no scheme: a redirect URI must be absolute (RFC 6749 §3.1.2).")
    authority = uri[_SCHEME_RE.match(uri).end() :]  # type: ignore[union-attr]
    if authority.startswith("//"):
        host_part = re.split(r"[/?]", authority[2:], maxsplit=1)[0]
        if "@" in host_part:
            return gettext_noop("The URI has user information before its host, which is never allowed.")
        if "%" in host_part:
            return gettext_noop("The host of the URI is percent-encoded, which is never allowed.")
        return gettext_noop("The host or port of the URI is malformed.")
    return gettext_noop("The URI is malformed (its parts are read differently by different parsers).")


def _near_miss(pattern: Pattern, request: _URI, sites: tuple[_Site, ...]) -> tuple[int, str] | None:
    """How close ``request`` comes to ``pattern``: ``(closeness, reason)``, or None for unrelated."""
    if pattern.host is None:
        if request.host is None and request.scheme == pattern.scheme:
            return 3, gettext_noop("%(pattern)s is compared exactly, character for character, and differs.")
        return None
    if request.host is None:
        return None
    if pattern.server_name:
        if not sites:
            return 2, gettext_noop("%(pattern)s uses serverName, but no site URL is configured.")
        candidates = [_resolve(pattern, site) for site in sites]
        if any(c[:3] == (request.scheme, request.host, request.port) for c in candidates):
            return 3, gettext_noop("%(pattern)s stands for %(expanded)s here: the path or query differs.")
        if any(c[1] == request.host for c in candidates):
            return 2, gettext_noop("%(pattern)s stands for %(expanded)s here: the scheme or port differs.")
        return None  # another host: unrelated
    if request.host != pattern.host:
        if request.host.lower() == (pattern.host or "").lower():
            return 2, gettext_noop(
                "The host of %(pattern)s differs in letter case: hosts are compared exactly."
            )
        return None
    if request.scheme != pattern.scheme:
        return 1, gettext_noop("%(pattern)s has another scheme.")
    if not _port_matches(pattern, request.port):
        if pattern.is_range:
            return 2, gettext_noop("The port is outside the range of %(pattern)s.")
        if pattern.port_low is None and pattern.host == "localhost":
            return 2, gettext_noop(
                "%(pattern)s has no port: only 127.0.0.1 and [::1] accept any port (RFC 8252 §7.3, §8.3)."
            )
        return 2, gettext_noop("The port differs from that of %(pattern)s.")
    return 3, gettext_noop(
        "The path or query differs from that of %(pattern)s: they are compared exactly (RFC 9700 §2.1)."
    )


def explain(uri: object, registered: str, site_urls: Sequence[str] = ()) -> Explanation:
    """Whether ``uri`` matches the registration ``registered`` and why (or which rule refused it).

    The verdict is always :func:`redirect_uri_allowed`'s; the reason names the registered pattern
    that matched and how (exactly, a port range, ``serverName``, the RFC 8252 §7.3 loopback rule),
    or the rule that refused the URI, or the registered value that came closest. Never raises.
    """
    allowed = redirect_uri_allowed(uri, registered, site_urls)
    try:
        request = _parse_request(uri, origin=False)
        if request is None:
            return Explanation(False, _request_problem(uri), {"max": str(MAX_URI_LENGTH)})
        text = registered if isinstance(registered, str) else ""
        patterns = _valid_patterns(text, False)
        invalid = [raw for raw in text.split() if raw not in {p.raw for p in patterns}]
        sites = _sites(site_urls)
        if allowed:
            for pattern in patterns:
                if not _matches(pattern, request, sites):
                    continue
                params = {"pattern": pattern.raw}
                if pattern.host is None:
                    reason = gettext_noop("Matches %(pattern)s exactly.")
                elif pattern.server_name:
                    reason = gettext_noop("Matches %(pattern)s, where serverName stands for this site.")
                elif pattern.is_range:
                    reason = gettext_noop("Matches %(pattern)s: the port is within its range.")
                elif pattern.any_loopback_port and request.port is not None:
                    reason = gettext_noop(
                        "Matches %(pattern)s: a loopback IP address without a port accepts any port "
                        "(RFC 8252 §7.3)."
                    )
                else:
                    reason = gettext_noop("Matches %(pattern)s exactly.")
                return Explanation(True, reason, params, pattern.raw)
        if not patterns:
            if invalid:
                return Explanation(
                    False,
                    gettext_noop("No registered value is valid; invalid ones never match: %(invalid)s"),
                    {"invalid": ", ".join(_show(raw) for raw in invalid[:5])},
                )
            return Explanation(False, gettext_noop("The client has no registered redirect URI."), {})
        best: tuple[tuple[int, bool], str, Pattern] | None = None
        for pattern in patterns:
            near = _near_miss(pattern, request, sites)
            # The closest pattern; between equals, the one with the same path and query.
            score = (near[0], pattern.rest == request.rest) if near is not None else None
            if near is not None and score is not None and (best is None or score > best[0]):
                best = (score, near[1], pattern)
        if best is None:
            return Explanation(
                False,
                gettext_noop("No registered redirect URI has this host (registered: %(registered)s)."),
                {"registered": ", ".join(p.raw for p in patterns[:10])},
            )
        pattern = best[2]
        expanded = expand(pattern, site_urls) if pattern.server_name else None
        params = {"pattern": pattern.raw, "expanded": ", ".join(expanded or []) or "-"}
        return Explanation(False, best[1], params, pattern.raw)
    except Exception:  # fail closed: the verdict stands, the reason is generic
        reason = (
            gettext_noop("Matches a registered redirect URI.")
            if allowed
            else gettext_noop("Does not match any registered redirect URI.")
        )
        return Explanation(allowed, reason, {})
