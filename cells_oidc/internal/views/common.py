"""What every endpoint of the provider shares: JSON errors, CORS, cache and security headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.cache import patch_vary_headers
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.settings import oauth2_settings

from cells_oidc.conf import app_settings
from cells_oidc.internal import client_auth, events, redirects
from cells_oidc.internal.errors import json_error

#: Longest parameter (name or value) in the body of an API endpoint (token, revocation,
#: introspection, device authorization, userinfo): a JWT access token with room to spare; codes,
#: refresh tokens and client ids are far shorter. (The authorization endpoint, whose parameters
#: end up in pages and URLs, has its own, shorter limit: ``MAX_AUTHORIZATION_PARAMETER_LENGTH``.)
MAX_ENDPOINT_PARAMETER_LENGTH = 16384
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "")
#: Class attribute holding the oauthlib core of an API endpoint view.
OAUTHLIB_CORE_ATTRIBUTE = "_cells_oauthlib_core"
CLIENT_CHALLENGE = 'Basic realm="oauth2", charset="UTF-8"'  # RFC 7617


def without_empty_values(params: QueryDict) -> QueryDict:
    """``params`` less every empty value (the same object when it has none).

    RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted
    from the request." ``scope=`` is then no scope (the default scopes), ``code_verifier=`` no
    verifier, ``max_age=`` no maximum age. Only the empty string is dropped: a value of blanks
    is a value (and usually a malformed one).
    """
    if all(value != "" for _key, values in params.lists() for value in values):
        return params
    kept = QueryDict(mutable=True, encoding=params.encoding)
    for key, values in params.lists():
        present = [value for value in values if value != ""]
        if present:
            kept.setlist(key, present)
    kept._mutable = False
    return kept


def omit_empty_parameters(request: HttpRequest) -> None:
    """Drop empty-valued parameters from the query and form body of ``request`` (RFC 6749 §3.1).

    The one place that rule is applied: called by every endpoint's ``dispatch`` (the API
    endpoints through :class:`ApiEndpointMixin`, the authorization and logout views) after the
    request passed the malformed-request checks and before the view, DOT or oauthlib read a
    parameter. DOT's ``OAuthLibCore`` builds oauthlib's body from ``request.POST``, and the
    views read ``request.GET``/``request.POST``, so all of them see the same, filtered request.
    A parameter repeated with one empty value still counts as repeated (checked before).
    """
    request.GET = without_empty_values(request.GET)
    if request.method == "POST" and (request.content_type or "") in FORM_CONTENT_TYPES:
        request.POST = without_empty_values(request.POST)


def origin_registered(origin: str, client_id: str | None = None) -> bool:
    """Whether ``origin`` is an allowed CORS origin of the client that makes the request.

    A request naming a known client (``client_id`` or HTTP Basic) is answered for that client's
    origins only, as node-oidc-provider's ``clientBasedCORS`` does. A preflight carries no client
    id, and neither does a bearer request; for those, and for an unknown client (so that its
    ``invalid_client`` stays readable), the union of every client's origins decides.
    """
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    # load_client: no query for an id no column can hold (a NUL: PostgreSQL's DataError, a 500).
    client = client_auth.load_client(client_id) if client_id else None
    if client is not None:
        return redirects.origin_allowed(origin, client.allowed_origins or "", app_settings.SITE_URLS)
    texts = model.objects.exclude(allowed_origins="").values_list("allowed_origins", flat=True)
    return any(redirects.origin_allowed(origin, text, app_settings.SITE_URLS) for text in texts)


def requesting_client_id(request: HttpRequest) -> str | None:
    """The client id a token, revocation or introspection request names (Basic user or body)."""
    if client_auth.basic_part(request.headers.get("Authorization")) is not None:
        parsed = client_auth.request_basic_credentials(request)
        return parsed[0] if parsed else None
    if request.method != "POST" or (request.content_type or "") not in FORM_CONTENT_TYPES:
        return None
    try:
        return request.POST.get("client_id") or None
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent, UnicodeDecodeError, BadRequest):
        return None


def add_cors(
    request: HttpRequest, response: HttpResponse, *, public: bool = False, client_id: str | None = None
) -> HttpResponse:
    """Answer CORS for the origins registered by a client (or any origin for public documents).

    Error responses get the headers too, or the browser hides an ``invalid_grant`` behind a
    network error (Fetch standard §3.2.5).
    """
    origin = request.headers.get("Origin")
    if public:
        response["Access-Control-Allow-Origin"] = "*"
    elif origin and origin_registered(origin, client_id):
        response["Access-Control-Allow-Origin"] = origin
        patch_vary_headers(response, ["Origin"])
    else:
        return response
    # RFC 9449 §8: a browser client must read the server's DPoP nonce.
    response["Access-Control-Expose-Headers"] = "WWW-Authenticate, DPoP-Nonce"
    return response


def preflight(request: HttpRequest, methods: list[str], *, public: bool = False) -> HttpResponse:
    response = HttpResponse(status=204)
    if add_cors(request, response, public=public).has_header("Access-Control-Allow-Origin"):
        response["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
        # RFC 9449 §4.1: a browser client sends its proof in the DPoP header.
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, DPoP"
        response["Access-Control-Max-Age"] = str(app_settings.CORS_MAX_AGE)
    return response


def no_store(response: HttpResponse) -> HttpResponse:
    # RFC 6749 §5.1: responses carrying tokens (and their errors) must not be cached.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


class ApiEndpointMixin:
    """Turns a DOT view into a well-behaved API endpoint.

    - every error is an RFC 6749/6750 JSON body with ``Content-Type: application/json``;
    - every response has ``Cache-Control: no-store``;
    - CORS for registered origins, on errors too; preflight ``OPTIONS`` answered here;
    - a body that is not ``application/x-www-form-urlencoded`` text is ``invalid_request``.
    """

    api_methods: list[str] = ["POST"]
    #: Whether the endpoint authenticates OAuth clients (token, revocation, introspection)
    #: rather than bearer tokens (userinfo).
    client_endpoint: bool = False

    @classmethod
    def get_oauthlib_core(cls) -> Any:
        """The oauthlib core of this view class, built once (per class, not inherited).

        It freezes e.g. the access token lifetime (``expires_in``) it was built with; a test
        that changes ``OAUTH2_PROVIDER`` drops it (``tests/conftest.py``), as does DOT's
        ``ALWAYS_RELOAD_OAUTHLIB_CORE``.
        """
        core = cls.__dict__.get(OAUTHLIB_CORE_ATTRIBUTE)
        if core is None or oauth2_settings.ALWAYS_RELOAD_OAUTHLIB_CORE:
            core = cls.get_oauthlib_backend_class()(cls.get_server())  # type: ignore[attr-defined]
            setattr(cls, OAUTHLIB_CORE_ATTRIBUTE, core)
        return core

    # OAuth clients carry no CSRF cookie: the API endpoints authenticate the client (or the bearer
    # token) in every request instead. Marked here, on the dispatch that ``as_view`` copies its
    # attributes from, because this ``dispatch`` hides the decorated one of DOT's views.
    @method_decorator(csrf_exempt)
    @method_decorator(login_not_required)
    @events.binds_request
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            return preflight(request, self.api_methods)
        if request.method not in self.api_methods:
            response: HttpResponse = json_error(
                "invalid_request", f"Use {' or '.join(self.api_methods)}.", status=405
            )
            response["Allow"] = ", ".join([*self.api_methods, "OPTIONS"])
        else:
            response = self.guarded_dispatch(request, super().dispatch, *args, **kwargs)  # type: ignore[misc]
        response = self.jsonify(response)
        client_id = None
        if self.client_endpoint:
            client_id = requesting_client_id(request)
            if response.status_code == 401 and (
                request.headers.get("Authorization") or not response.has_header("WWW-Authenticate")
            ):
                # RFC 6749 §5.2: a client that tried the Authorization header gets a challenge
                # for its scheme (oauthlib's is Bearer, the resource server's). Not otherwise:
                # a Basic challenge to a page's fetch() of the token endpoint would pop up the
                # browser's password dialog.
                response["WWW-Authenticate"] = CLIENT_CHALLENGE
        return add_cors(request, no_store(response), client_id=client_id)

    def guarded_dispatch(
        self, request: HttpRequest, handler: Callable[..., HttpResponse], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        problem = malformed_request(request, query_allowed=not self.client_endpoint)
        if problem:
            status, description = problem
            return json_error("invalid_request", description, status=status)
        omit_empty_parameters(request)
        try:
            return handler(request, *args, **kwargs)
        except UnicodeDecodeError:
            return json_error("invalid_request", "The request is not valid UTF-8.")
        except ValueError as exc:
            # oauthlib refuses bodies with characters outside the urlencoded alphabet this way.
            if "urlencoded" in str(exc) or "hex" in str(exc):
                return json_error("invalid_request", "The request body is not form-urlencoded.")
            raise

    @staticmethod
    def jsonify(response: HttpResponse) -> HttpResponse:
        if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
            return response
        error = "invalid_token" if response.status_code == 401 else "invalid_request"
        if response.status_code == 403:
            error = (
                "insufficient_scope"
                if "insufficient_scope" in response.get("WWW-Authenticate", "")
                else "access_denied"
            )
        if response.status_code >= 500:
            error = "server_error"
        replacement = json_error(error, status=response.status_code)
        for header in ("WWW-Authenticate", "Allow"):
            if response.has_header(header):
                replacement[header] = response[header]
        return replacement


def malformed_request(request: HttpRequest, *, query_allowed: bool = True) -> tuple[int, str] | None:
    """``(status, reason)`` to refuse the request with before any OAuth processing, or ``None``."""
    if not query_allowed and request.META.get("QUERY_STRING"):
        # RFC 6749 §3.2, §4.1.3: the client sends its parameters in the request body; codes and
        # secrets in URLs end up in logs (RFC 9700 §4.3.2). oauthlib refuses any query on these
        # endpoints, without saying why; this says it.
        return 400, "Send the parameters in the form-encoded body, not in the URL."
    try:
        request.GET  # noqa: B018 - parsed here so that the view never meets the exception below
    except TooManyFieldsSent:
        # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS: an invalid_request (RFC 6749 §5.2, RFC 6750
        # §3.1) rather than the site's HTML 400 page.
        return 400, "The request has too many parameters."
    if request.method != "POST":
        return None
    content_type = request.content_type or ""
    try:
        if content_type not in FORM_CONTENT_TYPES and request.body:
            return 400, "The body must be application/x-www-form-urlencoded."
        for key, values in request.POST.lists():
            # RFC 6749 §3.1: parameters sent without a value are treated as omitted, and
            # request and response parameters MUST NOT be included more than once (RFC 8707
            # §2 makes an exception for ``resource``).
            if len(values) > 1 and key != "resource":
                return 400, f"The parameter {key!r} is repeated."
            if any("\x00" in value for value in values):
                return 400, f"The parameter {key!r} contains a NUL character."
            if len(key) > MAX_ENDPOINT_PARAMETER_LENGTH or any(
                len(v) > MAX_ENDPOINT_PARAMETER_LENGTH for v in values
            ):
                return 400, "A parameter is too long."
    except RequestDataTooBig:
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE (RFC 9110 §15.5.14).
        return 413, "The request body is too large."
    except (TooManyFieldsSent, TooManyFilesSent):
        return 400, "The request has too many parameters."
    except (UnicodeDecodeError, BadRequest):
        # RFC 6749 Appendix B: the form body is UTF-8; Django raises BadRequest for a form
        # declaring another charset, which would otherwise be its HTML 400 page.
        return 400, "The request is not valid UTF-8."
    return None
