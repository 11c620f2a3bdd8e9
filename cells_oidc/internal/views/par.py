"""The pushed authorization request endpoint (RFC 9126 §2)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest

from cells_oidc.conf import app_settings
from cells_oidc.internal import par
from cells_oidc.internal.endpoints import absolute_url
from cells_oidc.internal.errors import json_error
from cells_oidc.internal.views.authorize import AuthorizationView, malformed
from cells_oidc.internal.views.common import ApiEndpointMixin


class PushedAuthorizationView(ApiEndpointMixin, OAuthLibMixin, View):
    """``POST {mount}oauth2/par``: authenticate the client as the token endpoint does, validate
    the authorization request as the authorization endpoint does, store it → 201
    ``{"request_uri", "expires_in"}`` (RFC 9126 §2.2); errors are JSON (§2.3)."""

    client_endpoint = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not app_settings.PAR_ENABLED:
            return json_error("invalid_request", "Pushed authorization requests are not enabled.", status=404)
        client = self.authenticated_client(request)
        if client is None:
            return json_error("invalid_client", "Client authentication failed.", status=401)
        params = request.POST.copy()
        params.pop("client_secret", None)  # RFC 6749 §2.3.1: a credential, not a request parameter
        if params.get("client_id", client.client_id) != client.client_id:
            # RFC 9126 §2.1: the request is the authenticated client's.
            return json_error("invalid_request", "client_id is not the authenticated client.")
        params["client_id"] = client.client_id
        if "request_uri" in params:
            return json_error("invalid_request", "request_uri cannot be pushed.")  # RFC 9126 §2.1
        problem = malformed(params)
        if problem:
            return json_error("invalid_request", problem)
        params._mutable = False
        # The authorization endpoint's validation, as it is (one copy of the rules).
        view = AuthorizationView()
        view.setup(request)
        view.validated_redirect_uri = None
        view.pushed = True
        try:
            view.validate_params(request, params)
        except OAuthToolkitError as error:
            oauthlib_error = error.oauthlib_error
            return json_error(oauthlib_error.error, oauthlib_error.description or None)
        request_uri, expires_in = par.push(client.client_id, params)
        return JsonResponse({"request_uri": request_uri, "expires_in": expires_in}, status=201)

    def authenticated_client(self, request: HttpRequest) -> Any:
        """The client of ``request``, authenticated as at the token endpoint (RFC 9126 §2: the
        validator's client authentication; a public client identifies with ``client_id``)."""
        core = self.get_oauthlib_core()
        validator = core.server.request_validator
        oauth_request = OauthlibRequest(
            absolute_url("par"), "POST", core.extract_body(request), core.extract_headers(request)
        )
        if validator.client_authentication_required(oauth_request):
            if not validator.authenticate_client(oauth_request):
                return None
        elif not oauth_request.client_id or not validator.authenticate_client_id(
            oauth_request.client_id, oauth_request
        ):
            return None
        return getattr(oauth_request, "client", None)
