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

__all__ = ["UnpairedSurrogate", "check_unicode", "loads"]

#: A ``\\uD800``–``\\uDFFF`` escape (how a surrogate gets into decoded text), or a surrogate
#: already in a ``str`` given (bytes decoded with ``surrogateescape`` or ``surrogatepass``).
_SURROGATE = re.compile("\\\\u[dD][89abcdefABCDEF]|[\ud800-\udfff]")
_PLAIN = json.JSONDecoder()


class UnpairedSurrogate(ValueError):
    """A JSON string holds half of a surrogate pair: not Unicode text (RFC 8259 §8.2)."""


def check_unicode(value: Any) -> None:
    """Raise :class:`UnpairedSurrogate` if a string in ``value`` (keys included) cannot be UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnpairedSurrogate("a JSON string holds an unpaired surrogate") from exc


def loads(data: str | bytes | bytearray, *, decoder: json.JSONDecoder = _PLAIN) -> Any:
    """``decoder.decode`` of ``data`` (UTF-8 when bytes); ``ValueError`` for malformed JSON,
    invalid UTF-8 or an unpaired surrogate. ``RecursionError`` passes, as from ``json.loads``."""
    text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    value = decoder.decode(text)
    if _SURROGATE.search(text):
        check_unicode(value)
    return value
