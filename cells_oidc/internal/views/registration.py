"""The client registration endpoint (RFC 7591 §3) and client configuration endpoint (RFC 7592 §2).

Thin HTTP: JSON in, JSON out, never cached; the rules are :mod:`cells_oidc.internal.registration`.
With ``CELLS_OIDC_REGISTRATION = "off"`` (the default) both answer 404.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required

from cells_oidc.conf import app_settings
from cells_oidc.internal import bearer, jsontext, registration, throttle
from cells_oidc.internal.errors import json_error

#: The largest registration request read (client metadata with a few keys is a few KiB).
MAX_BODY = 64 * 1024


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"  # RFC 7591 §3.2.1: secrets in the response
    response["Pragma"] = "no-cache"
    return response


def _json_body(request: HttpRequest) -> Any:
    """The JSON object of the request, or a :class:`~cells_oidc.internal.registration.RegistrationError`."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise registration.RegistrationError(
            "invalid_client_metadata", "Send the client metadata as application/json."
        )
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY:
        raise registration.RegistrationError("invalid_client_metadata", "The request body is too large.")
    try:
        return jsontext.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise registration.RegistrationError(
            "invalid_client_metadata", "The request body is not JSON."
        ) from None


def _refusal(exc: registration.RegistrationError) -> HttpResponse:
    if exc.error == "invalid_token":
        return bearer.refusal(401, "invalid_token", exc.description)
    return json_error(exc.error, exc.description)  # RFC 7591 §3.2.2: 400


def _bearer(request: HttpRequest) -> str | None:
    try:
        return bearer.bearer_token(request, query_allowed=False)
    except bearer.BearerRequestError:
        return None


class _RegistrationEndpoint(View):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if app_settings.REGISTRATION == "off":
            raise Http404
        try:
            if request.method in ("POST", "PUT"):
                # Every write counts against the client IP (docs/registration.md).
                throttle.consume(throttle.rule("register_ip"), throttle.client_ip(request))
            response = super().dispatch(request, *args, **kwargs)
        except throttle.Throttled as exc:
            from cells_oidc.middleware import throttled_response

            response = throttled_response(request, exc)
        except throttle.ThrottleUnavailable:
            from cells_oidc.middleware import unavailable_response

            response = unavailable_response(request)
        except registration.RegistrationError as exc:
            response = _refusal(exc)
        if response.status_code == 405:
            response = json_error("invalid_request", "Method not allowed.", status=405)
            response["Allow"] = ", ".join(m.upper() for m in self.http_method_names if m != "options")
        return _no_store(response)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RegisterView(_RegistrationEndpoint):
    """``POST {mount}oauth2/register``: RFC 7591 §3.1, answered 201 with the client's credentials."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        initial_token = None
        if app_settings.REGISTRATION == "initial_access_token":
            # RFC 7591 §3: the initial access token as an RFC 6750 bearer token.
            presented = _bearer(request)
            if presented is None:
                return bearer.refusal(401, None, "An initial access token is required.")
            initial_token = registration.initial_token_for(presented)
            if initial_token is None:
                return bearer.refusal(401, "invalid_token", "The initial access token is not valid.")
        registered = registration.register(_json_body(request), initial_token=initial_token)
        response = JsonResponse(registered.body, status=201)
        response["Location"] = registered.body["registration_client_uri"]
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class ClientConfigurationView(_RegistrationEndpoint):
    """``GET/PUT/DELETE {mount}oauth2/register/{client_id}`` with the registration access token
    (RFC 7592 §2). A wrong token and an unknown client get the same 401 (§2.1)."""

    http_method_names = ["get", "put", "delete"]

    def _registration(self, request: HttpRequest, client_id: str) -> Any:
        found = registration.registration_for(client_id, _bearer(request))
        if found is None:
            raise registration.RegistrationError(
                "invalid_token", "The registration access token is not valid."
            )
        return found

    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return JsonResponse(registration.read(self._registration(request, client_id)))

    def put(self, request: HttpRequest, client_id: str) -> HttpResponse:
        found = self._registration(request, client_id)
        return JsonResponse(registration.update(found, _json_body(request)))

    def delete(self, request: HttpRequest, client_id: str) -> HttpResponse:
        registration.delete(self._registration(request, client_id))
        return HttpResponse(status=204)
