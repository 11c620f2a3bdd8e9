"""The one customisation point of cells-oidc.

Subclass :class:`DefaultAdapter`, override the hooks you need and point
``CELLS_OIDC_ADAPTER`` at your class::

    class MyAdapter(DefaultAdapter):
        def claims(self, *, user):
            return {**super().claims(user=user), "groups": [g.name for g in user.groups.all()]}

        def issue_refresh_token(self, *, client, scopes, grant_type, **kwargs):
            return client.client_id != "kiosk" and super().issue_refresh_token(
                client=client, scopes=scopes, grant_type=grant_type, **kwargs
            )

The token hooks take keyword arguments and ``**kwargs``: later versions may pass more (accept
and ignore what you do not use).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from django.utils.module_loading import import_string

from cells_oidc.conf import app_settings

__all__ = ["OFFLINE_SCOPES", "REGISTERED_CLAIMS", "DefaultAdapter", "get_adapter"]

#: The scopes that ask for a refresh token (OpenID Connect Core §11 ``offline_access``; Cells'
#: clients say ``offline``).
OFFLINE_SCOPES = frozenset({"offline", "offline_access"})

#: Claims only the provider sets: extra claims of these names from the adapter are ignored.
#: RFC 7519 §4.1 (iss, sub, aud, exp, nbf, iat, jti), OpenID Connect Core §2 (auth_time, nonce,
#: acr, amr, azp, at_hash, c_hash), RFC 9068 §2.2 (client_id, scope), RFC 8693 §4 (act, may_act),
#: RFC 7800 §3 (cnf), OpenID Connect Front-Channel Logout §3 (sid).
REGISTERED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "client_id",
        "scope",
        "act",
        "may_act",
        "cnf",
        "sid",
    }
)


def _takes_keywords(method: Any) -> bool:
    """Whether ``method`` accepts ``client=`` (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == "client" for p in parameters)


class DefaultAdapter:
    """Decisions about users and tokens that a site may want to make differently."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("subject")
        if callable(legacy) and not _takes_keywords(legacy):
            # A subclass written for ``subject(self, user)`` keeps working: it is called without
            # the keyword arguments it does not take.
            @functools.wraps(legacy)
            def subject(self: Any, user: Any, **kwargs: Any) -> str:
                return legacy(self, user)

            cls.subject = subject  # type: ignore[method-assign]

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

    def subject(self, user: Any, *, client: Any | None = None, **kwargs: Any) -> str:
        """The ``sub`` claim: a stable, never reassigned identifier of ``user`` (OpenID Connect
        Core §2), in ID tokens, access tokens, userinfo and introspection.

        ``client`` is the application the token is for when the caller knows it (``None`` for a
        personal access token or when a resource server maps ``sub`` back to a user). The
        default is the primary key, which Django never reuses for another user. A ``subject``
        override written as ``subject(self, user)`` still works. Override
        :meth:`user_for_subject` with it.
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

    # ---- token issuance ---------------------------------------------------------------------
    def extra_id_token_claims(
        self, *, user: Any, client: Any, scopes: list[str], **kwargs: Any
    ) -> dict[str, Any]:
        """Claims added to an ID token of ``user`` for ``client`` (default: none).

        Called for every ID token (code exchange and refresh), after the user's claims released
        by ``scopes`` (:meth:`claims`, :attr:`claim_scopes`); an extra claim of the same name
        replaces one of those. Registered claims (:data:`REGISTERED_CLAIMS`: ``iss``, ``sub``,
        ``aud``, ``exp``, ``iat``, ``jti``, ``nonce``, ``auth_time``, ``sid`` …) are set by the
        provider only: extra claims of those names are ignored. Values must be JSON-serialisable.
        ``kwargs`` hold ``grant_type`` (``"authorization_code"``, ``"refresh_token"`` …).
        """
        return {}

    def extra_access_token_claims(
        self, *, user: Any | None, client: Any, scopes: list[str], **kwargs: Any
    ) -> dict[str, Any]:
        """Claims added to a JWT access token (RFC 9068 §2.2.3) for ``client`` (default: none).

        ``user`` is ``None`` for a token of the client itself (client credentials grant). The
        registered claims (:data:`REGISTERED_CLAIMS`: ``iss``, ``sub``, ``aud``, ``exp``,
        ``iat``, ``jti``, ``client_id``, ``scope``, ``auth_time``, ``sid`` …) are set by the
        provider only: extra claims of those names are ignored. Every resource server that
        accepts the token reads them, so put nothing secret there. ``kwargs`` hold
        ``grant_type``.
        """
        return {}

    def issue_refresh_token(
        self, *, client: Any, scopes: list[str], grant_type: str | None, **kwargs: Any
    ) -> bool:
        """Whether a sign-in's first tokens include a refresh token.

        Asked at the code exchange and the device code grant (``grant_type``) with the granted
        ``scopes``; ``kwargs`` hold ``user``. Default: only for offline access, the ``offline``
        or ``offline_access`` scope (OpenID Connect Core §11). Not asked at a refresh: a sign-in
        that holds a refresh token always gets its successor (RFC 6749 §6 rotation).
        """
        return bool(OFFLINE_SCOPES & set(scopes))


def get_adapter() -> DefaultAdapter:
    """An instance of the adapter class named by ``CELLS_OIDC_ADAPTER``."""
    return import_string(app_settings.ADAPTER)()
