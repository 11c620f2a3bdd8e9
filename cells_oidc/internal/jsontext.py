"""JSON from outside the provider: one rule for every parser of it.

JSON lets a string escape half of a surrogate pair (``"\\ud800"``, RFC 8259 §7): the text is
well-formed, and Python's decoder returns a ``str`` that no UTF-8 can carry (RFC 8259 §8.2 calls
such strings unpredictable). Nothing fails at the parse; the string raises ``UnicodeEncodeError``
later, wherever it is encoded — a hash of a DPoP proof's ``jti``, a database parameter, a log
line — and the request ends in a 500 far from the parse. JSON texts exchanged between systems are
UTF-8 (RFC 8259 §8.1; JWTs: RFC 7519 §7.2, RFC 7515 §2): :func:`loads` decodes bytes strictly (a
raw surrogate in the bytes is refused, which ``json.loads`` of bytes lets through) and refuses a
decoded value holding an unpaired surrogate, with ``ValueError`` like any other malformed JSON.

Written here rather than taken from a library: the standard decoder has no option for it, and
the check costs one regular-expression scan of the text when no surrogate escape is present
(the common case, the bearer path included).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["DuplicateMember", "UnpairedSurrogate", "check_unicode", "loads"]

#: A ``\\uD800``–``\\uDFFF`` escape (how a surrogate gets into decoded text), or a surrogate
#: already in a ``str`` given (bytes decoded with ``surrogateescape`` or ``surrogatepass``).
_SURROGATE = re.compile("\\\\u[dD][89abcdefABCDEF]|[\ud800-\udfff]")


class UnpairedSurrogate(ValueError):
    """A JSON string holds half of a surrogate pair: not Unicode text (RFC 8259 §8.2)."""


class DuplicateMember(ValueError):
    """An object names a member twice (``jose=True``)."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # RFC 7515 §4, RFC 7519 §4: names are unique; a duplicate invites parser differentials.
            raise DuplicateMember("duplicate member")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 §6: NaN and Infinity are not numbers here


_PLAIN = json.JSONDecoder()
#: JOSE headers and claims sets (JWTs, DPoP proofs, client assertions); built once, not per call.
_JOSE = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant)


def check_unicode(value: Any) -> None:
    """Raise :class:`UnpairedSurrogate` if a string in ``value`` (keys included) cannot be UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnpairedSurrogate("a JSON string holds an unpaired surrogate") from exc


def loads(data: str | bytes | bytearray, *, jose: bool = False) -> Any:
    """The JSON value of ``data`` (UTF-8 when bytes); ``ValueError`` for malformed JSON, invalid
    UTF-8 or an unpaired surrogate, and with ``jose`` (a JOSE header or JWT claims set) for a
    member named twice (:class:`DuplicateMember`) or ``NaN``/``Infinity``. ``RecursionError``
    passes, as from ``json.loads``."""
    text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    value = (_JOSE if jose else _PLAIN).decode(text)
    if _SURROGATE.search(text):
        check_unicode(value)
    return value
