"""OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414) and the JWKS."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required
from oauth2_provider.scopes import get_scopes_backend

from cells_oidc.adapter import get_adapter
from cells_oidc.internal import keys
from cells_oidc.internal.endpoints import absolute_url, issuer
from cells_oidc.internal.views.common import add_cors, preflight

PUBLIC_DOCUMENT_MAX_AGE = 300


def provider_metadata() -> dict[str, Any]:
    """What the provider really supports, with absolute URLs built from the configured site URL."""
    return {
        "issuer": issuer(),
        "authorization_endpoint": absolute_url("authorize"),
        "token_endpoint": absolute_url("token"),
        "userinfo_endpoint": absolute_url("userinfo"),
        "jwks_uri": absolute_url("jwks"),
        "revocation_endpoint": absolute_url("revoke"),
        "introspection_endpoint": absolute_url("introspect"),
        "end_session_endpoint": absolute_url("logout"),
        "scopes_supported": list(get_scopes_backend().get_all_scopes()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # RFC 8628 §4: for the clients whose policy allows the device flow.
        "device_authorization_endpoint": absolute_url("device-authorization"),
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [keys.ALGORITHM],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],  # RFC 9700 §2.1.1: never "plain"
        "claims_supported": sorted(
            {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", *get_adapter().claim_scopes}
        ),
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }


def public_json(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    response = JsonResponse(data)
    response["Cache-Control"] = f"public, max-age={PUBLIC_DOCUMENT_MAX_AGE}"
    return add_cors(request, response, public=True)


@method_decorator(login_not_required, name="dispatch")
class DiscoveryView(View):
    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return public_json(request, provider_metadata())

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return preflight(request, ["GET"], public=True)


@method_decorator(login_not_required, name="dispatch")
class JwksView(DiscoveryView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return public_json(request, keys.jwks())


@method_decorator(login_not_required, name="dispatch")
class IssuerView(View):
    """The issuer URL itself (``{site}/oidc/``) points at the discovery document."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(absolute_url("discovery"))
