"""The authorization endpoint (RFC 6749 §3.1, OpenID Connect Core §3.1.2)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_application_model
from oauth2_provider.scopes import get_scopes_backend
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors
from oauthlib.openid.connect.core import exceptions as oidc_errors

from .. import redirects, sessions, tokens
from ..adapter import get_adapter
from ..conf import app_settings
from ..endpoints import issuer
from ..models import policy_for
from ..validators import CODE_CHALLENGE_RE

#: Hidden field that tells a consent/confirmation POST from a POSTed authorization request.
STEP_FIELD = "cells_oidc_step"
MAX_PARAMETER_LENGTH = 2048


def with_iss(uri: str) -> str:
    """Append the RFC 9207 ``iss`` parameter (the authorization code flow answers in the query)."""
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode({'iss': issuer()})}"


def error_page(request: HttpRequest, *, error: str, description: str = "", status: int = 400) -> HttpResponse:
    """The browser-facing error page (never a redirect to an unverified URI)."""
    response = render(
        request,
        "cells_oidc/error.html",
        {"error": error, "description": description, "site_name": app_settings.SITE_NAME},
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


@method_decorator(csrf_exempt, name="dispatch")
class AuthorizationView(dot_views.AuthorizationView):
    template_name = "cells_oidc/authorize.html"
    http_method_names = ["get", "post"]

    def get_login_url(self) -> str:
        return resolve_url(app_settings.LOGIN_URL or reverse("cells_oidc:login"))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and STEP_FIELD not in request.POST:
            # OpenID Connect Core §3.1.2.1: the authorization request may be a form POST; it
            # is the same request as the GET, so continue there.
            return HttpResponseRedirect(f"{request.path}?{request.POST.urlencode()}", status=303)
        if request.method == "POST":
            # The view is csrf_exempt only for the POSTed authorization request above;
            # the confirmation and consent forms are checked here.
            refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})
            if refused is not None:
                return refused
        problem = self._malformed(request)
        if problem:
            return error_page(request, error="invalid_request", description=problem)
        return super().dispatch(request, *args, **kwargs)

    @staticmethod
    def _malformed(request: HttpRequest) -> str | None:
        for key, values in request.GET.lists():
            if len(values) > 1:
                return f"The parameter {key!r} is repeated."  # RFC 6749 §3.1
            if len(values[0]) > MAX_PARAMETER_LENGTH or "\x00" in values[0]:
                return f"The parameter {key!r} is malformed."
        return None

    # ---- validation ------------------------------------------------------------------------
    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        scopes, credentials = super().validate_authorization_request(request)
        params = request.GET

        def fail(error_class: type[oauth2_errors.OAuth2Error], description: str) -> OAuthToolkitError:
            return OAuthToolkitError(
                error=error_class(
                    description=description,
                    state=credentials.get("state"),
                    redirect_uri=credentials["redirect_uri"],
                ),
                redirect_uri=credentials["redirect_uri"],
            )

        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is not None or method is not None:
            # RFC 7636 §4.2-4.3, RFC 9700 §2.1.1: S256 only, a 43-character challenge.
            if method != "S256":
                raise fail(oauth2_errors.InvalidRequestError, "code_challenge_method must be S256.")
            if challenge is None or not CODE_CHALLENGE_RE.fullmatch(challenge):
                raise fail(
                    oauth2_errors.InvalidRequestError, "code_challenge must be 43 base64url characters."
                )
        if "request" in params:
            raise fail(oidc_errors.RequestNotSupported, "Request objects are not supported.")
        if "request_uri" in params:
            raise fail(oidc_errors.RequestURINotSupported, "request_uri is not supported.")
        if params.get("response_mode", "query") != "query":
            raise fail(oauth2_errors.InvalidRequestError, "Only response_mode=query is supported.")
        max_age = params.get("max_age")
        if max_age is not None and not (max_age.isdigit() and len(max_age) <= 10):
            raise fail(oauth2_errors.InvalidRequestError, "max_age must be a non-negative integer.")
        prompt = set(params.get("prompt", "").split())
        if prompt - {"none", "login", "consent", "select_account"}:
            raise fail(oauth2_errors.InvalidRequestError, "Unsupported prompt value.")
        if "none" in prompt and len(prompt) > 1:
            raise fail(oauth2_errors.InvalidRequestError, "prompt=none cannot be combined.")
        if "openid" in scopes and not params.get("redirect_uri"):
            # OpenID Connect Core §3.1.2.1: redirect_uri is REQUIRED in authentication requests.
            raise fail(oauth2_errors.InvalidRequestError, "redirect_uri is required.")
        return scopes, credentials

    # ---- responses -------------------------------------------------------------------------
    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        # Only ever called with a redirect_uri that oauthlib matched against the registration.
        uri = with_iss(redirect_to)
        response = OAuth2ResponseRedirect(uri, [urlsplit(uri).scheme])
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    def error_response(self, error: OAuthToolkitError, application: Any, **kwargs: Any) -> HttpResponse:
        redirect, response = dot_views.mixins.OAuthLibMixin.error_response(self, error, **kwargs)
        if redirect:
            return self.redirect(response["url"], application)
        oauthlib_error = response["error"]
        return error_page(
            self.request,
            error=getattr(oauthlib_error, "error", "invalid_request"),
            description=getattr(oauthlib_error, "description", "") or "",
            status=getattr(oauthlib_error, "status_code", 400),
        )

    def redirect_error(
        self, credentials: dict[str, Any], error_class: type[oauth2_errors.OAuth2Error], description: str = ""
    ) -> HttpResponse:
        error = error_class(
            description=description or None,
            state=credentials.get("state"),
            redirect_uri=credentials["redirect_uri"],
        )
        return self.error_response(
            OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]), None
        )

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> Any:
        credentials["cells_sid"] = sessions.session_id(request)
        credentials["cells_auth_time"] = sessions.auth_time(request)
        return super().create_authorization_response(request, scopes, credentials, allow)

    # ---- the flow --------------------------------------------------------------------------
    def handle_no_permission(self) -> HttpResponse:
        # Validate before showing a login page: a bad request must never lead the user on.
        try:
            self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        return super().handle_no_permission()

    def login_again(self, request: HttpRequest) -> HttpResponse:
        """Send the user to the login page, then back here without ``prompt=login``."""
        parts = urlsplit(request.get_full_path())
        query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "prompt":
                value = " ".join(p for p in value.split() if p != "login")
                if not value:
                    continue
            query.append((key, value))
        next_url = parts._replace(query=urlencode(query)).geturl()
        return redirect_to_login(next_url, self.get_login_url(), self.get_redirect_field_name())

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = credentials["request"].client
        user = request.user
        prompt = set(request.GET.get("prompt", "").split())
        fresh = sessions.consume_fresh_login(request)

        max_age = request.GET.get("max_age")
        too_old = max_age is not None and time.time() - sessions.auth_time(request) > int(max_age)
        hint_problem = self._id_token_hint_problem(request)
        if hint_problem == "invalid":
            return self.redirect_error(
                credentials, oauth2_errors.InvalidRequestError, "id_token_hint is not valid."
            )
        if not fresh and ("login" in prompt or too_old or hint_problem == "other_user"):
            if "none" in prompt:
                return self.redirect_error(credentials, oidc_errors.LoginRequired)
            return self.login_again(request)
        if not get_adapter().can_sign_in(user=user, client=application):
            return self.redirect_error(
                credentials, oauth2_errors.AccessDeniedError, "This account may not use this application."
            )

        policy = policy_for(application)
        if "consent" in prompt:
            page = "consent"
        elif application.skip_authorization:
            confirm = (
                application.client_type == application.CLIENT_PUBLIC
                and policy.confirm_existing_session
                and not fresh
            )
            page = "confirm" if confirm else None
        else:
            page = "consent"
        if page and "none" in prompt:
            error = oidc_errors.ConsentRequired if page == "consent" else oidc_errors.InteractionRequired
            return self.redirect_error(credentials, error)
        if page is None:
            try:
                uri, _headers, _body, _status = self.create_authorization_response(
                    request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
                )
            except OAuthToolkitError as error:
                return self.error_response(error, application)
            return self.redirect(uri, application)

        all_scopes = get_scopes_backend().get_all_scopes()
        self.oauth2_data = {
            "scopes": scopes,
            "client_id": credentials["client_id"],
            "redirect_uri": credentials["redirect_uri"],
            "response_type": credentials["response_type"],
            "state": credentials.get("state"),
            "nonce": credentials.get("nonce"),
            "code_challenge": credentials.get("code_challenge"),
            "code_challenge_method": credentials.get("code_challenge_method"),
        }
        form = self.get_form(self.get_form_class())
        context = {
            "form": form,
            "page": page,
            "application": application,
            "scopes": scopes,
            "scope_descriptions": [all_scopes.get(scope, scope) for scope in scopes],
            "step_field": STEP_FIELD,
            "site_name": app_settings.SITE_NAME,
            "login_url": self.get_login_url(),
        }
        response = self.render_to_response(self.get_context_data(**context))
        response["Cache-Control"] = "no-store"
        return response

    def _id_token_hint_problem(self, request: HttpRequest) -> str | None:
        """OpenID Connect Core §3.1.2.1 ``id_token_hint``: ``None``, ``"invalid"`` or ``"other_user"``."""
        hint = request.GET.get("id_token_hint")
        if not hint:
            return None
        try:
            # An expired ID token is still a valid hint (OpenID Connect Core §3.1.2.1).
            claims = tokens.verify(hint, typ=tokens.ID_TOKEN_TYP, check_time=False)
        except tokens.InvalidToken:
            return "invalid"
        if claims.get("sub") != get_adapter().subject(request.user):
            return "other_user"
        return None

    def form_valid(self, form: Any) -> HttpResponse:
        # The hidden fields come back from the browser: check them again before anything else.
        data = form.cleaned_data
        application = get_application_model().objects.filter(client_id=data["client_id"]).first()
        if application is None or not redirects.redirect_uri_allowed(
            data["redirect_uri"], application.redirect_uris, app_settings.SITE_URLS
        ):
            return error_page(
                self.request, error="invalid_request", description="Unknown client or redirect_uri."
            )
        if not data.get("allow"):
            # RFC 6749 §4.1.2.1: the user said no.
            credentials = {"state": data.get("state") or None, "redirect_uri": data["redirect_uri"]}
            return self.redirect_error(credentials, oauth2_errors.AccessDeniedError)
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        return error_page(self.request, error="invalid_request", description="The form was incomplete.")
