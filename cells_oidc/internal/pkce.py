"""Proof Key for Code Exchange (RFC 7636): the one place its rules are written.

Used at both ends of the code flow: the authorization view and the validator's
``save_authorization_code`` check a challenge (:func:`valid_challenge`), the validator's
``validate_code`` checks the verifier against it (:func:`verify`), and discovery advertises
:data:`CODE_CHALLENGE_METHODS`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = [
    "CODE_CHALLENGE_METHODS",
    "CODE_CHALLENGE_RE",
    "CODE_VERIFIER_RE",
    "S256",
    "s256",
    "valid_challenge",
    "verify",
]

S256 = "S256"
#: RFC 9700 §2.1.1: S256 only, never ``plain``.
CODE_CHALLENGE_METHODS = (S256,)
#: RFC 7636 §4.1: ``code_verifier = 43*128unreserved``.
CODE_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA256(verifier)) without padding, 43 characters.
CODE_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: ``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_challenge(challenge: object, method: object) -> bool:
    """Whether ``challenge`` and ``method`` form a challenge this provider accepts (RFC 7636 §4.3)."""
    return (
        method in CODE_CHALLENGE_METHODS
        and isinstance(challenge, str)
        and bool(CODE_CHALLENGE_RE.fullmatch(challenge))
    )


def verify(verifier: object, challenge: str | None, method: str | None) -> bool:
    """Whether the token request's ``verifier`` proves the code's ``challenge`` (RFC 7636 §4.6).

    A code issued without a challenge must come without a verifier: one then is a downgrade
    attempt (RFC 9700 §4.8.2).
    """
    if not challenge:
        return verifier is None
    if method != S256 or not isinstance(verifier, str) or not CODE_VERIFIER_RE.fullmatch(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
