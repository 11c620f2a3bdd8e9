"""The authorization endpoint (RFC 6749 §3.1, OpenID Connect Core §3.1.2).

One request, three possible screens:

- not signed in: the login page, then back here;
- signed in, but the client is a public native client and the session existed before this
  request: a one-click "Continue to <app> as <user>" confirmation (RFC 8252 §8.6);
- signed in, third-party client (``skip_authorization`` off) or ``prompt=consent``: a consent page.

The confirmation and consent forms carry the authorization request as one signed hidden value
(bound to the user and the browser session), never as separate hidden fields: what the user
confirmed is exactly what was validated, and the POST validates it again against the current
registration before a code is issued. A tampered value gets the error page.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_noop
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.scopes import get_scopes_backend
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors
from oauthlib.openid.connect.core import exceptions as oidc_errors

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import (
    client_auth,
    consent,
    errors,
    events,
    pages,
    par,
    pkce,
    redirects,
    sessions,
    tokens,
)
from cells_oidc.internal.context import authorization_credentials
from cells_oidc.internal.endpoints import issuer
from cells_oidc.internal.validators import valid_resource_indicator
from cells_oidc.internal.views.common import omit_empty_parameters, without_empty_values
from cells_oidc.models import policy_for

#: Hidden field that tells a consent/confirmation POST from a POSTed authorization request.
STEP_FIELD = "cells_oidc_step"
#: Hidden field holding the signed authorization request on the confirmation/consent form.
REQUEST_FIELD = "authorization"
#: Longest value of an authorization request parameter: these end up in the login page's
#: ``next``, the signed consent form and the client's redirect, so the limit is far below the
#: API endpoints' (``MAX_ENDPOINT_PARAMETER_LENGTH``, which must fit a JWT access token). An ID
#: token hint or a claims request may be longer (``LONG_PARAMETERS``).
MAX_AUTHORIZATION_PARAMETER_LENGTH = 2048
LONG_PARAMETERS = {"id_token_hint": 16384, "claims": 8192}
#: Parameters that may be repeated (RFC 8707 §2: one ``resource`` per target).
REPEATABLE_PARAMETERS = frozenset({"resource"})
#: How long a confirmation or consent page may be answered. Keycloak and Hydra keep a pending
#: login/consent request for a limited time too (Hydra: ``ttl.login_consent_request``, 30 min).
CONFIRM_MAX_AGE = 30 * 60
SIGNING_SALT = "cells_oidc.internal.views.authorize"

# C0 controls and DEL; TAB, LF and CR are tolerated (a pretty-printed ``claims`` JSON).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# OpenID Connect Core §3.1.2.1: max_age is a number of seconds (ASCII digits only; 9 digits
# are 31 years and keep int() far from anything odd).
_MAX_AGE_RE = re.compile(r"[0-9]{1,9}")
#: OpenID Connect Core §3.1.2.1 prompt values (``create``, Prompt Create 1.0, is not offered);
#: discovery's ``prompt_values_supported``. In the order of the spec.
PROMPT_VALUES = ("none", "login", "consent", "select_account")
SUPPORTED_PROMPTS = frozenset(PROMPT_VALUES)
#: OAuth 2.0 Multiple Response Type Encoding Practices §2.1: the code flow answers in the query;
#: fragment and form_post are not offered (discovery's ``response_modes_supported``).
RESPONSE_MODES = ("query",)
# DOT stores the nonce in a 255-character column.
MAX_NONCE_LENGTH = 255


def with_iss(uri: str) -> str:
    """Append the RFC 9207 ``iss`` parameter (the authorization code flow answers in the query)."""
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode({'iss': issuer()})}"


def malformed(params: QueryDict) -> str | None:
    """Why ``params`` cannot be an authorization request at all, or ``None``.

    RFC 6749 §3.1: parameters MUST NOT be included more than once. Over-long values and
    control characters are refused before any of them reaches oauthlib, a template or a
    database column.
    """
    for key, values in params.lists():
        if len(values) > 1 and key not in REPEATABLE_PARAMETERS:
            return f"The parameter {key[:40]!r} is repeated."
        limit = LONG_PARAMETERS.get(key, MAX_AUTHORIZATION_PARAMETER_LENGTH)
        if len(key) > 64 or _CONTROL_RE.search(key):
            return "A parameter name is malformed."
        for value in values:
            if len(value) > limit or _CONTROL_RE.search(value):
                return f"The parameter {key!r} is malformed."
    return None


def _resource_problem(resources: list[str], credentials: dict[str, Any]) -> str | None:
    """Why the ``resource`` values of an authorization request are refused, or ``None``.

    RFC 8707 §2: each is an absolute URI without a fragment (never a ValueError, a 500, for a
    malformed host such as ``http://[::1``) and one the client's policy lists, compared exactly.
    """
    if not resources:
        return None
    if not all(valid_resource_indicator(resource) for resource in resources):
        return "The resource is not a valid resource indicator."
    client = getattr(credentials.get("request"), "client", None)
    if client is None:
        client = client_auth.load_client(credentials.get("client_id"))
    allowed = policy_for(client).allowed_resource_set() if client is not None else frozenset()
    if any(resource not in allowed for resource in resources):
        return "The client may not request tokens for this resource."
    return None


def _same_endpoint(uri: str, registered: str) -> bool:
    """Whether ``uri`` goes to the scheme, authority and path of ``registered`` (query aside)."""
    try:
        a, b = urlsplit(uri), urlsplit(registered)
    except ValueError:
        return False
    return (a.scheme, a.netloc, a.path, a.fragment) == (b.scheme, b.netloc, b.path, "")


class ConfirmForm(forms.Form):
    """The confirmation/consent form: the signed request and the user's answer."""

    authorization = forms.CharField(widget=forms.HiddenInput, max_length=32768)
    allow = forms.BooleanField(required=False)


@method_decorator(csrf_exempt, name="dispatch")
class AuthorizationView(dot_views.AuthorizationView):
    template_name = "cells_oidc/authorize.html"
    form_class = ConfirmForm
    http_method_names = ["get", "post"]

    def get_login_url(self) -> str:
        return resolve_url(app_settings.LOGIN_URL or reverse("cells_oidc:login"))

    @events.binds_request
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        #: The redirect URI validated for this request; nothing else is ever redirected to.
        self.validated_redirect_uri: str | None = None
        self.signed_request = ""
        #: RFC 9126 §4: whether the request came from the PAR endpoint (its request_uri was spent).
        self.pushed = False
        if request.method is None or request.method.lower() not in self.http_method_names:
            return self.http_method_not_allowed(request, *args, **kwargs)
        if request.method == "POST" and STEP_FIELD not in request.POST:
            # OpenID Connect Core §3.1.2.1: the authorization request may be a form POST; it
            # is the same request as the GET, so continue there (RFC 9110 §15.4.4).
            problem = malformed(request.POST)
            if problem:
                return errors.page_response(request, errors.InvalidRequest(problem))
            omit_empty_parameters(request)  # RFC 6749 §3.1
            return HttpResponseRedirect(f"{request.path}?{request.POST.urlencode()}", status=303)
        if request.method == "POST":
            # The view is csrf_exempt only for the POSTed authorization request above;
            # the confirmation and consent forms are checked here.
            refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})
            if refused is not None:
                return refused
        problem = malformed(request.GET)
        if problem:
            return errors.page_response(request, errors.InvalidRequest(problem))
        # RFC 6749 §3.1: an empty parameter is an omitted one (``scope=`` asks for the default
        # scopes, ``max_age=`` for none), for every step below and for oauthlib alike.
        omit_empty_parameters(request)
        # RFC 9126 §4: a PAR reference (another request_uri is an OpenID Connect request object
        # by reference, which is not supported: request_uri_not_supported below).
        if (
            request.method == "GET"
            and request.GET.get("request_uri", "").startswith(par.REQUEST_URI_PREFIX)
            and app_settings.PAR_ENABLED
        ):
            refused = self.resolve_request_uri(request)
            if refused is not None:
                return refused
        return super().dispatch(request, *args, **kwargs)

    # ---- validation ------------------------------------------------------------------------
    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        return self.validate_params(request, request.GET)

    def validate_params(self, request: HttpRequest, params: QueryDict) -> tuple[list[str], dict[str, Any]]:
        """Validate the authorization request ``params`` (the query, or a signed form value).

        Raises DOT's ``FatalClientError`` (error page) or ``OAuthToolkitError`` (redirect
        to the validated redirect URI with ``error``, ``state`` and ``iss``).
        """
        requested = params.get("scope", "").split()
        if not requested:  # RFC 6749 §3.3: the default scopes apply
            requested = list(get_scopes_backend().get_default_scopes(application=None, request=None))
        if "openid" in requested and not params.get("redirect_uri"):
            # OpenID Connect Core §3.1.2.1: redirect_uri is REQUIRED in authentication requests.
            raise self._fatal("redirect_uri is required.")
        core = self.get_oauthlib_core()
        try:
            scopes, credentials = core.server.validate_authorization_request(
                self._oauthlib_uri(request, params),
                http_method="GET",
                body=None,
                headers=core.extract_headers(request),
            )
        except oauth2_errors.FatalClientError as error:
            raise FatalClientError(error=error) from error
        except oauth2_errors.OAuth2Error as error:
            # oauthlib raises a non-fatal error only after it matched the redirect URI, but not
            # every error carries it (e.g. a malformed claims parameter): take it from the
            # request then. Either way it is checked against the registration again.
            if not error.redirect_uri:
                error.client_id = params.get("client_id")
                error.redirect_uri = params.get("redirect_uri") or self._default_redirect_uri(error.client_id)
                if error.state is None:
                    error.state = params.get("state")
            self.validated_redirect_uri = self._registered(error.client_id, error.redirect_uri)
            raise OAuthToolkitError(error=error) from error
        except ValueError as error:  # oauthlib's own parsing of the query
            raise self._fatal("The request is malformed.") from error
        if "openid" in scopes and not params.get("redirect_uri"):
            raise self._fatal("redirect_uri is required.")  # openid was a default scope
        redirect_uri = credentials["redirect_uri"]
        self.validated_redirect_uri = self._registered(credentials["client_id"], redirect_uri)

        def fail(error_class: type[oauth2_errors.OAuth2Error], description: str) -> OAuthToolkitError:
            return OAuthToolkitError(
                error=error_class(description=description, state=credentials.get("state")),
                redirect_uri=redirect_uri,
            )

        if not self.pushed and self._par_required(credentials["request"].client):
            # RFC 9126 §5: this client's requests come through the PAR endpoint only.
            raise fail(oauth2_errors.InvalidRequestError, "Push the authorization request first (RFC 9126).")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is not None or method is not None:
            # RFC 7636 §4.2-4.3, RFC 9700 §2.1.1: S256 only, a 43-character challenge.
            if method not in pkce.CODE_CHALLENGE_METHODS:
                raise fail(oauth2_errors.InvalidRequestError, "code_challenge_method must be S256.")
            if not pkce.valid_challenge(challenge, method):
                raise fail(
                    oauth2_errors.InvalidRequestError, "code_challenge must be 43 base64url characters."
                )
        if "request" in params:
            raise fail(oidc_errors.RequestNotSupported, "Request objects are not supported.")
        if "request_uri" in params:
            raise fail(oidc_errors.RequestURINotSupported, "request_uri is not supported.")
        if params.get("response_mode", RESPONSE_MODES[0]) not in RESPONSE_MODES:
            # OAuth 2.0 Multiple Response Type Encoding Practices §2.1: the code flow answers
            # in the query; fragment and form_post are not offered (discovery says so).
            raise fail(oauth2_errors.InvalidRequestError, "Only response_mode=query is supported.")
        max_age = params.get("max_age")
        if max_age is not None and not _MAX_AGE_RE.fullmatch(max_age):
            raise fail(oauth2_errors.InvalidRequestError, "max_age must be a non-negative integer.")
        prompt = params.get("prompt", "").split()
        if set(prompt) - SUPPORTED_PROMPTS:
            raise fail(oauth2_errors.InvalidRequestError, "Unsupported prompt value.")
        if "none" in prompt and len(prompt) > 1:
            raise fail(oauth2_errors.InvalidRequestError, "prompt=none cannot be combined.")
        if len(params.get("nonce", "")) > MAX_NONCE_LENGTH:
            raise fail(oauth2_errors.InvalidRequestError, "nonce is too long.")
        claims = credentials.get("claims")
        if claims is not None and not isinstance(claims, dict):
            # OpenID Connect Core §5.5: the claims request is a JSON object.
            raise fail(oauth2_errors.InvalidRequestError, "claims must be a JSON object.")
        resources = params.getlist("resource")
        problem = _resource_problem(resources, credentials)
        if problem:
            # RFC 8707 §2: invalid_target, redirected with state and iss like every error here.
            error = oauth2_errors.CustomOAuth2Error(
                error="invalid_target", description=problem, state=credentials.get("state")
            )
            raise OAuthToolkitError(error=error, redirect_uri=redirect_uri)
        credentials["resource"] = list(dict.fromkeys(resources))
        return scopes, credentials

    @staticmethod
    def _par_required(client: Any) -> bool:
        return app_settings.REQUIRE_PAR or (
            app_settings.PAR_ENABLED and policy_for(client).require_pushed_authorization_requests
        )

    def resolve_request_uri(self, request: HttpRequest) -> HttpResponse | None:
        """RFC 9126 §4: replace the query by the pushed request ``request_uri`` names (spent now);
        every other parameter but ``client_id`` is ignored. ``None`` when it may go on, else the
        ``invalid_request_uri`` answer: redirected to the client's one registered redirect URI,
        the error page when the client is unknown or has several."""
        client_id = request.GET.get("client_id")
        try:
            params = par.consume(request.GET.get("request_uri"), client_id)
        except par.RequestUriError as exc:
            error = oauth2_errors.CustomOAuth2Error(error="invalid_request_uri", description=str(exc))
            uri = self._default_redirect_uri(client_id) if isinstance(client_id, str) else None
            self.validated_redirect_uri = self._registered(client_id, uri)
            if uri is None or self.validated_redirect_uri is None:
                return errors.page_for(request, error)
            query = urlencode({"error": error.error, "error_description": error.description})
            return self.redirect(f"{uri}{'&' if '?' in uri else '?'}{query}", None)
        request.GET = params
        self.pushed = True
        return None

    @staticmethod
    def _default_redirect_uri(client_id: Any) -> str | None:
        application = client_auth.load_client(client_id)
        if application is None:
            return None
        return redirects.default_redirect_uri(application.redirect_uris, app_settings.SITE_URLS)

    @staticmethod
    def _registered(client_id: Any, redirect_uri: Any) -> str | None:
        """``redirect_uri`` if it is one of ``client_id``'s registered redirect URIs.

        Checked here again, independently of oauthlib's order of checks, because every
        redirect of this view is compared with the result.
        """
        if not isinstance(client_id, str) or not isinstance(redirect_uri, str):
            return None
        application = client_auth.load_client(client_id)
        if application is None:
            return None
        registered = application.redirect_uris
        site_urls = app_settings.SITE_URLS
        if redirects.redirect_uri_allowed(redirect_uri, registered, site_urls) or (
            redirect_uri == redirects.default_redirect_uri(registered, site_urls)
        ):
            return redirect_uri
        return None

    @staticmethod
    def _fatal(description: str) -> FatalClientError:
        return FatalClientError(error=oauth2_errors.InvalidRequestFatalError(description=description))

    @staticmethod
    def _oauthlib_uri(request: HttpRequest, params: QueryDict) -> str:
        # QueryDict.urlencode() percent-encodes everything oauthlib's strict parser refuses.
        return f"{request.path}?{params.urlencode()}"

    # ---- responses -------------------------------------------------------------------------
    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        # Last line of defence: only ever to the redirect URI validated for this request.
        if self.validated_redirect_uri is None or not _same_endpoint(
            redirect_to, self.validated_redirect_uri
        ):
            return errors.page_response(
                self.request, errors.InvalidRequest(gettext_noop("Unknown redirect_uri."))
            )
        uri = with_iss(redirect_to)
        response = OAuth2ResponseRedirect(uri, [urlsplit(uri).scheme])
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    def error_response(self, error: OAuthToolkitError, application: Any, **kwargs: Any) -> HttpResponse:
        oauthlib_error = error.oauthlib_error
        if not isinstance(error, FatalClientError) and oauthlib_error.redirect_uri:
            redirect, response = dot_views.mixins.OAuthLibMixin.error_response(self, error, **kwargs)
            if redirect:
                return self.redirect(response["url"], application)
        return errors.page_for(self.request, oauthlib_error)

    def redirect_error(
        self, credentials: dict[str, Any], error_class: type[oauth2_errors.OAuth2Error], description: str = ""
    ) -> HttpResponse:
        # OAuth2Error takes no redirect_uri: OAuthToolkitError sets it.
        error = error_class(description=description or None, state=credentials.get("state"))
        return self.error_response(
            OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]), None
        )

    def issue_code(
        self, request: HttpRequest, params: QueryDict, scopes: list[str], credentials: dict[str, Any]
    ) -> HttpResponse:
        """Create the grant and redirect with the code (oauthlib validates the request again).

        The oauthlib request is built from the validated ``params`` only (not from this HTTP
        request's URL or body), and every parameter the grant stores is set explicitly.
        """
        credentials = {
            **credentials,
            "user": request.user,
            **authorization_credentials(
                sid=sessions.session_id(request),
                auth_time=sessions.auth_time(request),
                # RFC 6749 §4.1.3: whether the code exchange must repeat redirect_uri ("" = not named).
                named_redirect_uri=params.get("redirect_uri") or "",
            ),
        }
        for key in ("code_challenge", "code_challenge_method", "nonce", "claims"):
            credentials.setdefault(key, None)
        core = self.get_oauthlib_core()
        try:
            headers, _body, _status = core.server.create_authorization_response(
                uri=self._oauthlib_uri(request, params),
                http_method="GET",
                body=None,
                headers=core.extract_headers(request),
                scopes=scopes,
                credentials=credentials,
            )
        except oauth2_errors.FatalClientError as error:
            return self.error_response(FatalClientError(error=error), None)
        except oauth2_errors.OAuth2Error as error:
            return self.error_response(
                OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]), None
            )
        location = headers.get("Location")
        if not location:
            return errors.page_response(request, errors.ServerError())
        return self.redirect(location, credentials["request"].client)

    # ---- the flow --------------------------------------------------------------------------
    def handle_no_permission(self) -> HttpResponse:
        # Not signed in. Validate before showing a login page: a bad request must never lead
        # the user on. (DOT's version is not used: it validates twice and its prompt=login
        # path assumes the query can be re-parsed identically.)
        try:
            _scopes, credentials = self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        if "none" in self.request.GET.get("prompt", "").split():
            # OpenID Connect Core §3.1.2.6.
            return self.redirect_error(credentials, oidc_errors.LoginRequired)
        return self.login_again(self.request)

    def login_again(self, request: HttpRequest) -> HttpResponse:
        """Send the user to the login page, then back here without ``prompt=login``."""
        params = request.GET.copy()
        prompt = [p for p in params.get("prompt", "").split() if p != "login"]
        if prompt:
            params["prompt"] = " ".join(prompt)
        else:
            params.pop("prompt", None)
        if self.pushed:
            # The pushed request stays out of the URL: pushed again for the way back (RFC 9126 §4).
            request_uri, _expires_in = par.push(params["client_id"], params)
            params = QueryDict(mutable=True)
            params.update({"client_id": request.GET["client_id"], "request_uri": request_uri})
        next_url = f"{request.path}?{params.urlencode()}"
        return redirect_to_login(next_url, self.get_login_url(), self.get_redirect_field_name())

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        params = request.GET
        try:
            scopes, credentials = self.validate_params(request, params)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = credentials["request"].client
        user = request.user
        prompt = set(params.get("prompt", "").split())
        fresh = sessions.consume_fresh_login(request)

        max_age = params.get("max_age")
        too_old = max_age is not None and time.time() - sessions.auth_time(request) > int(max_age)
        hint_problem = self._id_token_hint_problem(request, params)
        if hint_problem == "invalid":
            return self.redirect_error(
                credentials, oauth2_errors.InvalidRequestError, "id_token_hint is not valid."
            )
        if not fresh and ("login" in prompt or too_old or hint_problem == "other_user"):
            if "none" in prompt:
                return self.redirect_error(credentials, oidc_errors.LoginRequired)
            return self.login_again(request)
        if hint_problem == "other_user":
            # OpenID Connect Core §3.1.2.1: the user signed in just now is not the one the
            # hint names; answer with an error rather than send them round again.
            return self.redirect_error(
                credentials, oidc_errors.LoginRequired, "Signed in as another user than id_token_hint."
            )
        if not get_adapter().can_sign_in(user=user, client=application):
            return self.redirect_error(
                credentials, oauth2_errors.AccessDeniedError, "This account may not use this application."
            )

        policy = policy_for(application)
        page: str | None
        if "consent" in prompt:
            page = "consent"
        elif not application.skip_authorization and not consent.remembered(user, application, scopes):
            # A third-party client: the user decides which scopes it gets (OpenID Connect
            # Core §3.1.2.4); an earlier "Allow" for these scopes may stand for this one.
            page = "consent"
        elif fresh:
            # The user signed in for this very request: that was the confirmation.
            page = None
        elif "select_account" in prompt:
            # The confirmation page names the account and offers to sign in with another one
            # (Keycloak shows its account chooser only when it has one; this is the equivalent).
            page = "confirm"
        elif application.client_type == application.CLIENT_PUBLIC and policy.confirm_existing_session:
            # RFC 8252 §8.6: another local app may have claimed the loopback port or custom
            # scheme of a public native client; a session must not hand it a code silently.
            page = "confirm"
        else:
            page = None
        if page and "none" in prompt:
            error = oidc_errors.ConsentRequired if page == "consent" else oidc_errors.InteractionRequired
            return self.redirect_error(credentials, error)
        if page is None:
            return self.issue_code(request, params, scopes, credentials)
        return self.show_page(request, page, params, scopes, application)

    def show_page(
        self, request: HttpRequest, page: str, params: QueryDict, scopes: list[str], application: Any
    ) -> HttpResponse:
        payload = {
            "q": params.urlencode(),
            "p": page,
            "u": str(request.user.pk),
            "s": sessions.session_id(request),
            "r": self.pushed,
        }
        self.signed_request = signing.dumps(payload, salt=SIGNING_SALT, compress=True)
        all_scopes = get_scopes_backend().get_all_scopes()
        context = {
            "form": self.get_form(self.get_form_class()),
            "page": page,
            "application": application,
            "scopes": scopes,
            "scope_descriptions": [all_scopes.get(scope, scope) for scope in scopes],
            "step_field": STEP_FIELD,
            "site_name": app_settings.SITE_NAME,
            "login_url": self.get_login_url(),
        }
        response: HttpResponse = self.render_to_response(self.get_context_data(**context))
        # A one-click page must not be framed (clickjacking, RFC 6749 §10.13). The form's answer
        # is a redirect to the client, which CSP form-action must allow.
        return pages.apply_headers(response, form_action=[pages.csp_source(self.validated_redirect_uri)])

    def get_initial(self) -> dict[str, Any]:
        return {REQUEST_FIELD: self.signed_request}

    def _unsign(self, request: HttpRequest, value: str) -> tuple[QueryDict, str] | None:
        """The authorization request (and page) signed into the form, if intact and this user's."""
        try:
            payload = signing.loads(value, salt=SIGNING_SALT, max_age=CONFIRM_MAX_AGE)
        except signing.BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("q"), str):
            return None
        if payload.get("p") not in ("confirm", "consent"):
            return None
        if payload.get("u") != str(request.user.pk) or payload.get("s") != request.session.get(
            sessions.SID_KEY
        ):
            return None
        self.pushed = payload.get("r") is True  # RFC 9126: the request signed was a pushed one
        return without_empty_values(QueryDict(payload["q"])), payload["p"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Only the confirmation/consent form gets here (see dispatch), signed in and CSRF-checked.
        form = self.get_form(self.get_form_class())
        if not form.is_valid():
            return errors.page_response(
                request, errors.InvalidRequest(gettext_noop("The form was incomplete."))
            )
        signed = self._unsign(request, form.cleaned_data[REQUEST_FIELD])
        if signed is None:
            # English in the log; the error page shows it in the reader's language (error.html).
            expired = gettext_noop("This page has expired or was altered. Start again from the application.")
            return errors.page_response(request, errors.InvalidRequest(expired))
        params, page = signed
        try:
            scopes, credentials = self.validate_params(request, params)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = credentials["request"].client
        if not form.cleaned_data["allow"]:
            # RFC 6749 §4.1.2.1: the user said no.
            return self.redirect_error(credentials, oauth2_errors.AccessDeniedError, "The user declined.")
        if not get_adapter().can_sign_in(user=request.user, client=application):
            return self.redirect_error(
                credentials, oauth2_errors.AccessDeniedError, "This account may not use this application."
            )
        if page == "consent":
            consent.remember(request.user, application, scopes)
        return self.issue_code(request, params, scopes, credentials)

    def _id_token_hint_problem(self, request: HttpRequest, params: QueryDict) -> str | None:
        """OpenID Connect Core §3.1.2.1 ``id_token_hint``: ``None``, ``"invalid"`` or ``"other_user"``."""
        hint = params.get("id_token_hint")
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
