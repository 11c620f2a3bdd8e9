"""The device authorization grant (RFC 8628): a headless machine signs in through another device.

1. The device POSTs to the device authorization endpoint (``oauth2/device/auth``) and gets a
   ``device_code`` (kept secret on the device) and a short ``user_code`` it shows to the user,
   with the ``verification_uri`` (the short page ``device`` under the mount).
2. On a phone or laptop the user signs in there, types the user code (case and dashes do not
   matter), sees which application asks for what, and approves or denies.
3. The device polls the token endpoint with the ``device_code`` until it gets its tokens or an
   error (RFC 8628 §3.4, §3.5).

Built on DOT's ``DeviceGrant`` model and device authorization view; the pages are cells-oidc's.
Only clients whose policy has ``allow_device_flow`` may use it. This module is the HTTP side;
the rules (user codes, failure limit, decision, redemption) are in :mod:`cells_oidc.internal.device`.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from oauth2_provider import views as dot_views
from oauth2_provider.compat import login_not_required
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc8628.endpoints.device_authorization import DeviceAuthorizationEndpoint

from cells_oidc.conf import app_settings
from cells_oidc.internal import client_auth, device, errors, pages, throttle
from cells_oidc.internal.validators import valid_resource_indicator
from cells_oidc.internal.views.common import ApiEndpointMixin
from cells_oidc.models import policy_for

SESSION_KEY = "cells_oidc.device_grant"
EXAMPLE_CODE = "BDFH-KLMN"


# ---- the device authorization endpoint (RFC 8628 §3.1, §3.2) -----------------------------------
@method_decorator(login_not_required, name="dispatch")
class DeviceAuthorizationView(ApiEndpointMixin, dot_views.DeviceAuthorizationView):
    """``POST oauth2/device/auth``: JSON in and out, CORS and errors as at the token endpoint."""

    client_endpoint = True

    @classmethod
    def get_oauthlib_core(cls) -> Any:
        # Built per request: the verification URI follows CELLS_OIDC_SITE_URL and the mount.
        server = DeviceAuthorizationEndpoint(
            cls.get_validator_class()(),
            verification_uri=device.verification_uri(),
            expires_in=app_settings.DEVICE_CODE_LIFETIME,
            interval=oauth2_settings.DEVICE_FLOW_INTERVAL,
            verification_uri_complete=device.verification_uri_complete,
            user_code_generator=device.generate_user_code,
        )
        return cls.get_oauthlib_backend_class()(server)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        basic = client_auth.request_basic_credentials(request)
        client_id = request.POST.get("client_id") or (basic[0] if basic else None)
        application = client_auth.load_client(client_id)
        if application is None:
            # RFC 6749 §5.2: an unknown client is invalid_client (oauthlib says invalid_request).
            return errors.json_response(errors.InvalidClient("Unknown client."))
        if not policy_for(application).allow_device_flow:
            # RFC 6749 §5.2: the client is not authorized to use this grant type.
            return errors.json_response(errors.UnauthorizedClient("This client may not use the device flow."))
        resources = request.POST.getlist("resource")
        allowed = policy_for(application).allowed_resource_set()
        if any(not valid_resource_indicator(value) or value not in allowed for value in resources):
            # RFC 8707 §2: the rule of the other endpoints. The approval does not carry resources:
            # the token request names them (and is checked the same way).
            return errors.json_response(
                errors.InvalidTarget("The client may not request tokens for this resource.")
            )
        headers, body, status = self.get_oauthlib_core().create_device_authorization_response(request)
        if status != 200:
            data = json.loads(body) if isinstance(body, str) else body
            response = JsonResponse(data, status=status)
            for name, value in (headers or {}).items():
                if name.lower() == "www-authenticate":
                    response[name] = value
            return response
        data = dict(body)
        device.record_issued(application.client_id, data)
        return JsonResponse(data)


# ---- the pages -----------------------------------------------------------------------------------
class DeviceView(pages.SignedInPageMixin, View):
    """The verification URI: the user types the code their device shows."""

    http_method_names = ["get", "post"]
    template_name = "cells_oidc/device.html"

    def render(self, user_code: str = "", error: str = "", status: int = 200) -> HttpResponse:
        return pages.render_page(
            self.request,
            self.template_name,
            {
                "user_code": user_code,
                "error": error,
                "code_length": device.USER_CODE_LENGTH,
                "example_code": EXAMPLE_CODE,
            },
            status=status,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        prefill = device.normalize_user_code(request.GET.get("user_code", "")[:64])
        return self.render(device.display_user_code(prefill))

    def post(self, request: HttpRequest) -> HttpResponse:
        typed = request.POST.get("user_code", "")[:64]
        try:
            # RFC 8628 §5.1: counted before the lookup, so codes typed in parallel cannot all pass.
            attempt = device.count_attempt(request)
        except throttle.Throttled as exc:
            response = self.render(
                typed, _("Too many wrong codes. Wait a few minutes, then try again."), status=429
            )
            response["Retry-After"] = str(exc.retry_after)  # RFC 6585 §4
            return response
        grant = device.find_pending(typed)
        if grant is None:  # a wrong code: it stays counted
            return self.render(
                typed,
                _("That code is not valid or has expired. Check the code on your device and try again."),
                status=400,
            )
        device.code_found(attempt)
        request.session[SESSION_KEY] = grant.pk
        return HttpResponseRedirect(reverse("cells_oidc:device-confirm"), status=303)


class DeviceConfirmView(pages.SignedInPageMixin, View):
    """Which application asks for what, on the device showing this code: approve or deny."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        grant = device.pending_grant(request.session.get(SESSION_KEY))
        if grant is None:
            return expired(request)
        all_scopes = get_scopes_backend().get_all_scopes()
        scopes = grant.scope.split()
        return pages.render_page(
            request,
            "cells_oidc/device_confirm.html",
            {
                "application": grant.application,
                "scopes": scopes,
                "scope_descriptions": [all_scopes.get(s, s) for s in scopes],
                "user_code": device.display_user_code(grant.user_code),
                "expires": grant.expires,
            },
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        grant = device.pending_grant(request.session.get(SESSION_KEY))
        action = request.POST.get("action")
        if grant is None or action not in ("approve", "deny"):
            return expired(request)
        approve = action == "approve"
        decided = device.decide(grant, request.user, approve=approve)
        request.session.pop(SESSION_KEY, None)
        if not decided:
            return expired(request)
        return pages.render_page(
            request, "cells_oidc/device_done.html", {"application": grant.application, "approved": approve}
        )


def expired(request: HttpRequest) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    return pages.render_page(
        request,
        "cells_oidc/device.html",
        {
            "user_code": "",
            "error": _("This request has expired or was already answered. Start again on your device."),
            "code_length": device.USER_CODE_LENGTH,
            "example_code": EXAMPLE_CODE,
        },
        status=400,
    )
