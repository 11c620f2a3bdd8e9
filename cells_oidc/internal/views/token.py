"""Token, revocation, introspection and userinfo endpoints."""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import router, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.models import (
    get_access_token_model,
    get_device_grant_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.signals import app_authorized
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import bearer, client_auth, dpop, pat, tokens
from cells_oidc.internal.context import token_request_context
from cells_oidc.internal.device import DEVICE_GRANT
from cells_oidc.internal.endpoints import absolute_url, issuer
from cells_oidc.internal.views.common import ApiEndpointMixin, json_error, requesting_client_id
from cells_oidc.models import TokenFamily, checksum, policy_for


class TokenView(ApiEndpointMixin, dot_views.TokenView):
    """RFC 6749 §3.2 token endpoint (authorization code and refresh token grants)."""

    client_endpoint = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        grant_type = request.POST.get("grant_type")
        if not grant_type:
            # RFC 6749 §4.1.3, §5.2: a missing required parameter is invalid_request (oauthlib
            # would fall back to the authorization code grant and say unsupported_grant_type).
            return json_error("invalid_request", "grant_type is required.")
        if grant_type == DEVICE_GRANT and not request.POST.get("device_code"):
            return json_error("invalid_request", "device_code is required.")  # RFC 8628 §3.4
        refused = self.check_dpop(request)
        if refused is not None:
            return refused
        # Exactly once (docs/security.md): the whole request is one transaction. The locks the
        # validator takes (the sign-in's TokenFamily row) are held until its tokens, or the
        # revocation a replay causes, are committed. oauthlib answers errors rather than raising
        # them, so an invalid_grant commits the revocation it caused; only a crash rolls back.
        with transaction.atomic(using=router.db_for_write(get_access_token_model())):
            return super().post(request, *args, **kwargs)

    @staticmethod
    def check_dpop(request: HttpRequest) -> HttpResponse | None:
        """RFC 9449 §5: verify the token request's DPoP proof and hand its key's thumbprint to the
        token issuance (``cnf.jkt``, ``token_type`` DPoP); a bad proof is ``invalid_dpop_proof``,
        a missing nonce ``use_dpop_nonce`` (§8), no proof from a client whose policy requires
        DPoP ``invalid_dpop_proof`` too."""
        if not app_settings.DPOP_ENABLED:
            return None
        try:
            proof = dpop.check_request(request, htu=absolute_url("token"), nonce=app_settings.DPOP_NONCE)
        except dpop.DPoPError as exc:
            response = json_error(exc.error, f"Invalid DPoP proof: {exc.reason}.")
            if exc.error == "use_dpop_nonce":
                response["DPoP-Nonce"] = dpop.current_nonce()
            return response
        if proof is not None:
            request.META[dpop.JKT_META_KEY] = proof.jkt
            return None
        client = client_auth.load_client(requesting_client_id(request))
        # The validator reads the client from here (context.client): one read per request.
        token_request_context(request).client = client
        if client is not None and policy_for(client).require_dpop:
            return json_error("invalid_dpop_proof", "This client must send a DPoP proof.")
        return None

    @method_decorator(sensitive_post_parameters("password", "client_secret"))
    def authorization_flow_token_response(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """DOT's, with the access token row the validator saved for ``app_authorized`` (DOT reads
        it back by its checksum; docs/performance.md)."""
        context = token_request_context(request)
        url, headers, body, status = self.create_token_response(request)
        if status == 200:
            token = context.access_token
            if token is None:  # a grant that saved none through the validator: DOT's look-up
                access_token = json.loads(body).get("access_token")
                if access_token is not None:
                    token = (
                        get_access_token_model().objects.filter(token_checksum=checksum(access_token)).first()
                    )
            if token is not None:
                app_authorized.send(sender=self, request=request, token=token)
        response = HttpResponse(content=body, status=status)
        for key, value in headers.items():
            response[key] = value
        return response

    def device_flow_token_response(
        self, request: HttpRequest, device_code: str, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        if not get_device_grant_model().objects.filter(device_code=device_code).exists():
            # DOT answers a non-standard 404 "device_not_found"; an unknown code is an
            # invalid grant (RFC 6749 §5.2, as RFC 8628 §3.5 defers to it).
            return json_error("invalid_grant", "Unknown device_code.")
        # DOT's device_flow_token_response tells any client the status of any code and has no
        # slow_down. oauthlib's device grant authenticates the client first, then the
        # validator's validate_device_code answers for this client's code only:
        # authorization_pending, slow_down, access_denied, expired_token (RFC 8628 §3.5), or
        # invalid_grant for another client's or a used code (RFC 6749 §5.2).
        return self.authorization_flow_token_response(request, *args, **kwargs)


class RevokeView(ApiEndpointMixin, dot_views.RevokeTokenView):
    """RFC 7009 token revocation (family-wide for refresh tokens, see the validator)."""

    client_endpoint = True


class UserInfoView(ApiEndpointMixin, dot_views.UserInfoView):
    """OpenID Connect Core §5.3 userinfo, for our access tokens only (never an ID token).

    The access token comes in the ``Authorization: Bearer`` header (RFC 6750 §2.1) or, for a
    POST, in the form body (§2.2); never in the query string (RFC 9700 §4.3.2, RFC 6750 §5.3)
    and never by two methods at once (RFC 6750 §2).
    """

    api_methods = ["GET", "POST"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.userinfo(request)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.userinfo(request)

    def userinfo(self, request: HttpRequest) -> HttpResponse:
        # Every refusal is the resource server's (cells_oidc.internal.bearer): the same challenge,
        # realm and reasons as the site's APIs and @bearer_token_required.
        try:
            token = bearer.bearer_token(request, body_allowed=True, query_allowed=False)
        except bearer.BearerRequestError as exc:
            return bearer.refusal(exc.status, exc.error, str(exc))
        if token is None:
            return bearer.refusal(401, None, bearer.NO_TOKEN)  # RFC 6750 §3.1: no error code
        try:
            # Our access tokens only: an ID token (typ JWT) or a forgery is refused here.
            claims = tokens.verify(token, typ=tokens.ACCESS_TOKEN_TYP)
            dpop.check_resource_request(request, token, claims)  # RFC 9449 §7
        except tokens.InvalidToken as exc:
            return bearer.refusal(
                401,
                exc.error,
                bearer.invalid_token_description(exc.reason),
                dpop=getattr(exc, "dpop", False),
            )
        access = (
            get_access_token_model()
            .objects.select_related("user", "application")
            .filter(token_checksum=checksum(token))
            .first()
        )
        if access is None or not access.is_valid():
            return bearer.refusal(401, "invalid_token", bearer.invalid_token_description("revoked"))
        if access.user is not None and not get_adapter().can_sign_in(
            user=access.user, client=access.application
        ):
            # A deactivated account's tokens stop working at once (DOT only checks expiry).
            return bearer.refusal(401, "invalid_token", bearer.invalid_token_description("inactive user"))
        if "openid" not in access.scope.split():
            # OpenID Connect Core §5.3.3, RFC 6750 §3.1: a live token without the openid scope
            # is short of scope (403), not invalid (oauthlib says 401); Keycloak does the same.
            return bearer.refusal(403, "insufficient_scope", bearer.INSUFFICIENT_SCOPE, scope={"openid"})
        if dpop.authorization_scheme(request) == "dpop":
            # Checked above (RFC 9449 §7); oauthlib, which answers the claims, reads Bearer only.
            request.META["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return self._create_userinfo_response(request)


class IntrospectView(ApiEndpointMixin, OAuthLibMixin, View):
    """RFC 7662 token introspection, for authenticated confidential clients (resource servers).

    DOT's introspection view also accepts public clients (which cannot authenticate) and bearer
    tokens; this one answers only a confidential client that proves its secret (RFC 7662 §2.1,
    §4: the endpoint must not become a token-scanning oracle).
    """

    client_endpoint = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.confidential_client_authenticated(request):
            return json_error("invalid_client", "Client authentication failed.", status=401)
        token = request.POST.get("token")
        if not token:
            return json_error("invalid_request", "token is required.")
        return JsonResponse(introspect(token, request.POST.get("token_type_hint")))

    def confidential_client_authenticated(self, request: HttpRequest) -> bool:
        # DOT's OAuthLibCore.authenticate_client answers only a boolean; the client it found is
        # needed too, so the same oauthlib request is built here from DOT's public extractors.
        core = self.get_oauthlib_core()
        oauth_request = OauthlibRequest(
            absolute_url("introspect"), "POST", core.extract_body(request), core.extract_headers(request)
        )
        if not core.server.request_validator.authenticate_client(oauth_request):
            return False
        client = getattr(oauth_request, "client", None)
        return client is not None and client.client_type == client.CLIENT_CONFIDENTIAL


INACTIVE: dict[str, Any] = {"active": False}


def introspect(token: str, hint: str | None = None) -> dict[str, Any]:
    """RFC 7662 §2.2 response for ``token``: ``{"active": false}`` unless it is live and ours.

    Access and refresh tokens are both looked up (the hint is only an optimisation, §2.1); ID
    tokens are not tokens a resource server may accept, so they are never active. As in
    Hydra (fosite), ``token_use`` tells access from refresh tokens and ``token_type`` is the
    access token type of RFC 6749 §7.1, given for access tokens only.
    """
    personal = pat.introspect(token)  # a cpat_ token: answered (and counted as a use) by pat.py
    if personal is not None:
        return personal
    digest = checksum(token)
    lookups = (_introspect_refresh, _introspect_access)
    if hint != "refresh_token":
        lookups = (_introspect_access, _introspect_refresh)
    for lookup in lookups:
        data = lookup(token, digest)
        if data is not None:
            return data
    return dict(INACTIVE)


def _introspect_access(token: str, digest: str) -> dict[str, Any] | None:
    access = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(token_checksum=digest)
        .first()
    )
    if access is None:
        return None
    if access.is_expired() or not _may_sign_in(access.user, access.application):
        return dict(INACTIVE)
    try:
        claims = tokens.verify(token, typ=tokens.ACCESS_TOKEN_TYP, check_time=False)
    except tokens.InvalidToken:
        claims = {}  # stored by DOT, yet not one of our JWTs (e.g. minted before a key was retired)
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        exp = int(access.expires.timestamp())
    if exp <= time.time():
        return dict(INACTIVE)
    data: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "token_use": "access_token",
        "scope": access.scope,
        "client_id": access.application.client_id if access.application else None,
        "exp": exp,
        "iss": issuer(),
    }
    for name in ("sub", "aud", "iat", "jti", "auth_time", "cnf"):  # cnf: RFC 9449 §6.2
        if name in claims:
            data[name] = claims[name]
    if isinstance(claims.get("cnf"), dict):
        data["token_type"] = "DPoP"
    if access.user is not None:
        data["username"] = access.user.get_username()
        data.setdefault("sub", get_adapter().subject(access.user))
    return data


def _introspect_refresh(token: str, digest: str) -> dict[str, Any] | None:
    refresh = (
        get_refresh_token_model()
        .objects.select_related("application", "user", "access_token")
        .filter(token_checksum=digest)
        .order_by("-created")
        .first()
    )
    if refresh is None:
        return None
    # The same rules as DOT's validate_refresh_token: not revoked (rotation revokes too), still
    # paired with an access token, and REFRESH_TOKEN_EXPIRE_SECONDS after that one's expiry.
    if refresh.revoked is not None or refresh.access_token is None:
        return dict(INACTIVE)
    if not _may_sign_in(refresh.user, refresh.application):
        return dict(INACTIVE)
    if (
        refresh.token_family
        and TokenFamily.objects.filter(pk=refresh.token_family, revoked__isnull=False).exists()
    ):
        return dict(INACTIVE)
    lifetime = refresh_token_expire_timedelta()
    exp = refresh.access_token.expires + lifetime if lifetime else None
    if exp is not None and exp.timestamp() <= time.time():
        return dict(INACTIVE)
    data: dict[str, Any] = {
        "active": True,
        "token_use": "refresh_token",
        "scope": refresh.access_token.scope,
        "client_id": refresh.application.client_id,
        "username": refresh.user.get_username(),
        "sub": get_adapter().subject(refresh.user),
        "iss": issuer(),
        "iat": int(refresh.created.timestamp()),
    }
    if exp is not None:
        data["exp"] = int(exp.timestamp())
    return data


def _may_sign_in(user: Any, client: Any) -> bool:
    return user is None or get_adapter().can_sign_in(user=user, client=client)
