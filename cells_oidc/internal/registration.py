"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

The view (:mod:`cells_oidc.internal.views.registration`) parses HTTP; this module decides:

- :func:`register`: client metadata in, a new third-party client out (consent and PKCE
  required, no administrative scope, no resource indicators), its redirect URIs validated by
  the same rules as the admin's (:func:`cells_oidc.models.validate_application`);
- :func:`read`, :func:`update`, :func:`delete`: RFC 7592 §2 on a registration, found by its
  client id and registration access token;
- :func:`issue_initial_token` / :func:`initial_token_for`: the initial access tokens of
  ``CELLS_OIDC_REGISTRATION = "initial_access_token"`` (RFC 7591 §3).

Every secret this module hands out (client secret, registration access token, initial access
token) is shown once; only a hash is stored. A refusal is a :class:`RegistrationError` carrying
the RFC 7591 §3.2.2 error code.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cells_oidc.conf import ADMIN_SCOPE, app_settings
from cells_oidc.internal import client_auth
from cells_oidc.internal.endpoints import absolute_url

__all__ = [
    "INITIAL_TOKEN_PREFIX",
    "REGISTRATION_TOKEN_PREFIX",
    "Registered",
    "RegistrationError",
    "delete",
    "initial_token_for",
    "issue_initial_token",
    "read",
    "register",
    "registration_for",
    "update",
]

INITIAL_TOKEN_PREFIX = "ciat_"
REGISTRATION_TOKEN_PREFIX = "creg_"
#: RFC 7591 §2: the metadata cells-oidc understands; any other member is ignored (§2: "The
#: authorization server MUST ignore any client metadata sent by the client that it does not
#: understand").
GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
#: RFC 7591 §2 token_endpoint_auth_method values a registration may ask for (client_secret_jwt is
#: not supported: docs/service-accounts.md).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none", client_auth.PRIVATE_KEY_JWT)
MAX_URIS = 20
MAX_URI_LENGTH = 2000
MAX_NAME_LENGTH = 255


