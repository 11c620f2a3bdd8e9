"""DRF permissions on the scopes of a bearer token (RFC 6750 §3.1 ``insufficient_scope``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from cells_oidc.internal.bearer import INSUFFICIENT_SCOPE, challenge, validate_scopes
from cells_oidc.internal.token_info import TokenInfo

__all__ = ["HasScope", "InsufficientScope", "TokenHasScopes"]


class InsufficientScope(exceptions.PermissionDenied):
    """403 with ``WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`` (RFC 6750 §3)."""

    default_code = "insufficient_scope"

    def __init__(self, scopes: Iterable[str]) -> None:
        self.scopes = frozenset(scopes)
        names = " ".join(sorted(self.scopes))
        super().__init__(f"This request needs the scope {names}.", code=self.default_code)
        # DRF's exception handler copies ``auth_header`` into ``WWW-Authenticate``.
        self.auth_header = challenge("insufficient_scope", INSUFFICIENT_SCOPE, scope=self.scopes)


class TokenHasScopes(BasePermission):
    """Allow requests whose bearer token grants every scope of :attr:`required_scopes`.

    Use :func:`HasScope` to make one, or list ``required_scopes`` on the view and use this class.
    A request not authenticated by a bearer token is refused (401 when nobody authenticated it).
    """

    required_scopes: frozenset[str] = frozenset()

    def scopes_for(self, request: Any, view: Any) -> frozenset[str]:
        return self.required_scopes | validate_scopes(getattr(view, "required_scopes", ()) or ())

    def has_permission(self, request: Any, view: Any) -> bool:
        info = request.auth
        if not isinstance(info, TokenInfo):
            return False
        required = self.scopes_for(request, view)
        if not required:
            return False  # a view that names no scope is a configuration error: refuse
        if not info.has_scopes(required):
            raise InsufficientScope(required)
        return True


def HasScope(*scopes: str) -> type[TokenHasScopes]:  # named like the class it returns
    """A permission class requiring every one of ``scopes``.

    ``permission_classes = [HasScope("files:read")]``; several scopes must all be granted.

    Combine with DRF's operators for alternatives: ``HasScope("files:read") | HasScope("admin")``.
    """
    required = validate_scopes(scopes)
    if not required:
        raise ValueError("HasScope needs at least one scope")
    name = "HasScope_" + "_".join(sorted(required))
    return type(name, (TokenHasScopes,), {"required_scopes": required, "__module__": __name__})
