"""The bearer API of the site (Cells namespaces its REST API under ``/a/``).

Every endpoint authenticates ``Authorization: Bearer`` with an access token of the provider or a
personal access token (:class:`~cells_oidc.api.authentication.BearerTokenAuthentication`) and
needs a scope (:func:`~cells_oidc.api.permissions.HasScope`):

=========================================  ===========  ==================================================
``GET /a/user/me``                          ``profile``  the caller's profile
``GET /a/tokens``                           ``pydio``    the caller's sign-ins (grants) and personal tokens
``DELETE /a/tokens/{id}``                   ``pydio``    end one of the caller's own
``GET /a/personal-tokens``                  ``pydio``    list the caller's personal access tokens
``POST /a/personal-tokens``                 ``pydio``    mint one (an access token only, not a PAT)
``DELETE /a/personal-tokens/{id}``          ``pydio``    revoke one
=========================================  ===========  ==================================================

Every operation acts on the caller's own tokens. Acting on another user's — minting for them,
revoking their personal access token — needs *both* an access token carrying
:data:`~cells_oidc.conf.ADMIN_SCOPE` (``cells_oidc:admin``, granted only to a client whose policy
has ``allow_admin_scope``, and never carried by a personal access token) *and* the user's Django
permission (``cells_oidc.add_personalaccesstoken`` to mint, ``change_personalaccesstoken`` to
revoke). Without both, an administrator is treated like any user: someone else's id is a 404, a
``user`` other than oneself a 403.

A personal access token minted here records the sign-in whose access token asked for it
(``PersonalAccessToken.token_family``) and is refused from the moment that sign-in is revoked.

The API lives in the site of the provider: it reads the user's grants and tokens from the
database, so ``request.user`` must be a real user (not the ``TokenUser`` of remote mode).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import TooManyFieldsSent
from django.http import Http404
from oauth2_provider.models import get_application_model
from rest_framework import status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cells_oidc.api.authentication import PREFETCHED_ATTRIBUTE, BearerTokenAuthentication, user_refusal
from cells_oidc.api.permissions import HasScope
from cells_oidc.conf import ADMIN_SCOPE, app_settings
from cells_oidc.internal import events, grants, jsontext, pat, profiles
from cells_oidc.internal.api_serializers import (
    PersonalTokenCreatedSerializer,
    PersonalTokenCreateSerializer,
    PersonalTokenSerializer,
    TokensSerializer,
    UserSerializer,
)
from cells_oidc.internal.jws import InvalidToken
from cells_oidc.internal.resource import bearer_token
from cells_oidc.models import PersonalAccessToken, policy_for

try:  # drf-spectacular documents the API when installed (the demo site's OpenAPI document)
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
    from drf_spectacular.utils import OpenApiResponse, extend_schema
except ImportError:  # pragma: no cover - the API works without it

    def extend_schema(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda view: view

    def OpenApiResponse(*args: Any, **kwargs: Any) -> None:  # noqa: N802
        return None

else:

    class BearerTokenScheme(OpenApiAuthenticationExtension):
        """How the OpenAPI document describes :class:`BearerTokenAuthentication`."""

        target_class = "cells_oidc.api.authentication.BearerTokenAuthentication"
        name = "bearer"

        def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "An access token of the provider (a JWT, RFC 9068) or a personal access "
                "token (cpat_…). Each operation names the scope it needs.",
            }


MANAGE_SCOPE = "pydio"
PROFILE_SCOPE = "profile"
#: The Django permissions that, with :data:`ADMIN_SCOPE`, let a token act on other users' tokens.
MINT_FOR_OTHERS_PERMISSION = "cells_oidc.add_personalaccesstoken"
REVOKE_FOR_OTHERS_PERMISSION = "cells_oidc.change_personalaccesstoken"


#: The 403 ``detail`` of a user-only operation called with a client's own token.
CLIENT_TOKEN_REFUSAL = "this operation acts for a user; a client token has none"


class IsProviderUser(BasePermission):
    """The token acts for a user of this site's database (not a client, not a remote-mode user).

    A token a client obtained for itself (client credentials, RFC 9068 §2.2: ``sub`` is the
    client) is refused with :data:`CLIENT_TOKEN_REFUSAL`, a 403 that says why.
    """

    message = "This operation needs a token of a user of this site."

    def has_permission(self, request: Any, view: Any) -> bool:
        info = getattr(request, "auth", None)
        if getattr(info, "for_client", False):
            self.message = CLIENT_TOKEN_REFUSAL
            return False
        return isinstance(request.user, get_user_model()) and request.user.is_active


class JSONBodyParser(JSONParser):
    """DRF's JSON parser; a body nested deeper than Python's decoder goes is a 400 ``ParseError``
    (RFC 8259 §9 lets a parser limit nesting), not a ``RecursionError`` and a 500; so is a string
    holding an unpaired surrogate (cells_oidc.internal.jsontext), not a 500 where it is stored."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            jsontext.check_unicode(data)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
        except jsontext.UnpairedSurrogate as exc:
            raise ParseError("JSON parse error - a string is not Unicode text.") from exc
        return data