class RegistrationError(Exception):
    """A refused registration request: ``error`` is an RFC 7591 §3.2.2 code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _metadata_error(description: str) -> RegistrationError:
    return RegistrationError("invalid_client_metadata", description)


@dataclass(frozen=True)
class Registered:
    """A registration just made or read: the response body (RFC 7591 §3.2.1)."""

    client_id: str
    body: dict[str, Any]


# ---- metadata ---------------------------------------------------------------------------------
def _string_list(data: dict[str, Any], name: str, *, default: list[str] | None = None) -> list[str]:
    value = data.get(name, default)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _metadata_error(f"{name} must be an array of strings.")
    return value


def _uris(data: dict[str, Any], name: str, error: str) -> list[str]:
    try:
        values = _string_list(data, name)
    except RegistrationError as exc:
        raise RegistrationError(error, exc.description) from None
    if len(values) > MAX_URIS:
        raise RegistrationError(error, f"At most {MAX_URIS} values in {name}.")
    for value in values:
        # Stored space-separated: a URI holding whitespace would become two.
        if not value or len(value) > MAX_URI_LENGTH or any(char.isspace() for char in value):
            raise RegistrationError(error, f"A value of {name} is empty, too long or holds whitespace.")
    return list(dict.fromkeys(values))


def _configured_scopes() -> list[str]:
    from oauth2_provider.scopes import get_scopes_backend

    return list(get_scopes_backend().get_all_scopes())


@dataclass
class _Metadata:
    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    method: str
    scope: list[str]
    jwks: dict[str, Any] | None


def _parse(data: Any) -> _Metadata:
    """The RFC 7591 §2 metadata of a request body, checked; :class:`RegistrationError` otherwise."""
    if not isinstance(data, dict):
        raise _metadata_error("The request body must be a JSON object.")
    name = data.get("client_name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or client_auth._CONTROL_RE.search(name):
        raise _metadata_error(f"client_name must be a string of at most {MAX_NAME_LENGTH} characters.")
    redirect_uris = _uris(data, "redirect_uris", "invalid_redirect_uri")
    post_logout = _uris(data, "post_logout_redirect_uris", "invalid_client_metadata")
    grant_types = _string_list(data, "grant_types", default=["authorization_code"])
    # A registered client signs users in with the authorization code flow (RFC 9700 §2.1.2);
    # other grants (client credentials, device) are an administrator's decision.
    if "authorization_code" not in grant_types or not set(grant_types) <= set(GRANT_TYPES):
        raise _metadata_error("grant_types may only be authorization_code and refresh_token.")
    response_types = _string_list(data, "response_types", default=["code"])
    if set(response_types) != set(RESPONSE_TYPES):
        raise _metadata_error('response_types must be ["code"].')  # RFC 7591 §2.1
    method = data.get("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
    if method not in AUTH_METHODS:
        raise _metadata_error("token_endpoint_auth_method must be one of " + ", ".join(AUTH_METHODS) + ".")
    if method == client_auth.PRIVATE_KEY_JWT and not app_settings.SERVICE_ACCOUNTS:
        raise _metadata_error("private_key_jwt is not enabled on this server.")
    if "jwks_uri" in data:
        # The server would fetch a URL anyone registered: an administrator sets a jwks_uri.
        raise _metadata_error("jwks_uri is not accepted at registration; send jwks.")
    jwks = data.get("jwks")
    if jwks is not None:
        try:
            client_auth.parse_jwks(json.dumps(jwks))
        except (ValueError, TypeError) as exc:
            raise _metadata_error(f"jwks is not a usable JWK Set: {exc}.") from None
    if method == client_auth.PRIVATE_KEY_JWT and jwks is None:
        raise _metadata_error("private_key_jwt needs jwks.")
    scope = data.get("scope")
    configured = _configured_scopes()
    if scope is None:
        scopes = [value for value in configured if value != ADMIN_SCOPE]
    elif not isinstance(scope, str):
        raise _metadata_error("scope must be a string.")
    else:
        scopes = list(dict.fromkeys(scope.split()))
        unknown = [value for value in scopes if value not in configured or value == ADMIN_SCOPE]
        if unknown or not scopes:
            raise _metadata_error("scope names a scope this server does not offer to registered clients.")
    return _Metadata(
        name=name,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        grant_types=list(dict.fromkeys(grant_types)),
        method=method,
        scope=scopes,
        jwks=jwks,
    )


def _apply(client: Any, policy: Any, metadata: _Metadata) -> None:
    """Write ``metadata`` on an (unsaved) client and its policy, validated as in the admin."""
    from cells_oidc.models import validate_application

    client.name = metadata.name
    client.redirect_uris = " ".join(metadata.redirect_uris)
    client.post_logout_redirect_uris = " ".join(metadata.post_logout_redirect_uris)
    client.allowed_origins = ""
    # Third party, always: the user is asked (no skip_authorization), PKCE is required
    # (RFC 9700 §2.1.1), no administrative scope and no resource indicators (RFC 8707).
    client.skip_authorization = False
    policy.require_pkce = True
    policy.confirm_existing_session = True
    policy.allow_device_flow = False
    policy.allow_admin_scope = False
    policy.allowed_resources = ""
    policy.allowed_scopes = " ".join(metadata.scope)
    policy.token_endpoint_auth_method = metadata.method if metadata.method != "none" else ""
    policy.jwks = json.dumps(metadata.jwks) if metadata.jwks is not None else ""
    policy.jwks_uri = ""
    try:
        validate_application(client)
    except ValidationError as exc:
        problems = exc.message_dict
        if "redirect_uris" in problems:
            # RFC 7591 §3.2.2: the same rules as the admin's, with their words.
            raise RegistrationError("invalid_redirect_uri", " ".join(problems["redirect_uris"])) from None
        raise _metadata_error(_problems(problems)) from None
    errors = client_auth.policy_errors(policy)
    if errors:
        raise _metadata_error(
            " ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        )


def _problems(errors: dict[str, list[str]]) -> str:
    return " ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())


def _body(client: Any, policy: Any, *, grant_types: list[str] | None = None) -> dict[str, Any]:
    """The client's registered metadata (RFC 7591 §3.2.1, RFC 7592 §3)."""
    public = client.client_type == client.CLIENT_PUBLIC
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris.split(),
        "post_logout_redirect_uris": client.post_logout_redirect_uris.split(),
        "grant_types": grant_types or ["authorization_code", "refresh_token"],
        "response_types": list(RESPONSE_TYPES),
        "token_endpoint_auth_method": "none"
        if public
        else (policy.token_endpoint_auth_method or "client_secret_basic"),
        "scope": policy.allowed_scopes,
        "registration_client_uri": absolute_url("register-client", client.client_id),
    }
    registration = getattr(client, "cells_registration", None)
    if registration is not None:
        body["client_id_issued_at"] = int(registration.created.timestamp())
    if policy.jwks:
        body["jwks"] = json.loads(policy.jwks)
    return body


# ---- registration (RFC 7591 §3) -----------------------------------------------------------------
def register(data: Any, *, initial_token: Any = None) -> Registered:
    """Register a client from the metadata ``data``; spend ``initial_token`` (RFC 7591 §3) in the
    same transaction, so a refused registration leaves a single-use token unspent."""
    from oauth2_provider.generators import generate_client_id, generate_client_secret

    from cells_oidc.models import Client, ClientPolicy, ClientRegistration, InitialAccessToken, checksum

    metadata = _parse(data)
    public = metadata.method == "none"
    client = Client(
        client_id=generate_client_id(),
        client_type=Client.CLIENT_PUBLIC if public else Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
        algorithm=Client.RS256_ALGORITHM,
    )
    secret = None
    if public:
        client.client_secret = ""
        client.hash_client_secret = False
    else:
        # A private_key_jwt client gets a secret nobody is told: its policy refuses secrets.
        secret = generate_client_secret()
        client.client_secret = secret
        client.hash_client_secret = True
    policy = ClientPolicy()
    _apply(client, policy, metadata)
    registration_token = REGISTRATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        if initial_token is not None and not _spend(initial_token):
            raise RegistrationError("invalid_token", "The initial access token is no longer valid.")
        client.save()
        policy.application = client
        policy.save()
        ClientRegistration.objects.create(
            application=client,
            access_token_checksum=checksum(registration_token),
            initial_token=initial_token if isinstance(initial_token, InitialAccessToken) else None,
        )
    client = Client.objects.select_related("cells_registration").get(pk=client.pk)
    body = _body(client, policy, grant_types=metadata.grant_types)
    body["registration_access_token"] = registration_token
    if secret is not None and metadata.method != client_auth.PRIVATE_KEY_JWT:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0  # RFC 7591 §3.2.1: does not expire
    return Registered(client.client_id, body)


