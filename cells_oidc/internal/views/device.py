"""The device authorization grant (RFC 8628): a headless machine signs in through another device.

1. The device POSTs to the device authorization endpoint (``oauth2/device/auth``) and gets a
   ``device_code`` (kept secret on the device) and a short ``user_code`` it shows to the user,
   with the ``verification_uri`` (the short page ``device`` under the mount).
2. On a phone or laptop the user signs in there, types the user code (case and dashes do not
   matter), sees which application asks for what, and approves or denies.
3. The device polls the token endpoint with the ``device_code`` until it gets its tokens or an
   error (RFC 8628 §3.4, §3.5).

Built on DOT's ``DeviceGrant`` model and device authorization view; the pages are cells-oidc's.
Only clients whose policy has ``allow_device_flow`` may use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus

from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from oauth2_provider import views as dot_views
from oauth2_provider.compat import login_not_required
from oauth2_provider.models import get_application_model, get_device_grant_model
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc8628.endpoints.device_authorization import DeviceAuthorizationEndpoint
from oauthlib.oauth2.rfc8628.grant_types import DeviceCodeGrant

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import pages
from cells_oidc.internal.endpoints import absolute_url
from cells_oidc.internal.views.common import ApiEndpointMixin, json_error
from cells_oidc.models import TokenFamily, checksum, policy_for

#: RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alike digits), upper case.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8  # 20^8 ≈ 2^34.6, with the rate limit below (RFC 8628 §5.1)
SESSION_KEY = "cells_oidc.device_grant"


def normalize_user_code(value: str) -> str:
    """What the user typed, as stored: upper case, without dashes, spaces or other separators."""
    return "".join(c for c in value.upper() if c in USER_CODE_ALPHABET)[: USER_CODE_LENGTH + 1]


def display_user_code(code: str) -> str:
    """``WDJBMJHT`` → ``WDJB-MJHT`` (RFC 8628 §6.1: easier to read and to type)."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}" if len(code) == USER_CODE_LENGTH else code


def generate_user_code() -> str:
    """A new user code, in display form; not in use by another pending grant."""
    model = get_device_grant_model()
    while True:
        code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        if not model.objects.filter(user_code=code, status=model.AUTHORIZATION_PENDING).exists():
            return display_user_code(code)


def verification_uri() -> str:
    return absolute_url("device")


def verification_uri_complete(user_code: str) -> str:
    # RFC 8628 §3.3.1: the user code in the URI, so that a QR code or link pre-fills it.
    return f"{verification_uri()}?user_code={user_code}"


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
            verification_uri=verification_uri(),
            expires_in=app_settings.DEVICE_CODE_LIFETIME,
            interval=oauth2_settings.DEVICE_FLOW_INTERVAL,
            verification_uri_complete=verification_uri_complete,
            user_code_generator=generate_user_code,
        )
        return cls.get_oauthlib_backend_class()(server)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client_id = request.POST.get("client_id") or basic_client_id(request)
        application = (
            get_application_model().objects.filter(client_id=client_id).first() if client_id else None
        )
        if application is None:
            # RFC 6749 §5.2: an unknown client is invalid_client (oauthlib says invalid_request).
            return json_error("invalid_client", "Unknown client.", status=401)
        if not policy_for(application).allow_device_flow:
            # RFC 6749 §5.2: the client is not authorized to use this grant type.
            return json_error("unauthorized_client", "This client may not use the device flow.")
        from cells_oidc.internal.validators import valid_resource_indicator

        resources = request.POST.getlist("resource")
        allowed = policy_for(application).allowed_resource_set()
        if any(not valid_resource_indicator(value) or value not in allowed for value in resources):
            # RFC 8707 §2: the rule of the other endpoints. The approval does not carry resources:
            # the token request names them (and is checked the same way).
            return json_error("invalid_target", "The client may not request tokens for this resource.")
        headers, body, status = self.get_oauthlib_core().create_device_authorization_response(request)
        if status != 200:
            data = json.loads(body) if isinstance(body, str) else body
            response = JsonResponse(data, status=status)
            for name, value in (headers or {}).items():
                if name.lower() == "www-authenticate":
                    response[name] = value
            return response
        data = dict(body)
        model = get_device_grant_model()
        model.objects.create(
            client_id=application.client_id,
            device_code=data["device_code"],
            user_code=normalize_user_code(data["user_code"]),
            scope=data.get("scope", ""),
            interval=int(data.get("interval") or 5),
            expires=timezone.now() + timedelta(seconds=int(data["expires_in"])),
        )
        return JsonResponse(data)


