"""The oauthlib request validator of cells-oidc: thin glue from DOT/oauthlib to the app's modules.

Each override says which rule it enforces; the rules themselves live in :mod:`.redirects`,
:mod:`.tokens`, :mod:`.keys` and :mod:`.models`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db import router, transaction
from django.db.models import F, QuerySet, Subquery
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.oauth2_validators import GRANT_TYPE_MAPPING, OAuth2Validator, is_valid_resource_uri
from oauth2_provider.settings import oauth2_settings

from cells_oidc import signals
from cells_oidc.adapter import get_adapter
from cells_oidc.conf import app_settings
from cells_oidc.internal import client_auth, dpop, issuance, pkce, redirects
from cells_oidc.internal.context import sign_in_context
from cells_oidc.internal.device import DEVICE_GRANT, redeem_device_code
from cells_oidc.internal.endpoints import issuer
from cells_oidc.internal.events import emit
from cells_oidc.internal.prepared import PreparedRead
from cells_oidc.models import TokenFamily, checksum, policy_for, revoke_families


def valid_resource_indicator(uri: Any) -> bool:
    """RFC 8707 §2 (DOT's rule: an absolute URI with a host, no fragment), ``False`` instead of
    the ``ValueError`` DOT's parser raises for a malformed host such as ``http://[::1``."""
    try:
        return bool(is_valid_resource_uri(uri))
    except ValueError:
        return False


def _invalid_target(request: Any, description: str) -> Exception:
    from oauthlib.oauth2.rfc6749 import errors

    # RFC 8707 §2: "invalid_target", 400 at the token endpoint.
    return errors.CustomOAuth2Error(error="invalid_target", description=description, request=request)


def _refuse_unallowed_resources(request: Any, resources: Any) -> None:
    """``invalid_target`` unless every resource is one the client's policy lists (RFC 8707 §2)."""
    if not resources:
        return
    client = getattr(request, "client", None)
    allowed = policy_for(client).allowed_resource_set() if client is not None else frozenset()
    if any(value not in allowed for value in resources):
        raise _invalid_target(request, "The client may not request tokens for this resource.")


# The token endpoint's reads, compiled once per process (cells_oidc.internal.prepared): each is
# the queryset below, run with the request's value.
#
# Exactly once (docs/security.md): every token request that spends or revokes a sign-in's grant
# locks the sign-in's TokenFamily row first (``lock=True``: SELECT … FOR UPDATE until the
# transaction ends), so requests of one sign-in run one after the other and each reads what the
# previous one committed. SQLite ignores FOR UPDATE; its IMMEDIATE transactions serialise every
# writer instead.
def _refresh_tokens(digest: str) -> QuerySet[Any]:
    return get_refresh_token_model().objects.filter(token_checksum=digest)


def _family_of_refresh_token(digest: str) -> QuerySet[Any]:
    return TokenFamily.objects.filter(
        pk=Subquery(_refresh_tokens(digest).exclude(token_family=None).values("token_family")[:1])
    )


def _refresh_token(digest: str) -> QuerySet[Any]:
    # Several rows may share a checksum (DOT: unique together with ``revoked``): the live one first.
    return (
        _refresh_tokens(digest)
        .select_related("user", "access_token")
        .order_by(F("revoked").desc(nulls_first=True))
    )


_FAMILY_OF_REFRESH_TOKEN = PreparedRead(_family_of_refresh_token)
_REFRESH_TOKEN = PreparedRead(_refresh_token)
_FAMILY_OF_CODE = PreparedRead(lambda digest: TokenFamily.objects.filter(code_checksum=digest))
_GRANT = PreparedRead(lambda code: get_grant_model().objects.filter(code=code).select_related("user"))


def _emit_revoked(family: TokenFamily, signal: Any, *, reason: str) -> None:
    """Send ``signal`` and ``token_revoked`` for a sign-in this request revoked as a whole
    (``family`` as read before the revocation: one already revoked sends nothing again)."""
    if family.revoked is not None:
        return
    facts = {"user": family.user, "client": family.application, "family_id": family.pk}
    emit(signal, **facts)
    emit(signals.token_revoked, kind="sign_in", reason=reason, **facts)


def _emit_reuse(refresh_token: Any, family: TokenFamily | None) -> None:
    """RFC 9700 §4.14.2: a spent refresh token came back and its sign-in was revoked now. Not
    for the refresh token of a sign-in revoked before (signed out, revoked): no news, no alarm."""
    if family is not None and family.revoked is not None:
        return
    facts = {
        "user": refresh_token.user,
        "client": refresh_token.application,
        "family_id": refresh_token.token_family,
    }
    emit(signals.refresh_reuse_detected, **facts)
    emit(signals.token_revoked, kind="sign_in", reason="reuse", **facts)


def _revocation_event(token: str, client: Any, families: list[Any]) -> dict[str, Any] | None:
    """What a revocation request is about to revoke (RFC 7009 §2.1), for ``token_revoked``: the
    live refresh or access token of ``client`` that ``token`` is, or ``None`` (nothing to revoke)."""
    digest = checksum(token)
    lookup = {"token_checksum": digest, "application_id": getattr(client, "pk", None)}
    refresh = get_refresh_token_model().objects.filter(revoked__isnull=True, **lookup).first()
    if refresh is not None:
        family_id = refresh.token_family or (families[0] if families else None)
        return {"kind": "refresh_token", "user": refresh.user, "family_id": family_id}
    access = get_access_token_model().objects.filter(**lookup).first()
    if access is None:
        return None
    family_id = (
        get_refresh_token_model()
        .objects.filter(access_token=access)
        .exclude(token_family=None)
        .values_list("token_family", flat=True)
        .first()
    ) or TokenFamily.objects.filter(access_token=access).values_list("pk", flat=True).first()
    return {"kind": "access_token", "user": access.user, "family_id": family_id}


class CellsOAuth2Validator(OAuth2Validator):
    # ---- clients -------------------------------------------------------------------------
    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        """Authenticate the client of a token, revocation or introspection request.

        RFC 6749 §2.3: a client uses one authentication method per request. When an
        ``Authorization: Basic`` header is present it alone decides (DOT would fall back to the
        body and so accept a public client's id in the body next to a wrong Basic secret).
        Cells integrations send a public client's id as Basic with an empty password
        (``Basic base64("cells-sync:")``): a public client has no secret (RFC 6749 §2.1), so
        that is identification, not a failed authentication. A non-empty secret must be right.

        A request carrying a client assertion (RFC 7523 §2.2, ``private_key_jwt``) is decided by
        :func:`cells_oidc.internal.client_auth.authenticate_assertion` alone; a secret is
        accepted only by the method the client's policy names (RFC 7591 §2).
        """
        assertion = client_auth.authenticate_assertion(request, self._load_application)
        if assertion is not None:
            return assertion
        if not self._authenticate_client_secret(request, *args, **kwargs):
            return False
        return client_auth.secret_method_allowed(request.client, self._secret_method(request))

    def _secret_method(self, request: Any) -> str:
        """The RFC 7591 §2 name of the method a request authenticated with."""
        credentials = self._basic_credentials(request)
        if credentials is not None:
            return "client_secret_basic" if credentials[1] else "none"
        return "client_secret_post" if getattr(request, "client_secret", None) else "none"

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        # RFC 7523 §2.2: a client assertion authenticates, whatever DOT would guess from the rest.
        if client_auth.has_assertion(request):
            return True
        return super().client_authentication_required(request, *args, **kwargs)

    def _authenticate_client_secret(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        """HTTP Basic or the body (RFC 6749 §2.3.1), as described in :meth:`authenticate_client`."""
        if self._extract_basic_auth(request) is None:
            return super().authenticate_client(request, *args, **kwargs)
        credentials = self._basic_credentials(request)
        if credentials is None:
            return False
        client_id, secret = credentials
        if getattr(request, "client_id", None) not in (None, client_id):
            return False  # RFC 6749 §2.3: one client per request
        if self._load_application(client_id, request) is None:
            return False
        if secret == "" and request.client.client_type == request.client.CLIENT_PUBLIC:
            request.client_id = client_id
            return True
        if secret == "" or not self._authenticate_basic_auth(request):
            return False
        request.client_id = client_id
        return True

    def _load_application(self, client_id: str, request: Any) -> Any:
        # DOT's, with the client's policy (ClientPolicy, read by nearly every token request)
        # joined to the one read of the client (docs/performance.md); DOT's own for the rest
        # (a cached client, a Client ID Metadata Document URL, a client_id no database can hold).
        handed = sign_in_context(request).client
        if not request.client and handed is not None and handed.client_id == client_id:
            if handed.is_usable(request):
                request.client = handed  # read by the token view already (its DPoP check)
                return handed
        if not request.client:
            client = client_auth.load_client(client_id)
            if client is not None and client.is_usable(request):
                request.client = client
                return client
        return super()._load_application(client_id, request)

    def _basic_credentials(self, request: Any) -> tuple[str, str] | None:
        return client_auth.basic_credentials(self._extract_basic_auth(request))

    # ---- client secrets: fast hashes with rotation (cells_oidc.internal.client_secrets) -------
    def _authenticate_basic_auth(self, request: Any) -> bool:
        """RFC 6749 §2.3.1 HTTP Basic: DOT's checks, the secret verified by :mod:`.client_secrets`."""
        credentials = self._basic_credentials(request)
        if credentials is None:
            return False
        client_id, secret = credentials
        return self._client_secret_valid(client_id, secret, request)

    def _authenticate_request_body(self, request: Any) -> bool:
        """RFC 6749 §2.3.1 ``client_id`` and ``client_secret`` in the body (NOT RECOMMENDED)."""
        client_id = getattr(request, "client_id", None)
        secret = getattr(request, "client_secret", "") or ""
        if not isinstance(client_id, str) or not client_id or not isinstance(secret, str):
            return False
        return self._client_secret_valid(client_id, secret, request)

    def _client_secret_valid(self, client_id: str, secret: str, request: Any) -> bool:
        from cells_oidc.internal import client_secrets

        if self._load_application(client_id, request) is None or request.client.client_id != client_id:
            return False
        if request.client.client_type == "public" and request.grant_type == DEVICE_GRANT:
            return True  # DOT's rule: a public device client is identified, not authenticated
        return client_secrets.verify(request.client, secret, dot_check=self._check_secret)

    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *a: Any, **k: Any
    ) -> bool:
        return redirects.redirect_uri_allowed(
            redirect_uri, request.client.redirect_uris, app_settings.SITE_URLS
        )

    def get_default_redirect_uri(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> str | None:
        # RFC 6749 §3.1.2.3: redirect_uri may be omitted only when the registration is unambiguous.
        if request.client is None:
            return None
        return redirects.default_redirect_uri(request.client.redirect_uris, app_settings.SITE_URLS)

    def is_origin_allowed(self, client_id: str, origin: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        client = request.client
        return client is not None and redirects.origin_allowed(
            origin, client.allowed_origins, app_settings.SITE_URLS
        )

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        # RFC 9700 §2.1.2: only the authorization code flow; no implicit or hybrid responses
        # (RFC 6749 §4.1.2.1: unsupported_response_type, not unauthorized_client).
        if response_type != "code":
            from oauthlib.oauth2.rfc6749 import errors

            raise errors.UnsupportedResponseTypeError(request=request)
        return client.allows_grant_type(client.GRANT_AUTHORIZATION_CODE)

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        # oauthlib's code grant also answers grant_type=openid, which DOT's mapping does not
        # know (an AssertionError, a 500): RFC 6749 §5.2 unauthorized_client instead.
        if grant_type not in GRANT_TYPE_MAPPING:
            return False
        if grant_type == DEVICE_GRANT:
            # RFC 8628 §3.4: the device grant is a per-client switch of cells-oidc's policy
            # (a Cells client registers the code grant and may also sign in headless machines).
            return bool(getattr(policy_for(client), "allow_device_flow", False))
        if not super().validate_grant_type(client_id, grant_type, client, request, *a, **k):
            return False
        if grant_type == "client_credentials":
            # RFC 8707 §2: no grant binds the request; the client's policy does (invalid_target
            # answered here: raised while saving the token, it would lose its error code).
            self._settle_resources(request, granted=None)
        return True

    def validate_device_code(self, client_id: str, code: str, request: Any, *a: Any, **k: Any) -> str | None:
        """RFC 8628 §3.5 status of a polled device code (see :func:`.device.redeem_device_code`)."""
        # RFC 8707 §2.2: the approval carries no resource; the token request may name those the
        # client's policy allows. Checked before the approval is redeemed.
        self._settle_resources(request, granted=None)
        return redeem_device_code(client_id, code, request)

    def _refuse_bad_resources(self, request: Any) -> list[str]:
        """RFC 8707 §2: the ``resource`` values of a token request, each a valid indicator that
        the client's policy allows (compared exactly), else ``invalid_target`` — raised before a
        grant is redeemed or any token exists.

        DOT checks them only while saving the tokens, after the ID token was stored (the error
        left that behind), and its parser raises ``ValueError`` (a 500) on a malformed host.
        """
        body = getattr(request, "decoded_body", None) or []
        requested = [value for key, value in body if key == "resource"]
        if not all(valid_resource_indicator(value) for value in requested):
            raise _invalid_target(request, "The resource is not a valid resource indicator.")
        _refuse_unallowed_resources(request, requested)
        return list(dict.fromkeys(requested))

    def _settle_resources(self, request: Any, *, granted: list[str] | None) -> None:
        """Set ``request.resource`` to the resources of the tokens about to be issued.

        RFC 8707 §2.2: a code or refresh token request may narrow within the resources of its
        grant (``granted``), never widen: a grant without resources is for the site's own API
        only, so a request naming one then is refused too. Without a request value the grant's
        resources apply, if the client may still name them. ``granted=None``: no grant binds the
        request (device and client credentials grants). ``invalid_target`` otherwise.
        """
        requested = self._refuse_bad_resources(request)
        if granted is None:
            request.resource = requested
            return
        granted = [value for value in granted if isinstance(value, str)]
        if any(value not in granted for value in requested):
            raise _invalid_target(request, "The resource was not granted.")
        effective = requested or granted
        # The client's policy may have changed since the grant: it is asked again.
        _refuse_unallowed_resources(request, effective)
        request.resource = effective
        # The refresh token keeps the grant's resources, as it keeps its scope (RFC 6749 §6).
        sign_in_context(request).granted_resources = granted

    def _check_and_set_request_resource(self, request: Any) -> None:
        # DOT's check while saving the tokens, for every grant (client credentials included),
        # plus the client's policy (RFC 8707 §2): the last word before anything is stored.
        if request.grant_type == "authorization_code" and sign_in_context(request).grant is not None:
            # validate_code settled the resources within the grant's (RFC 8707 §2.2) and deleted
            # the code row: DOT's read of that row would find nothing; its URI check stays.
            resource = request.resource if isinstance(request.resource, list) else []
            request.resource = resource
            self._validate_resource_uris(request, resource)
        else:
            super()._check_and_set_request_resource(request)
        _refuse_unallowed_resources(request, request.resource)

    def _create_refresh_token(
        self, request: Any, refresh_token_code: str, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        """DOT's, with the sign-in's id as the token's family from the start (no UPDATE after)."""
        context = sign_in_context(request)
        if context.family is not None:
            token_family = context.family.pk
        elif previous_refresh_token is not None and previous_refresh_token.token_family:
            token_family = previous_refresh_token.token_family
        else:
            token_family = uuid.uuid4()
        # RFC 8707 §2.2: an access token narrowed to some resources does not narrow the refresh
        # token; later refreshes may ask again for any resource of the grant.
        granted = context.granted_resources
        refresh_token = get_refresh_token_model()(
            user=request.user,
            application=request.client,
            access_token=access_token,
            token_family=token_family,
            resource=list(granted) if granted is not None else getattr(request, "resource", []),
        )
        self._set_token_value(refresh_token, refresh_token_code)
        refresh_token.save()
        return refresh_token

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        if not super().validate_scopes(client_id, scopes, client, request, *a, **k):
            return False
        from cells_oidc.conf import ADMIN_SCOPE

        policy = policy_for(client)
        # The administrative scope only for a client whose policy allows it (RFC 6749 §3.3: the
        # server may refuse a scope in part or in full, invalid_scope), whatever allowed_scopes says.
        if ADMIN_SCOPE in scopes and not policy.allow_admin_scope:
            return False
        allowed = policy.allowed_scope_set()
        return allowed is None or set(scopes) <= allowed

    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        client = request.client or self._load_application(client_id, request)
        return True if client is None else policy_for(client).require_pkce

    # ---- OpenID Connect prompt handling: decided by the view, which knows the session ------
    def validate_silent_login(self, request: Any) -> bool:
        return True

    def validate_silent_authorization(self, request: Any) -> bool:
        return True

    def validate_user_match(self, id_token_hint: Any, scopes: Any, claims: Any, request: Any) -> bool:
        return True

    # ---- authorization codes ---------------------------------------------------------------
    def save_authorization_code(
        self, client_id: str, code: dict[str, Any], request: Any, *a: Any, **k: Any
    ) -> None:
        method = getattr(request, "code_challenge_method", None)
        challenge = getattr(request, "code_challenge", None)
        if challenge is not None and not pkce.valid_challenge(challenge, method):
            # Re-checked here because a consent form POST can be tampered with (RFC 7636 §4.3).
            from oauthlib.oauth2.rfc6749 import errors

            raise errors.InvalidRequestError(
                description="code_challenge must be an S256 challenge.", request=request
            )
        with transaction.atomic():
            self._create_authorization_code(request, code)
            context = sign_in_context(request)
            auth_time = context.auth_time
            family = TokenFamily.objects.create(
                application=request.client,
                user=request.user,
                code_checksum=checksum(code["code"]),
                sid=context.sid,
                auth_time=datetime.fromtimestamp(auth_time, tz=dt_timezone.utc)
                if auth_time is not None
                else timezone.now(),
                # RFC 6749 §6: what the user granted, the limit of every later refresh.
                scope=" ".join(request.scopes or []),
                redirect_uri=self._named_redirect_uri(request),
            )
            emit(
                signals.code_issued,
                user=request.user,
                client=request.client,
                scope=family.scope,
                family_id=family.pk,
            )

    @staticmethod
    def _named_redirect_uri(request: Any) -> str:
        """The ``redirect_uri`` the authorization request named, "" when it named none.

        The authorization view passes it explicitly (in the sign-in context): the credentials it
        hands oauthlib always carry the redirect URI, defaulted or not. Without it, oauthlib's
        ``using_default_redirect_uri`` says; unknown counts as named (stricter).
        """
        named = sign_in_context(request).named_redirect_uri
        if isinstance(named, str):
            return named
        if getattr(request, "using_default_redirect_uri", False):
            return ""
        return request.redirect_uri or ""

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """Redeem ``code`` exactly once, with its PKCE proof, and remember what it carried.

        Exactly once (docs/security.md): the sign-in's :class:`TokenFamily` row is locked first,
        for the rest of the token request's transaction (the token view runs it in one), so a
        second redemption waits until the first has committed its tokens or its failure. The
        grant row is then deleted, before any token exists: only the request whose DELETE
        removed the row goes on. Any failure after that point leaves the code burned (RFC 6749
        §4.1.2 single use; RFC 7636 §4.6 a failed verifier burns the code).
        """
        grant_model = get_grant_model()
        if not isinstance(code, str) or len(code) > 255:
            return False
        self._refuse_bad_resources(request)  # a malformed request does not spend the code
        family = _FAMILY_OF_CODE.first(checksum(code), lock=True)
        # A live code presented by another client than its own is refused without being spent
        # (the spec is silent; fosite/Hydra do the same): only its client can burn it. A code
        # already redeemed has leaked whoever presents it, so that replay revokes its family.
        grant = self._presented_grant(code, request)
        if grant is not None and grant.application_id != getattr(client, "pk", None):
            grant = None
        if grant is not None:
            # RFC 8707 §2.2: within the grant's resources; refused before the code is spent.
            self._settle_resources(request, granted=list(grant.resource or []))
        claimed = grant is not None and grant_model.objects.filter(pk=grant.pk).delete()[0] == 1
        if not claimed:
            # RFC 6749 §4.1.2: a code used twice is an attack; revoke what it produced. Read
            # under the lock, ``redeemed`` is the winner's committed word, whenever it finished.
            if family is not None and family.redeemed is not None:
                family.revoke()
                _emit_revoked(family, signals.code_replayed, reason="replay")
            return False
        if grant.is_expired() or family is None:
            return False
        verifier = getattr(request, "code_verifier", None)
        if not pkce.verify(verifier, grant.code_challenge, grant.code_challenge_method):
            return False  # RFC 7636 §4.6, RFC 9700 §4.8.2 (a verifier without a challenge)
        if not get_adapter().can_sign_in(user=grant.user, client=client):
            return False
        context = sign_in_context(request)
        context.grant = grant
        context.bind(family)
        request.scopes = grant.scope.split()
        request.user = grant.user
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            try:
                claims = json.loads(grant.claims)
            except (ValueError, RecursionError):
                # RFC 8259 §9: nesting the authorization endpoint parsed (oauthlib, with stack to
                # spare) may not parse here, deeper in the stack; it is ignored, not a 500.
                claims = None
            # OpenID Connect Core §5.5: a claims request is an object; anything else is ignored.
            request.claims = claims if isinstance(claims, dict) and claims else None
        return True

    @staticmethod
    def _presented_grant(code: Any, request: Any) -> Any:
        """The code row ``code`` names (its user joined), read once per request: oauthlib asks
        for its scope and nonce before ``validate_code`` redeems it, DOT read it three times.

        Read before the sign-in is locked, which is safe: the row never changes, and only the
        request whose DELETE removes it goes on (``validate_code``).
        """
        if not isinstance(code, str) or len(code) > 255:
            return None
        context = sign_in_context(request)
        grant = context.presented_grant
        if grant is None or grant.code != code:
            grant = _GRANT.first(code)
            context.presented_grant = grant
        return grant

    def get_authorization_code_scopes(
        self, client_id: str, code: str, redirect_uri: str, request: Any
    ) -> list[str]:
        grant = self._presented_grant(code, request)
        return grant.scope.split() if grant is not None and grant.scope else []

    def get_authorization_code_nonce(
        self, client_id: str, code: str, redirect_uri: str, request: Any
    ) -> str | None:
        grant = self._presented_grant(code, request)
        return (grant.nonce or None) if grant is not None else None

    def _stashed_grant(self, code: str, request: Any) -> Any:
        grant = sign_in_context(request).grant
        return grant if grant is not None and grant.code == code else None

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *a: Any, **k: Any
    ) -> None:
        if self._stashed_grant(code, request) is None:
            super().invalidate_authorization_code(client_id, code, request, *a, **k)

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        grant = self._stashed_grant(code, request)
        return (grant.code_challenge or None) if grant else None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        grant = self._stashed_grant(code, request)
        return (grant.code_challenge_method or None) if grant else None

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: Any, *args: Any, **kwargs: Any
    ) -> bool:
        request = kwargs.get("request") or (args[0] if args else None)
        grant = self._stashed_grant(code, request) if request is not None else None
        family = sign_in_context(request).family if request is not None else None
        if (
            grant is not None
            and family is not None
            and family.redirect_uri
            and getattr(request, "using_default_redirect_uri", False)
        ):
            # RFC 6749 §4.1.3: redirect_uri is REQUIRED when the authorization request included
            # it (oauthlib would fill in the client's default and compare that). §5.2: a grant
            # that does not match the redirection URI of its authorization request is
            # invalid_grant. The code is spent already (validate_code).
            from oauthlib.oauth2.rfc6749 import errors

            raise errors.InvalidGrantError(
                description="redirect_uri is required: the authorization request included it.",
                request=request,
            )
        # RFC 6749 §4.1.3: identical to the redirect_uri of the authorization request.
        return grant is not None and grant.redirect_uri_allowed(redirect_uri)

    # ---- refresh tokens --------------------------------------------------------------------
    def get_original_scopes(self, refresh_token: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        """RFC 6749 §6: the scope the sign-in was granted, not the last access token's.

        A refresh may narrow one access token; the new refresh token keeps the original scope
        ("MUST be identical"), so a later refresh may ask again for anything within it, and a
        refresh without ``scope`` gets all of it. A family from before the scope was recorded
        on it (``scope == ""``) keeps DOT's rule (the previous access token's scope).
        """
        family = sign_in_context(request).family
        if family is not None and family.scope:
            return family.scope
        return super().get_original_scopes(refresh_token, request, *args, **kwargs)

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *a: Any, **k: Any
    ) -> bool:
        """Spend ``refresh_token`` exactly once (RFC 6749 §6 rotation, RFC 9700 §4.14.2).

        Exactly once (docs/security.md): the token's sign-in (:class:`TokenFamily`) is locked
        first, so the refreshes and revocations of one sign-in run one after the other; the
        token is then claimed by a conditional ``UPDATE … SET revoked = now WHERE revoked IS
        NULL``, which only one request can win (it holds even for a path that took no lock).
        A token presented after it was spent or revoked is reuse: the whole family is revoked,
        successors included, and ``TokenFamily.revoked`` is set (DOT's own sweep leaves the
        family row alone and its grace period answers an empty access token when tokens are
        stored hashed, so neither is used).
        """
        if not isinstance(refresh_token, str) or len(refresh_token) > 255:
            return False
        self._refuse_bad_resources(request)
        digest = checksum(refresh_token)
        # The sign-in's row, found and locked in one statement (its id is the token's family).
        family = _FAMILY_OF_REFRESH_TOKEN.first(digest, lock=True)
        # Read after the lock: the row as the last request of this sign-in left it. Its user and
        # access token come with it (no lazy load later).
        rt = _REFRESH_TOKEN.first(digest)
        if rt is None:
            return False
        if rt.revoked is not None or (family is not None and family.revoked is not None):
            # RFC 9700 §4.14.2: a spent refresh token presented again means two parties hold
            # it; RFC 6749 §10.4: revoke the grant, so no chain of this sign-in refreshes again.
            if rt.token_family:
                revoke_families([rt.token_family])
            _emit_reuse(rt, family)
            return False
        if not self._live_refresh_token(rt, refresh_token, client, request):
            return False  # expired, an orphan, or another client's token (not spent)
        # RFC 8707 §2.2: no resource beyond the refresh token's, checked now rather than while
        # saving the tokens (after the new ID token was stored).
        self._settle_resources(request, granted=list(rt.resource or []))
        if not get_adapter().can_sign_in(user=rt.user, client=client):
            return False
        if family is not None and not dpop.refresh_allowed(family, request):
            return False  # RFC 9449 §5: bound to a DPoP key, refreshed without its proof
        if family is not None:
            sign_in_context(request).bind(family)
        # The last refusal before the claim: a refused request does not spend the token.
        self._refuse_wider_scope(refresh_token, request)
        if self.rotate_refresh_token(request) and not self._claim_refresh_token(rt):
            # Spent by a concurrent request that took no lock of the family: reuse all the same.
            if rt.token_family:
                revoke_families([rt.token_family])
            _emit_reuse(rt, family)
            return False
        return True

    @staticmethod
    def _live_refresh_token(rt: Any, refresh_token: str, client: Any, request: Any) -> bool:
        """DOT's checks of an unrevoked refresh token, on the row already read (DOT's
        ``validate_refresh_token`` reads it again and loads its client lazily).

        An orphan (no access token) is refused; RFC 6749 §6 / DOT #746: the token dies
        ``REFRESH_TOKEN_EXPIRE_SECONDS`` after its access token expires; it must be the
        client's own (RFC 6749 §6: "bound to the client").
        """
        if rt.access_token is None:
            return False
        expire_delta = refresh_token_expire_timedelta()
        if expire_delta and rt.access_token.expires + expire_delta <= timezone.now():
            return False
        request.user = rt.user
        request.refresh_token = refresh_token  # the raw value: the stored column is blank (hashed)
        request.refresh_token_instance = rt
        return client is not None and rt.application_id == client.pk

    def _refuse_wider_scope(self, refresh_token: str, request: Any) -> None:
        """RFC 6749 §6: ``invalid_scope`` for a scope beyond the original grant.

        oauthlib asks the same right after :meth:`validate_refresh_token`, when the token would
        be claimed already; asked here first, a refused refresh leaves the token unspent.
        """
        from oauthlib.oauth2.rfc6749 import errors, utils

        if not request.scope:
            return
        requested = utils.scope_to_list(request.scope)
        original = utils.scope_to_list(self.get_original_scopes(refresh_token, request))
        if not all(scope in original for scope in requested) and not self.is_within_original_scope(
            requested, refresh_token, request
        ):
            raise errors.InvalidScopeError(request=request)

    def _claim_refresh_token(self, rt: Any) -> bool:
        """Mark ``rt`` spent if nobody did: ``True`` for the one request whose UPDATE did it.

        PostgreSQL (READ COMMITTED) makes a second UPDATE of the row wait for the first
        transaction and evaluates ``revoked IS NULL`` again on the committed row; SQLite runs
        one writing transaction at a time. DOT's rotation then finds the row revoked already
        and leaves the previous access token alone: :meth:`_save_bearer_token` deletes it.
        """
        now = timezone.now()
        claimed = get_refresh_token_model().objects.filter(pk=rt.pk, revoked__isnull=True)
        if claimed.update(revoked=now, updated=now) != 1:
            return False
        rt.revoked = now
        return True

    def save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        # DOT opens a transaction here; inside the token view's own (docs/security.md, "Exactly
        # once") that is a SAVEPOINT and its RELEASE for nothing. One transaction: a failure
        # while saving rolls the whole request back (never half-written tokens).
        with transaction.atomic(using=router.db_for_write(get_access_token_model()), savepoint=False):
            return self._save_bearer_token(token, request, *args, **kwargs)

    def _save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        family = sign_in_context(request).family
        # A sign-in's first tokens (code exchange, or a device code): not a refresh.
        first_issue = request.grant_type != "refresh_token"
        dpop.bind_issued_tokens(token, request, family)  # RFC 9449 §5
        if "refresh_token" in token and not issuance.issue_refresh_token(request):
            token.pop("refresh_token")  # OpenID Connect Core §11: the adapter's decision
        spent = getattr(request, "refresh_token_instance", None) if not first_issue else None
        if spent is not None and not self.rotate_refresh_token(request):
            # No rotation configured: DOT's path, which keeps the refresh token and its access
            # token row (and locks them).
            super()._save_bearer_token(token, request, *args, **kwargs)
            access = None
        else:
            access = self._issue_tokens(token, request, spent)
        emit(
            signals.tokens_issued,
            user=getattr(request, "user", None),
            client=request.client,
            grant_type=request.grant_type,
            scope=" ".join(getattr(request, "scopes", None) or []),
            family_id=family.pk if family is not None else None,
            refresh_token="refresh_token" in token,
        )
        if family is None:
            return
        # One UPDATE of the sign-in's row (locked since validation) for all it records.
        changes: dict[str, Any] = {}
        if first_issue and "refresh_token" not in token and access is not None:
            # Tie an access token issued without a refresh token to its sign-in, so that a
            # replayed code revokes it too (RFC 6749 §4.1.2).
            changes["access_token"] = access
        if request.grant_type == "authorization_code":
            changes["redeemed"] = timezone.now()
        if first_issue and not family.scope:
            # A code issued before the scope was recorded at sign-in: recorded now (RFC 6749 §6).
            changes["scope"] = " ".join(getattr(request, "scopes", None) or [])
        if changes:
            TokenFamily.objects.filter(pk=family.pk).update(**changes)
        if request.grant_type == "authorization_code":
            emit(signals.code_redeemed, user=request.user, client=request.client, family_id=family.pk)

    def _issue_tokens(self, token: dict[str, Any], request: Any, spent: Any) -> Any:
        """Store the tokens of a code exchange, a device code or a rotating refresh: DOT's
        ``_save_bearer_token`` without what the validator did already.

        ``validate_refresh_token`` claimed ``spent`` (the conditional UPDATE, under the sign-in's
        lock), so DOT's second locking read of it, its lock of the access token and its
        ``revoke()`` (a third read) have nothing left to do; the spent token's access token is
        deleted here, by instance, so its deny-list entry is still written (RFC 6749 §6).
        """
        from oauthlib.oauth2.rfc6749.errors import FatalClientError

        if "scope" not in token:
            raise FatalClientError("Failed to renew access token: missing scope")
        self._check_and_set_request_resource(request)
        expires = timezone.now() + timedelta(
            seconds=token.get("expires_in", oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
        )
        if request.grant_type == "client_credentials":
            request.user = None
        refresh_token_code = token.get("refresh_token")
        if not refresh_token_code:
            return self._create_access_token(expires, request, token)
        access = self._create_access_token(expires, request, token, source_refresh_token=spent)
        self._create_refresh_token(request, refresh_token_code, access, spent)
        if spent is not None and spent.access_token is not None:
            # RFC 6749 §6 rotation: the spent refresh token's access token goes with it.
            spent.access_token.delete()
        return access

    def _create_access_token(
        self, expires: Any, request: Any, token: dict[str, Any], source_refresh_token: Any = None
    ) -> Any:
        # DOT's, with the ID token row finalize_id_token has just saved (request.id_token): DOT's
        # _load_id_token parses and RSA-verifies the JWT it has just signed, then reads the
        # client and the row again.
        id_token = None
        if token.get("id_token"):
            id_token = getattr(request, "id_token", None)
            if not isinstance(id_token, get_id_token_model()):
                id_token = self._load_id_token(token["id_token"])
        access_token = get_access_token_model()(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            id_token=id_token,
            application=request.client,
            source_refresh_token=source_refresh_token,
            resource=getattr(request, "resource", []),  # RFC 8707
        )
        self._set_token_value(access_token, token["access_token"])
        access_token.save()
        sign_in_context(request).access_token = access_token
        return access_token

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        refresh_model = get_refresh_token_model()
        with transaction.atomic():
            families = list(
                refresh_model.objects.filter(
                    token_checksum=checksum(token), application_id=getattr(request.client, "pk", None)
                )
                .exclude(token_family=None)
                .values_list("token_family", flat=True)
            )
            # Exactly once (docs/security.md): the sign-in's row is locked before its tokens, in
            # the order of the token endpoint, so a concurrent refresh cannot deadlock with this.
            list(TokenFamily.objects.select_for_update().filter(pk__in=families).order_by("pk"))
            revoked = _revocation_event(token, request.client, families)
            super().revoke_token(token, token_type_hint, request, *args, **kwargs)
            # RFC 7009 §2.1: revoking a refresh token SHOULD invalidate every token of its grant.
            revoke_families(families)
            if revoked is not None:
                emit(signals.token_revoked, client=request.client, reason="revocation_endpoint", **revoked)

    # ---- claims and ID tokens ----------------------------------------------------------------
    def get_claim_dict(self, request: Any) -> dict[str, Any]:
        return issuance.user_claims(request)

    def get_discovery_claims(self, request: Any) -> list[str]:
        return ["sub", *get_adapter().claim_scopes.keys()]

    def get_oidc_claims(self, token: Any, token_handler: Any, request: Any) -> dict[str, Any]:
        return issuance.released_claims(self.get_claim_dict(request), request.scopes)

    def get_oidc_issuer_endpoint(self, request: Any) -> str:
        return issuer()

    def get_id_token_dictionary(
        self, token: Any, token_handler: Any, request: Any
    ) -> tuple[dict[str, Any], Any]:
        return issuance.id_token_claims(request, self.get_oidc_claims(token, token_handler, request))

    def finalize_id_token(
        self, id_token: dict[str, Any], token: Any, token_handler: Any, request: Any
    ) -> str:
        claims, expires = self.get_id_token_dictionary(token, token_handler, request)
        return issuance.finalize_id_token(id_token, request, claims, expires, save=self._save_id_token)

    def validate_bearer_token(self, token: str, scopes: Any, request: Any) -> bool:
        # DOT's bearer check (used by userinfo and DOT's own resource views) plus the adapter's
        # sign-in policy: a deactivated or refused user's tokens stop working at once.
        if not super().validate_bearer_token(token, scopes, request):
            return False
        access = request.access_token
        return access.user is None or get_adapter().can_sign_in(user=access.user, client=access.application)

    def validate_jwt_bearer_token(self, token: str, scopes: Any, request: Any) -> bool:
        # An ID token is not an access token (RFC 9068 §4, OpenID Connect Core §2).
        return False

    def validate_id_token(self, token: str, scopes: Any, request: Any) -> bool:
        return False

    def introspect_token(
        self, token: str, token_type_hint: str | None, request: Any, *a: Any, **k: Any
    ) -> None:
        # Served by cells_oidc.internal.views.token.IntrospectView, not by oauthlib.
        return None

    def get_userinfo_claims(self, request: Any) -> dict[str, Any]:
        return self.get_oidc_claims(None, None, request)

    def get_jwt_bearer_token(self, token: Any, token_handler: Any, request: Any) -> str:
        return self.get_id_token(token, token_handler, request)