# ---- management (RFC 7592 §2) ------------------------------------------------------------------
def registration_for(client_id: str, token: str | None) -> Any:
    """The registration of ``client_id`` whose registration access token is ``token``, or ``None``
    (RFC 7592 §2: the same answer whether the client or the token is wrong)."""
    from cells_oidc.models import ClientRegistration, checksum

    if not token or not token.startswith(REGISTRATION_TOKEN_PREFIX) or len(token) > 256:
        return None
    registration = (
        ClientRegistration.objects.select_related("application")
        .filter(access_token_checksum=checksum(token))
        .first()
    )
    if registration is None or registration.application.client_id != client_id:
        return None
    return registration


def read(registration: Any) -> dict[str, Any]:
    """RFC 7592 §2.1: the client's current metadata (its secret is stored hashed: not repeated)."""
    from cells_oidc.models import Client, policy_for

    client = Client.objects.select_related("cells_registration").get(pk=registration.application_id)
    return _body(client, policy_for(client))


def update(registration: Any, data: Any) -> dict[str, Any]:
    """RFC 7592 §2.2: replace the client's metadata with ``data`` (omitted values are dropped or
    take their defaults); its client id, type and secret stay."""
    from oauth2_provider.settings import oauth2_settings

    from cells_oidc.models import Client, policy_for

    if not isinstance(data, dict):
        raise _metadata_error("The request body must be a JSON object.")
    client = Client.objects.select_related("cells_registration").get(pk=registration.application_id)
    if data.get("client_id") != client.client_id:
        raise _metadata_error("client_id must be the client's own.")  # RFC 7592 §2.2
    secret = data.get("client_secret")
    if secret is not None and (
        not isinstance(secret, str)
        or not client.client_secret
        or not oauth2_settings.OAUTH2_VALIDATOR_CLASS()._check_secret(secret, client.client_secret)
    ):
        raise _metadata_error("client_secret does not match.")  # RFC 7592 §2.2
    metadata = _parse(data)
    public = client.client_type == client.CLIENT_PUBLIC
    if (metadata.method == "none") != public:
        raise _metadata_error("token_endpoint_auth_method cannot change between none and a secret or key.")
    policy = policy_for(client)
    _apply(client, policy, metadata)
    with transaction.atomic():
        client.save()
        policy.save()
        registration.save(update_fields=["updated"])
    return _body(client, policy, grant_types=metadata.grant_types)


def delete(registration: Any) -> None:
    """RFC 7592 §2.3: the client goes, with every token issued to it (RFC 7592 §2.3: "invalidate
    the client_id, client_secret and registration access token")."""
    registration.application.delete()


# ---- initial access tokens (RFC 7591 §3) ---------------------------------------------------------
def issue_initial_token(*, lifetime: timedelta, multi_use: bool = False, label: str = "") -> tuple[Any, str]:
    """A new initial access token valid for ``lifetime``: ``(row, secret)``; the secret is shown
    once, only its SHA-256 checksum is stored."""
    from cells_oidc.models import InitialAccessToken, checksum

    secret = INITIAL_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = InitialAccessToken.objects.create(
        token_checksum=checksum(secret),
        hint=secret[: len(INITIAL_TOKEN_PREFIX) + 4],
        label=label[:100],
        expires=timezone.now() + lifetime,
        multi_use=multi_use,
    )
    return row, secret


def _usable() -> Q:
    return Q(revoked__isnull=True, expires__gt=timezone.now()) & (Q(multi_use=True) | Q(uses=0))


def initial_token_for(token: str | None) -> Any:
    """The live initial access token ``token`` names, or ``None`` (unknown, expired, revoked, or a
    single-use token already spent)."""
    from cells_oidc.models import InitialAccessToken, checksum

    if not token or not token.startswith(INITIAL_TOKEN_PREFIX) or len(token) > 256:
        return None
    return InitialAccessToken.objects.filter(_usable(), token_checksum=checksum(token)).first()


def _spend(token: Any) -> bool:
    """Count one use; ``False`` when a concurrent request spent a single-use token first (the
    conditional UPDATE lets one request win)."""
    from cells_oidc.models import InitialAccessToken

    now = timezone.now()
    updated = InitialAccessToken.objects.filter(_usable(), pk=token.pk).update(
        uses=F("uses") + 1, last_used=now
    )
    return updated == 1
