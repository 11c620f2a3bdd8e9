"""What a verified bearer token grants: :class:`TokenInfo`, the ``request.auth`` of the resource server.

Built by :mod:`cells_oidc.internal.resource` for JWT access tokens and by
:mod:`cells_oidc.internal.pat` for personal access tokens; read by the DRF classes and the decorator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TokenInfo"]


@dataclass(frozen=True)
class TokenInfo:
    """What a verified bearer token grants: ``request.auth`` of the DRF class and decorator."""

    #: ``"jwt"`` for an access token of the provider, ``"pat"`` for a personal access token.
    kind: str
    #: The ``sub`` claim (the adapter's subject of the user, or the client id for a token the
    #: client obtained for itself).
    subject: str
    client_id: str | None
    scopes: frozenset[str]
    #: The JWT claims (for a personal access token: ``sub``, ``scope``, ``exp``, ``iat``).
    claims: dict[str, Any] = field(hash=False)
    #: Expiry, seconds since the epoch.
    expires_at: int
    #: The ``jti`` of a JWT, or the primary key of a personal access token.
    token_id: str | None

    @classmethod
    def of_access_token(cls, claims: dict[str, Any]) -> TokenInfo:
        """The :class:`TokenInfo` of verified RFC 9068 access-token claims."""
        scope = claims.get("scope", "")
        return cls(
            kind="jwt",
            subject=claims["sub"],
            client_id=claims["client_id"],
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            claims=claims,
            expires_at=int(claims["exp"]),
            token_id=claims.get("jti"),
        )

    @property
    def for_client(self) -> bool:
        """Whether the token acts for its client alone, no user (RFC 9068 §2.2: ``sub`` is the
        client id of a token obtained with client credentials, RFC 6749 §4.4). Its ``request.user``
        is ``AnonymousUser``; an operation that acts for a user must refuse it."""
        return self.kind == "jwt" and self.client_id is not None and self.subject == self.client_id

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        """Whether every scope of ``scopes`` was granted."""
        return frozenset(scopes) <= self.scopes
