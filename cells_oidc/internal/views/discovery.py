"""OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414) and the JWKS."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, HttpResponseRedirect
from django.urls import get_urlconf
from django.utils.decorators import method_decorator
from django.views import View
from oauth2_provider.compat import login_not_required
from oauth2_provider.scopes import get_scopes_backend

from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import client_auth, dpop, keys, pkce
from cells_oidc.internal.device import DEVICE_GRANT
from cells_oidc.internal.endpoints import absolute_url, issuer
from cells_oidc.internal.views.authorize import PROMPT_VALUES, RESPONSE_MODES
from cells_oidc.internal.views.common import add_cors, preflight

PUBLIC_DOCUMENT_MAX_AGE = 300
#: RFC 9700 §2.1.2: the authorization code flow only (the validator's validate_response_type).
RESPONSE_TYPES = ("code",)
#: The grants of the token endpoint (RFC 8628 §4: the device grant for the clients whose policy
#: allows it; the validator's validate_grant_type decides per client).
GRANT_TYPES = ("authorization_code", "refresh_token", DEVICE_GRANT)
#: RFC 6749 §4.4, advertised with CELLS_OIDC_SERVICE_ACCOUNTS (the validator's validate_grant_type
#: allows it to the clients registered with the client-credentials grant).
CLIENT_CREDENTIALS_GRANT = "client_credentials"
#: The claims of this provider's ID tokens (OpenID Connect Core §2, §3.1.3.6; ``sid``: Front-
#: and Back-Channel Logout).
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "jti", "at_hash", "sid")

# The documents built for a configuration: (name, site URL, URLconf, keys) → document. Emptied by
# :func:`forget_documents` when a setting changes (connected in ``apps.py``).
_documents: dict[tuple[Any, ...], dict[str, Any]] = {}


def forget_documents(**kwargs: Any) -> None:
    """``setting_changed`` receiver: the next request builds the documents again."""
    _documents.clear()


def _once(key: tuple[Any, ...], build: Any) -> dict[str, Any]:
    document = _documents.get(key)
    if document is None:
        document = _documents[key] = build()
    return document


def provider_metadata() -> dict[str, Any]:
    """The discovery document, built once per configuration (:func:`build_provider_metadata`):
    site URL, URLconf and the algorithms the current keys sign ID tokens with (a key change that
    alters them, seen through the shared key-set version, builds it again)."""
    algorithms = tuple(keys.id_token_algorithms(document=True))
    return _once(("metadata", app_settings.SITE_URL, get_urlconf(), algorithms), build_provider_metadata)


def jwks() -> dict[str, Any]:
    """The JWK Set (:func:`cells_oidc.internal.keys.jwks`): built once per key set, which every
    process reloads when ``cells_oidc_keys`` changes a key (the shared key-set version)."""
    return keys.jwks()


def build_provider_metadata() -> dict[str, Any]:
    """What the provider really supports, with absolute URLs built from the configured site URL.

    Every list is the constant the endpoint enforces it with, so the two cannot drift.
    """
    metadata = {
        "issuer": issuer(),
        "authorization_endpoint": absolute_url("authorize"),
        "token_endpoint": absolute_url("token"),
        "userinfo_endpoint": absolute_url("userinfo"),
        "jwks_uri": absolute_url("jwks"),
        "revocation_endpoint": absolute_url("revoke"),
        "introspection_endpoint": absolute_url("introspect"),
        "end_session_endpoint": absolute_url("logout"),
        "scopes_supported": list(get_scopes_backend().get_all_scopes()),
        "response_types_supported": list(RESPONSE_TYPES),
        "response_modes_supported": list(RESPONSE_MODES),
        # RFC 8628 §4: for the clients whose policy allows the device flow.
        "device_authorization_endpoint": absolute_url("device-authorization"),
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        # OpenID Connect Discovery §3: exactly the algorithms a current key signs ID tokens with
        # (RS256 always, per client ES256/EdDSA when such a key exists).
        "id_token_signing_alg_values_supported": keys.id_token_algorithms(document=True),
        "token_endpoint_auth_methods_supported": list(client_auth.TOKEN_ENDPOINT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(client_auth.TOKEN_ENDPOINT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(
            client_auth.INTROSPECTION_ENDPOINT_AUTH_METHODS
        ),
        "code_challenge_methods_supported": list(pkce.CODE_CHALLENGE_METHODS),  # RFC 9700 §2.1.1
        # OpenID Connect Discovery §3: the claims of ID tokens (OpenID Connect Core §2) and those
        # the adapter releases by scope (userinfo, ID token).
        "claims_supported": sorted({*ID_TOKEN_CLAIMS, *get_adapter().claim_scopes}),
        "claim_types_supported": ["normal"],  # OpenID Connect Core §5.6: no aggregated, distributed
        "prompt_values_supported": list(PROMPT_VALUES),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        # OpenID Connect Core §6.2: a request_uri the provider would fetch is not supported (the
        # PAR endpoint's request_uri is announced by pushed_authorization_request_endpoint).
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "frontchannel_logout_supported": False,
        # Back-Channel Logout §2.1: logout tokens (always with sid) to the clients that register a
        # backchannel_logout_uri (docs/backchannel-logout.md).
        "backchannel_logout_supported": app_settings.BACKCHANNEL_LOGOUT,
    }
    if app_settings.BACKCHANNEL_LOGOUT:
        metadata["backchannel_logout_session_supported"] = True
    if app_settings.SERVICE_DOCUMENTATION:
        metadata["service_documentation"] = app_settings.SERVICE_DOCUMENTATION
    locales = ui_locales()
    if locales:
        metadata["ui_locales_supported"] = locales
    if app_settings.SERVICE_ACCOUNTS:
        # docs/service-accounts.md: client credentials (RFC 6749 §4.4) for the clients registered
        # with that grant, and private_key_jwt (RFC 7523 §2.2) for those whose policy names it.
        metadata["grant_types_supported"] = [*GRANT_TYPES, CLIENT_CREDENTIALS_GRANT]
        for name in ("token", "revocation", "introspection"):
            metadata[f"{name}_endpoint_auth_signing_alg_values_supported"] = list(
                client_auth.ASSERTION_SIGNING_ALGORITHMS
            )
    else:
        for name in ("token", "revocation", "introspection"):
            key = f"{name}_endpoint_auth_methods_supported"
            metadata[key] = [value for value in metadata[key] if value != client_auth.PRIVATE_KEY_JWT]
    if app_settings.REGISTRATION != "off":
        metadata["registration_endpoint"] = absolute_url("register")  # RFC 7591 §3, RFC 8414 §2
    if app_settings.PAR_ENABLED:
        # RFC 9126 §5: the endpoint, and whether every client must use it.
        metadata["pushed_authorization_request_endpoint"] = absolute_url("par")
        metadata["require_pushed_authorization_requests"] = app_settings.REQUIRE_PAR
    if app_settings.DPOP_ENABLED:
        metadata["dpop_signing_alg_values_supported"] = list(dpop.ALGORITHMS)  # RFC 9449 §5.1
    return metadata


# A cached document's bytes and strong validator, by document (the documents are built once per
# configuration and kept, so the same dict comes back until the configuration changes).
_serialized_documents: dict[int, tuple[dict[str, Any], bytes, str]] = {}


def _serialized(data: dict[str, Any]) -> tuple[bytes, str]:
    """``data`` as JSON and its ETag (RFC 9110 §8.8.3: a strong validator of those bytes)."""
    cached = _serialized_documents.get(id(data))
    if cached is None or cached[0] is not data:
        body = json.dumps(data, cls=DjangoJSONEncoder).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if len(_serialized_documents) > 32:  # old configurations' documents
            _serialized_documents.clear()
        cached = _serialized_documents[id(data)] = (data, body, etag)
    return cached[1], cached[2]


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` or a list of entity tags compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def ui_locales() -> list[str]:
    """OpenID Connect Discovery §3 ``ui_locales_supported``: the site's ``LANGUAGES`` that the
    pages speak (English, and the catalogues shipped in ``cells_oidc/locale``), when the site
    selects a language per browser (``LocaleMiddleware``, docs/i18n.md); else none."""
    from django.conf import settings

    if not settings.USE_I18N or "django.middleware.locale.LocaleMiddleware" not in settings.MIDDLEWARE:
        return []
    from pathlib import Path

    locale = Path(__file__).resolve().parents[2] / "locale"
    shipped = {"en", *(path.name.lower() for path in locale.iterdir() if (path / "LC_MESSAGES").is_dir())}
    return [code for code, _name in settings.LANGUAGES if code.split("-")[0].lower() in shipped]


def public_json(
    request: HttpRequest, data: dict[str, Any], *, max_age: int = PUBLIC_DOCUMENT_MAX_AGE
) -> HttpResponse:
    body, etag = _serialized(data)
    if _matches(request.headers.get("If-None-Match", ""), etag):
        # RFC 9110 §13.1.2, §15.4.5: the client's copy is current; 304 with the validator.
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = f"public, max-age={max_age}"
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
        # docs/keys.md: cached for less than a next key is published before it signs, so a client
        # knows every key before its first token.
        return public_json(request, jwks(), max_age=keys.jwks_max_age())


@method_decorator(login_not_required, name="dispatch")
class IssuerView(View):
    """The issuer URL itself (``{site}/oidc/``) points at the discovery document."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(absolute_url("discovery"))
