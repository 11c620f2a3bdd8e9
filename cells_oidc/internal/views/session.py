"""Login, RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and the signed-out page."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.contrib.auth import get_user_model, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_noop
from django.views import View
from oauth2_provider import views as dot_views
from oauth2_provider.compat import login_not_required
from oauth2_provider.exceptions import (
    ClientIdMissmatch,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    InvalidOIDCRedirectURIError,
)
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_id_token_model

from cells_oidc.conf import app_settings
from cells_oidc.internal import client_auth, errors, events, pages, redirects, sessions, tokens
from cells_oidc.internal.views.common import omit_empty_parameters


def application_for_next(next_url: str | None) -> Any:
    """The client an authorization request in ``next`` is for (to name it on the login page)."""
    if not next_url:
        return None
    try:
        auth_path = reverse("cells_oidc:authorize")
    except NoReverseMatch:
        return None
    parts = urlsplit(next_url)
    if parts.path != auth_path:
        return None
    client_id = dict(parse_qsl(parts.query)).get("client_id")
    return client_auth.load_client(client_id)


class LoginForm(AuthenticationForm):
    """Django's login form that also takes the account's email address as the login."""

    def clean(self) -> dict[str, Any]:
        login = self.cleaned_data.get("username")
        users = get_user_model()._default_manager
        field = get_user_model().USERNAME_FIELD
        if isinstance(login, str) and "@" in login and not users.filter(**{field: login}).exists():
            # Only an unambiguous address is a login; the error for a wrong one is the same as
            # for a wrong password, so the form never tells whether an account exists.
            matches = list(users.filter(email__iexact=login).values_list(field, flat=True)[:2])
            if len(matches) == 1:
                self.cleaned_data["username"] = matches[0]
        return super().clean()


class SeeOther(HttpResponseRedirect):
    status_code = 303


@method_decorator(login_not_required, name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's login (CSRF-protected) naming the application that asked."""

    template_name = "cells_oidc/login.html"
    form_class = LoginForm
    redirect_authenticated_user = False

    def get_default_redirect_url(self) -> str:
        """Where a sign-in without ``next`` goes: the site's ``LOGIN_REDIRECT_URL`` when it set one,
        else the account page (Django's default, ``/accounts/profile/``, is a 404 on most sites)."""
        from django.conf import global_settings, settings

        if self.next_page or settings.LOGIN_REDIRECT_URL != global_settings.LOGIN_REDIRECT_URL:
            return super().get_default_redirect_url()
        try:
            return reverse("cells_oidc:account")
        except NoReverseMatch:
            return super().get_default_redirect_url()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["application"] = application_for_next(self.get_redirect_url())
        context["site_name"] = app_settings.SITE_NAME
        return context

    @events.binds_request
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().dispatch(request, *args, **kwargs)
        return pages.apply_headers(response, form_action=self.redirect_sources())

    def redirect_sources(self) -> list[str]:
        """The client's redirect URI when ``next`` is an authorization request: Chromium applies
        the CSP form-action to every redirect after the login POST, the last one included."""
        next_url = self.get_redirect_url()
        application = application_for_next(next_url)
        if application is None:
            return []
        registered, sites = application.redirect_uris, app_settings.SITE_URLS
        uri = dict(parse_qsl(urlsplit(next_url or "").query)).get("redirect_uri")
        uri = uri or redirects.default_redirect_uri(registered, sites)
        if not uri or not redirects.redirect_uri_allowed(uri, registered, sites):
            return []
        source = pages.csp_source(uri)
        return [source] if source else []

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # A POST answered with 303 so that the browser follows with GET (RFC 9110 §15.4.4).
        see_other = SeeOther(response["Location"])
        for cookie in response.cookies.values():
            see_other.cookies[cookie.key] = cookie
        return see_other

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