class BearerAPIView(APIView):
    """Bearer-token only (no session, hence no CSRF), JSON only, never cached."""

    authentication_classes = [BearerTokenAuthentication]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONBodyParser]
    permission_classes = [HasScope(MANAGE_SCOPE), IsProviderUser]

    @events.binds_request
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            request._request.GET  # noqa: B018 - read by the content negotiation and the bearer check
        except TooManyFieldsSent as exc:
            # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS: a JSON 400 (RFC 6750 §3.1 invalid_request),
            # not the site's HTML 400 page.
            raise ParseError("The query string has too many parameters.") from exc
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Personal data and, once, a secret: RFC 9111 §5.2.2.5.
        response["Cache-Control"] = "no-store"
        return response


def _number(text: str) -> int | None:
    """A primary key from the URL, or ``None`` (never a number the database cannot hold)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _scope_note(scope: str) -> str:
    return f"Needs a bearer token with the scope `{scope}`."


_ADMIN_NOTE = (
    f" Acting on another user's tokens needs an access token (not a personal access token) with "
    f"the scope `{MANAGE_SCOPE}` and the administrative scope `{ADMIN_SCOPE}` — granted only to a "
    f"client whose policy allows it — and the caller's Django permission `{{permission}}`."
)


def _scopes_extension(*scopes: str, admin: str | None = None) -> dict[str, Any]:
    """``x-scopes`` of an operation: what it needs, and what acting on others needs on top."""
    needs: dict[str, Any] = {"required": list(scopes)}
    if admin:
        needs["to act on other users"] = {"scopes": [ADMIN_SCOPE], "permission": admin}
    return {"x-scopes": needs}


def may_act_on_others(request: Request, permission: str) -> bool:
    """Whether the caller's token may act on *other* users' tokens with ``permission``.

    All of: an access token (a personal access token never does), carrying :data:`ADMIN_SCOPE`,
    of a client whose policy still allows that scope (a refresh does not re-check the policy, so
    turning ``allow_admin_scope`` off takes effect at once), for a user holding ``permission``.
    """
    info = request.auth
    if info.kind != "jwt" or ADMIN_SCOPE not in info.scopes:
        return False
    if not request.user.has_perm(permission):
        return False
    client = get_application_model().objects.filter(client_id=info.client_id).first()
    return client is not None and policy_for(client).allow_admin_scope


# ---- the profile ------------------------------------------------------------------------------
_PROFILE_ATTRIBUTE = "_cells_oidc_profile"


def _cached_profile_applies(request: Request) -> bool:
    """An access token of this provider for a user of its database: its profile may come from
    the cache (cells_oidc.internal.profiles). A personal access token has loaded its user already;
    remote mode and tokens without a user keep :class:`IsProviderUser`'s answer."""
    info = request.auth
    return (
        getattr(info, "kind", None) == "jwt"
        and not info.for_client
        and app_settings.RESOURCE_ISSUER is None
        and app_settings.RESOURCE_LOAD_USER
    )


