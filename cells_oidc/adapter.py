"""The one customisation point of cells-oidc.

Subclass :class:`DefaultAdapter`, override the hooks you need and point
``CELLS_OIDC_ADAPTER`` at your class::

    class MyAdapter(DefaultAdapter):
        def claims(self, *, user):
            return {**super().claims(user=user), "groups": [g.name for g in user.groups.all()]}
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from cells_oidc.conf import app_settings

__all__ = ["DefaultAdapter", "get_adapter"]


class DefaultAdapter:
    """Decisions about users that a site may want to make differently."""

    #: Which scope releases which claim (OpenID Connect Core §5.4). Claims not listed are
    #: released with ``openid``.
    claim_scopes: dict[str, str] = {
        "name": "profile",
        "preferred_username": "profile",
        "given_name": "profile",
        "family_name": "profile",
        "updated_at": "profile",
        "email": "email",
        "email_verified": "email",
    }

    def subject(self, user: Any) -> str:
        """The ``sub`` claim: a stable, never reassigned identifier of ``user``.

        The default is the primary key, which Django never reuses for another user.
        """
        return str(user.pk)

    def user_for_subject(self, *, subject: str) -> Any | None:
        """The user whose :meth:`subject` is ``subject``, or ``None`` (used to authenticate bearer
        tokens, see :mod:`cells_oidc.internal.resource`). Override it together with :meth:`subject`.

        The default reads the primary key (one query); the caller still checks that
        ``subject(user) == subject`` exactly, so ``" 1"`` never loads user 1.
        """
        from django.contrib.auth import get_user_model
        from django.core.exceptions import ValidationError

        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(subject)
        except (ValidationError, ValueError, TypeError):
            return None
        return model._default_manager.filter(pk=pk).first()

    def claims(self, *, user: Any) -> dict[str, Any]:
        """The user's claims, before filtering by the granted scopes.

        Cells' clients take the account name from ``name`` and expect the login there
        (``name`` = login), so the full name goes to ``given_name``/``family_name`` only.
        """
        claims: dict[str, Any] = {
            "name": user.get_username(),
            "preferred_username": user.get_username(),
        }
        given = getattr(user, "first_name", "") or ""
        family = getattr(user, "last_name", "") or ""
        if given:
            claims["given_name"] = given
        if family:
            claims["family_name"] = family
        email = getattr(user, "email", "") or ""
        if email:
            claims["email"] = email
        return claims

    def can_sign_in(self, *, user: Any, client: Any) -> bool:
        """Whether ``user`` may sign in to ``client`` (default: every active user)."""
        return bool(getattr(user, "is_active", False))


def get_adapter() -> DefaultAdapter:
    """An instance of the adapter class named by ``CELLS_OIDC_ADAPTER``."""
    return import_string(app_settings.ADAPTER)()