@method_decorator(login_not_required, name="dispatch")
class LogoutView(dot_views.RPInitiatedLogoutView):
    """RP-initiated logout: asks for confirmation unless a valid ``id_token_hint`` of the
    current browser session (its ``sid``) came with the request; redirects only to a registered
    ``post_logout_redirect_uri`` (exact match, RP-Initiated Logout §3). Whatever the hint, only
    the current browser session and the tokens issued from it end."""

    template_name = "cells_oidc/logout.html"
    http_method_names = ["get", "post"]

    @events.binds_request
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        #: CSP form-action sources: the validated post_logout_redirect_uri (see LoginView).
        self.form_action: list[str] = []
        #: The ``sid`` claim of the validated ``id_token_hint`` ("" when it has none).
        self.hint_sid = ""
        omit_empty_parameters(request)  # RFC 6749 §3.1
        response = super().dispatch(request, *args, **kwargs)
        return pages.apply_headers(response, form_action=self.form_action)

    def validate_logout_request_user(self, id_token_hint: str | None, client_id: str | None) -> Any:
        if not id_token_hint:
            return None
        try:
            # RP-Initiated Logout §2: an expired ID token is still a valid hint.
            claims = tokens.verify(id_token_hint, typ=tokens.ID_TOKEN_TYP, check_time=False)
        except tokens.InvalidToken as exc:
            raise InvalidIDTokenError() from exc
        id_token = (
            get_id_token_model()
            .objects.select_related("application", "user")
            .filter(jti=claims.get("jti"))
            .first()
        )
        if id_token is None:
            raise InvalidIDTokenError()
        sid = claims.get("sid")
        self.hint_sid = sid if isinstance(sid, str) else ""
        if client_id and id_token.application and id_token.application.client_id != client_id:
            raise ClientIdMissmatch()
        return id_token

    def get_request_application(self, id_token: Any, client_id: str | None) -> Any:
        if client_id:
            application = client_auth.load_client(client_id)  # None for a NUL (PostgreSQL refuses it)
            if application is None:
                raise InvalidOIDCClientError()
            return application
        return id_token.application if id_token else None

    def validate_post_logout_redirect_uri(
        self, application: Any, post_logout_redirect_uri: str | None
    ) -> None:
        if not post_logout_redirect_uri:
            return
        if application is None:
            raise InvalidOIDCClientError()
        if not redirects.redirect_uri_allowed(
            post_logout_redirect_uri, application.post_logout_redirect_uris, app_settings.SITE_URLS
        ):
            raise InvalidOIDCRedirectURIError(
                gettext_noop("This client has not registered this post_logout_redirect_uri.")
            )
        source = pages.csp_source(post_logout_redirect_uri)
        if source:
            self.form_action.append(source)

    def must_prompt(self, token_user: Any) -> bool:
        if not self.request.user.is_authenticated:
            return False  # no session to end: nothing to ask
        # RP-Initiated Logout §2: the OP MUST ask when the hint is missing, not the user's, or
        # "does not belong to the current OP session": the same user's ID token from another
        # browser session (another sid) must not sign this one out unasked.
        current_sid = self.request.session.get(sessions.SID_KEY)
        same_session = (
            isinstance(current_sid, str)
            and bool(self.hint_sid)
            and hmac.compare_digest(self.hint_sid.encode(), current_sid.encode())
        )
        return token_user is None or token_user != self.request.user or not same_session

    def do_logout(
        self,
        application: Any = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        token_user: Any = None,
    ) -> HttpResponse:
        if self.request.user.is_authenticated:
            # The tokens issued from this browser session end with it; those of the hint's
            # session, when the user confirmed a hint of another one, do not.
            sid = self.request.session.get(sessions.SID_KEY)
            sessions.revoke_session_tokens(self.request.user, {sid} if isinstance(sid, str) else set())
        logout(self.request)
        if post_logout_redirect_uri:
            target = post_logout_redirect_uri
            if state:
                target = f"{target}{'&' if '?' in target else '?'}{urlencode({'state': state})}"
            response: HttpResponse = OAuth2ResponseRedirect(target, [urlsplit(target).scheme])
        else:
            response = HttpResponseRedirect(reverse("cells_oidc:logged-out"))
        response["Cache-Control"] = "no-store"
        return response

    def error_response(self, error: Any) -> HttpResponse:
        return errors.page_for(self.request, error)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["site_name"] = app_settings.SITE_NAME
        return context


@method_decorator(login_not_required, name="dispatch")
class LoggedOutView(View):
    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return pages.render_page(request, "cells_oidc/logged_out.html")