def basic_client_id(request: HttpRequest) -> str | None:
    """The client id of an ``Authorization: Basic`` header (RFC 6749 §2.3.1), if any."""
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return unquote_plus(decoded.partition(":")[0]) or None


# ---- rate limit of the user code (RFC 8628 §5.1) -----------------------------------------------
def _failure_keys(request: HttpRequest) -> list[str]:
    keys = [f"cells_oidc:device-failures:user:{request.user.pk}"]
    session_key = request.session.session_key
    if session_key:
        digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
        keys.append(f"cells_oidc:device-failures:session:{digest}")
    return keys


def too_many_failures(request: HttpRequest) -> bool:
    limit = app_settings.DEVICE_MAX_FAILURES
    return any((cache.get(key) or 0) >= limit for key in _failure_keys(request))


def record_failure(request: HttpRequest) -> None:
    window = app_settings.DEVICE_FAILURE_WINDOW
    for key in _failure_keys(request):
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)


# ---- the token endpoint's side (RFC 8628 §3.4, §3.5) --------------------------------------------
def redeem_device_code(client_id: str, device_code: Any, request: Any) -> str | None:
    """The validator's ``validate_device_code``: the RFC 8628 §3.5 status of ``device_code``.

    Returns one of oauthlib's ``DeviceCodeGrant.DEVICE_CODE_*`` statuses, or ``None`` for a code
    that is unknown, of another client or already used (``invalid_grant``). An approved code is
    redeemed exactly once: its row is deleted before any token exists, so two concurrent polls
    never both get tokens. On success ``request.user``, ``request.scopes`` and a new
    :class:`~cells_oidc.models.TokenFamily` (shown and revocable on the account page) are set.
    """
    model = get_device_grant_model()
    if not isinstance(device_code, str) or not device_code or len(device_code) > 100:
        return None
    grant = model.objects.filter(device_code=device_code, client_id=client_id).select_related("user").first()
    if grant is None:
        return None
    if grant.status == model.DENIED:
        return DeviceCodeGrant.DEVICE_CODE_DENIED
    if grant.is_expired():
        return DeviceCodeGrant.DEVICE_CODE_EXPIRED
    if grant.status == model.AUTHORIZATION_PENDING:
        if polled_too_fast(grant):
            return DeviceCodeGrant.DEVICE_CODE_SLOW_DOWN
        return DeviceCodeGrant.DEVICE_CODE_PENDING
    if grant.status != model.AUTHORIZED:
        return None
    if model.objects.filter(pk=grant.pk, status=model.AUTHORIZED).delete()[0] != 1:
        return None  # redeemed by a concurrent poll
    user = grant.user
    if user is None or not get_adapter().can_sign_in(user=user, client=request.client):
        return DeviceCodeGrant.DEVICE_CODE_DENIED
    now = timezone.now()
    family = TokenFamily.objects.create(
        application=request.client, user=user, auth_time=now, redeemed=now, sid="", scope=grant.scope
    )
    request.user = user
    request.scopes = grant.scope.split()
    # RFC 8628 §3.4: the token request carries no scope; the tokens get what the user approved,
    # even nothing (oauthlib takes an empty request.scopes as unset and would read the request's
    # own scope parameter instead; None leaves it the defaults, as at the device endpoint).
    request.scope = grant.scope or None
    request.cells_family = family
    request.cells_auth_time = int(now.timestamp())
    return DeviceCodeGrant.DEVICE_CODE_AUTHORIZED


