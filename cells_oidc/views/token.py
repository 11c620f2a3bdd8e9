"""Token, revocation, introspection and userinfo endpoints."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.compat import login_not_required
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauth2_provider.views.mixins import OAuthLibMixin

from .. import tokens
from ..adapter import get_adapter
from ..conf import app_settings
from ..endpoints import issuer
from ..models import checksum
from .common import ApiEndpointMixin, json_error

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class TokenView(ApiEndpointMixin, dot_views.TokenView):
    """RFC 6749 §3.2 token endpoint (authorization code and refresh token grants)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("grant_type") == DEVICE_GRANT and not request.POST.get("device_code"):
            return json_error("invalid_request", "device_code is required.")
        return super().post(request, *args, **kwargs)


class RevokeView(ApiEndpointMixin, dot_views.RevokeTokenView):
    """RFC 7009 token revocation."""


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class UserInfoView(ApiEndpointMixin, dot_views.UserInfoView):
    """OpenID Connect Core §5.3 userinfo, for our access tokens only (never an ID token)."""

    api_methods = ["GET", "POST"]


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class IntrospectView(ApiEndpointMixin, OAuthLibMixin, View):
    """RFC 7662 token introspection, for authenticated confidential clients (resource servers).

    DOT's introspection view also accepts public clients (which cannot authenticate) and bearer
    tokens; this one answers only a confidential client that proves its secret (RFC 7662 §2.1,
    §4: the endpoint must not become a token-scanning oracle).
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        valid, oauth_request = self.get_oauthlib_core().authenticate_client(request)
        client = getattr(oauth_request, "client", None) if valid else None
        if client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
            response = json_error("invalid_client", "Client authentication failed.", status=401)
            response["WWW-Authenticate"] = 'Basic realm="introspection"'
            return response
        token = request.POST.get("token")
        if not token:
            return json_error("invalid_request", "token is required.")
        return JsonResponse(introspect(token, request.POST.get("token_type_hint")))


def introspect(token: str, hint: str | None = None) -> dict[str, Any]:
    """RFC 7662 §2.2 response for ``token``: ``{"active": false}`` unless it is live and ours."""
    now = time.time()
    digest = checksum(token)
    access = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(token_checksum=digest)
        .first()
    )
    if access is not None and not access.is_expired():
        data: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": access.scope,
            "client_id": access.application.client_id if access.application else None,
            "exp": int(access.expires.timestamp()),
            "iss": issuer(),
        }
        try:
            claims = tokens.verify(token, typ=tokens.ACCESS_TOKEN_TYP, check_time=False)
        except tokens.InvalidToken:
            claims = {}
        for name in ("sub", "aud", "iat", "jti", "auth_time"):
            if name in claims:
                data[name] = claims[name]
        if access.user is not None:
            data["username"] = access.user.get_username()
            data.setdefault("sub", get_adapter().subject(access.user))
        return data
    refresh = (
        get_refresh_token_model()
        .objects.select_related("application", "user", "access_token")
        .filter(token_checksum=digest, revoked__isnull=True)
        .first()
    )
    if refresh is not None and refresh.access_token is not None:
        from oauth2_provider.models import refresh_token_expire_timedelta

        lifetime = refresh_token_expire_timedelta()
        exp = refresh.access_token.expires + lifetime if lifetime else None
        if exp is None or exp.timestamp() > now:
            data = {
                "active": True,
                "token_type": "refresh_token",
                "scope": refresh.access_token.scope,
                "client_id": refresh.application.client_id,
                "username": refresh.user.get_username(),
                "sub": get_adapter().subject(refresh.user),
                "iss": issuer(),
                "aud": app_settings.ACCESS_TOKEN_AUDIENCE,
            }
            if exp is not None:
                data["exp"] = int(exp.timestamp())
            return data
    return {"active": False}