class IsProviderUserProfile(IsProviderUser):
    """:class:`IsProviderUser` for ``GET /a/user/me``: an access token's user is checked (known,
    active) through its cached profile, which the view then answers with — no query when cached."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not _cached_profile_applies(request):
            return super().has_permission(request, view)
        try:
            prefetched = getattr(request, PREFETCHED_ATTRIBUTE, None)
            setattr(request, _PROFILE_ATTRIBUTE, profiles.profile(request.auth, prefetched))
        except InvalidToken as exc:
            raise user_refusal(request, exc) from None  # 401 invalid_token, as for an unknown user
        return True


class MeView(BearerAPIView):
    permission_classes = [HasScope(PROFILE_SCOPE), IsProviderUserProfile]
    #: Its profile's cache entries are read with the deny-list (BearerTokenAuthentication).
    prefetch_profile = True

    @extend_schema(
        operation_id="user_me",
        summary="The caller's profile",
        description=_scope_note(PROFILE_SCOPE)
        + " The email is included only with the `email` scope. Always the caller's own profile.",
        responses={200: UserSerializer},
        extensions=_scopes_extension(PROFILE_SCOPE),
        tags=["user"],
    )
    def get(self, request: Request) -> Response:
        info = request.auth
        found = getattr(request, _PROFILE_ATTRIBUTE, None)
        profile = found if found is not None else profiles.build(request.user, info.subject)
        data = {
            "sub": info.subject,
            "login": profile["login"],
            "name": profile["name"],
            "given_name": profile["given_name"],
            "family_name": profile["family_name"],
            "email": (profile["email"] or None) if "email" in info.scopes else None,
            "groups": list(profile["groups"]),
            "token": {
                "kind": info.kind,
                "client_id": info.client_id,
                "scope": " ".join(sorted(info.scopes)),
                "expires_at": info.expires_at,
            },
        }
        # Already the shape UserSerializer documents (the OpenAPI schema): no second pass over it
        # on the hottest API call (docs/performance.md).
        return Response(data)


# ---- grants and personal tokens ---------------------------------------------------------------
def grants_of(user: Any) -> list[dict[str, Any]]:
    """The sign-ins ``user`` holds (:func:`cells_oidc.internal.grants.held_by`, as the account page lists)."""
    return [
        {
            "id": held.id,
            "kind": "grant",
            "client_id": held.application.client_id,
            "client_name": held.application.name or "",
            "scope": held.scope,
            "signed_in": held.authenticated,
            "last_used": held.last_used,
        }
        for held in grants.held_by(user)
    ]


def personal_tokens_of(user: Any) -> Any:
    return pat.live(PersonalAccessToken.objects.filter(user=user)).select_related("user")


class TokensView(BearerAPIView):
    @extend_schema(
        operation_id="tokens_list",
        summary="The caller's sign-ins and personal access tokens",
        description=_scope_note(MANAGE_SCOPE)
        + " Always the caller's own. Grants are the sign-ins the caller holds: those that can still "
        "obtain tokens (a live refresh token) or use one (a live access token of a sign-in without a "
        "refresh token) — the list of the account page. Secrets are never listed.",
        responses={200: TokensSerializer},
        extensions=_scopes_extension(MANAGE_SCOPE),
        tags=["tokens"],
    )
    def get(self, request: Request) -> Response:
        data = {"grants": grants_of(request.user), "personal_tokens": personal_tokens_of(request.user)}
        return Response(TokensSerializer(data).data)


class TokenView(BearerAPIView):
    @extend_schema(
        operation_id="tokens_revoke",
        summary="End one of the caller's sign-ins or revoke one of their personal access tokens",
        description=_scope_note(MANAGE_SCOPE)
        + " Only the caller's own, whatever their rights: `id` is the `id` of a grant (a UUID: every "
        "refresh and access token of that sign-in is revoked, and every personal access token minted "
        "through it) or of a personal access token (a number). Someone else's id, or a sign-in no "
        "longer held, answers 404. Administrators revoke other users' personal access tokens with "
        "DELETE /a/personal-tokens/{id}.",
        responses={204: None, 404: OpenApiResponse(description="No such grant or token of the caller.")},
        extensions=_scopes_extension(MANAGE_SCOPE),
        tags=["tokens"],
    )
    def delete(self, request: Request, token_id: str) -> Response:
        number = _number(token_id)
        if number is not None:
            token = PersonalAccessToken.objects.filter(user=request.user, pk=number).first()
            if token is None:
                raise Http404
            pat.revoke(token, revoked_by=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        try:
            family_id = uuid.UUID(token_id)
        except ValueError:
            raise Http404 from None
        # The account page's rule (cells_oidc.internal.grants): what the caller holds, nobody else's.
        if not grants.revoke(request.user, family_id, reason="api"):
            raise Http404
        return Response(status=status.HTTP_204_NO_CONTENT)


class PersonalTokensView(BearerAPIView):
    @extend_schema(
        operation_id="personal_tokens_list",
        summary="The caller's active personal access tokens",
        description=_scope_note(MANAGE_SCOPE)
        + " Always the caller's own (whatever the site's CELLS_OIDC_PAT_SELF_SERVICE: a user may always "
        "see and revoke their tokens). A token minted through a sign-in since revoked is not listed.",
        responses={200: PersonalTokenSerializer(many=True)},
        extensions=_scopes_extension(MANAGE_SCOPE),
        tags=["personal tokens"],
    )
    def get(self, request: Request) -> Response:
        return Response(PersonalTokenSerializer(personal_tokens_of(request.user), many=True).data)

    @extend_schema(
        operation_id="personal_tokens_create",
        summary="Mint a personal access token (its secret is in this answer only)",
        description=_scope_note(MANAGE_SCOPE)
        + " Only with an access token of a sign-in (a personal access token cannot mint another). For "
        "oneself: when the site lets users mint their own (CELLS_OIDC_PAT_SELF_SERVICE), or as an "
        "administrator (below). The new token's scopes are at most those of the token making the "
        f"request, never `{ADMIN_SCOPE}`. It records the sign-in of that access token (`sign_in`) and "
        "is refused once that sign-in is revoked (signing out, the account page, revoking its refresh "
        "token)." + _ADMIN_NOTE.format(permission=MINT_FOR_OTHERS_PERMISSION),
        request=PersonalTokenCreateSerializer,
        responses={
            201: PersonalTokenCreatedSerializer,
            400: OpenApiResponse(description="Invalid request."),
            403: OpenApiResponse(description="Not allowed to mint this token."),
        },
        extensions=_scopes_extension(MANAGE_SCOPE, admin=MINT_FOR_OTHERS_PERMISSION),
        tags=["personal tokens"],
    )
    def post(self, request: Request) -> Response:
        info = request.auth
        if info.kind != "jwt":
            # A leaked personal token must not be able to perpetuate itself.
            raise PermissionDenied("A personal access token cannot mint personal access tokens.")
        serializer = PersonalTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        owner = request.user
        login = data.get("user")
        if login and login != request.user.get_username():
            # Checked before the login is looked up: no one learns which logins exist.
            if not may_act_on_others(request, MINT_FOR_OTHERS_PERMISSION):
                raise PermissionDenied(
                    f"Minting a token for another user needs an access token with the scope {ADMIN_SCOPE} "
                    f"and the permission {MINT_FOR_OTHERS_PERMISSION}."
                )
            model = get_user_model()
            owner = model._default_manager.filter(**{model.USERNAME_FIELD: login}).first()
            if owner is None:
                raise ValidationError({"user": ["No such user."]})
        elif not (app_settings.PAT_SELF_SERVICE or may_act_on_others(request, MINT_FOR_OTHERS_PERMISSION)):
            raise PermissionDenied("This site does not let users mint their own personal access tokens.")
        raw = bearer_token(request._request)
        family = grants.family_of_access_token(raw) if raw else None
        if family is None:
            # The new token must die with the sign-in that asked for it; one we cannot name is refused.
            raise PermissionDenied("The sign-in of this access token is unknown or ended: sign in again.")

        def seconds(name: str) -> timedelta | None:
            return timedelta(seconds=data[name]) if name in data else None

        try:
            minted = pat.mint(
                owner,
                created_by=request.user,
                token_family=family,
                expires_in=seconds("expires_in"),
                auto_refresh=seconds("auto_refresh_seconds"),
                max_lifetime=seconds("max_lifetime"),
                scope=data.get("scope"),
                label=data.get("label", ""),
                within_scopes=info.scopes,
            )
        except pat.PersonalTokenError as exc:
            raise ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc
        body = dict(PersonalTokenSerializer(minted.token).data, token=minted.secret)
        return Response(body, status=status.HTTP_201_CREATED)


class PersonalTokenView(BearerAPIView):
    @extend_schema(
        operation_id="personal_tokens_revoke",
        summary="Revoke a personal access token",
        description=_scope_note(MANAGE_SCOPE)
        + " The caller's own token (whatever CELLS_OIDC_PAT_SELF_SERVICE). Revoking a revoked token "
        "succeeds; another user's answers 404 unless the caller may act on others."
        + _ADMIN_NOTE.format(permission=REVOKE_FOR_OTHERS_PERMISSION),
        responses={204: None, 404: OpenApiResponse(description="No such token of the caller.")},
        extensions=_scopes_extension(MANAGE_SCOPE, admin=REVOKE_FOR_OTHERS_PERMISSION),
        tags=["personal tokens"],
    )
    def delete(self, request: Request, token_id: str) -> Response:
        number = _number(token_id)
        token = PersonalAccessToken.objects.filter(pk=number).first() if number is not None else None
        if token is None or (
            token.user_id != request.user.pk and not may_act_on_others(request, REVOKE_FOR_OTHERS_PERMISSION)
        ):
            # Someone else's token and no administrative powers: the same answer as none at all.
            raise Http404
        pat.revoke(token, revoked_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