def polled_too_fast(grant: Any) -> bool:
    """RFC 8628 §3.5 ``slow_down``: a poll within ``interval`` seconds of the previous one.

    The interval then grows by 5 seconds "for this and all subsequent requests".
    """
    key = f"cells_oidc:device-poll:{checksum(grant.device_code)}"
    if cache.add(key, 1, timeout=grant.interval):
        return False
    model = get_device_grant_model()
    model.objects.filter(pk=grant.pk).update(interval=F("interval") + 5)
    cache.set(key, 1, timeout=grant.interval + 5)
    return True


# ---- the pages -----------------------------------------------------------------------------------
def pending_grant(pk: Any) -> Any:
    """The device grant ``pk`` if it still waits for a decision, of a client that may use it."""
    model = get_device_grant_model()
    if not isinstance(pk, int):
        return None
    grant = model.objects.filter(
        pk=pk, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now()
    ).first()
    if grant is None:
        return None
    application = get_application_model().objects.filter(client_id=grant.client_id).first()
    if application is None or not policy_for(application).allow_device_flow:
        return None
    grant.application = application
    return grant


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
                "code_length": USER_CODE_LENGTH,
                "example_code": "BDFH-KLMN",
            },
            status=status,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        prefill = normalize_user_code(request.GET.get("user_code", "")[:64])
        return self.render(display_user_code(prefill))

    def post(self, request: HttpRequest) -> HttpResponse:
        typed = request.POST.get("user_code", "")[:64]
        if too_many_failures(request):
            return self.render(
                typed, _("Too many wrong codes. Wait a few minutes, then try again."), status=429
            )
        code = normalize_user_code(typed)
        grant = None
        if len(code) == USER_CODE_LENGTH:
            model = get_device_grant_model()
            candidate = (
                model.objects.filter(
                    user_code=code, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now()
                )
                .order_by("-pk")
                .first()
            )
            grant = pending_grant(candidate.pk) if candidate is not None else None
        if grant is None:
            record_failure(request)
            return self.render(
                typed,
                _("That code is not valid or has expired. Check the code on your device and try again."),
                status=400,
            )
        request.session[SESSION_KEY] = grant.pk
        return HttpResponseRedirect(reverse("cells_oidc:device-confirm"), status=303)


class DeviceConfirmView(pages.SignedInPageMixin, View):
    """Which application asks for what, on the device showing this code: approve or deny."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        grant = pending_grant(request.session.get(SESSION_KEY))
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
                "user_code": display_user_code(grant.user_code),
                "expires": grant.expires,
            },
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        grant = pending_grant(request.session.get(SESSION_KEY))
        action = request.POST.get("action")
        if grant is None or action not in ("approve", "deny"):
            return expired(request)
        model = get_device_grant_model()
        status = model.AUTHORIZED if action == "approve" else model.DENIED
        with transaction.atomic():
            # One decision per code, even when two tabs answer at once.
            decided = model.objects.filter(
                pk=grant.pk, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now()
            ).update(status=status, user=request.user)
        request.session.pop(SESSION_KEY, None)
        if not decided:
            return expired(request)
        return pages.render_page(
            request,
            "cells_oidc/device_done.html",
            {"application": grant.application, "approved": status == model.AUTHORIZED},
        )


def expired(request: HttpRequest) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    return pages.render_page(
        request,
        "cells_oidc/device.html",
        {
            "user_code": "",
            "error": _("This request has expired or was already answered. Start again on your device."),
            "code_length": USER_CODE_LENGTH,
            "example_code": "BDFH-KLMN",
        },
        status=400,
    )
