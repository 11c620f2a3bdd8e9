"""Companion models of cells-oidc, linked to DOT's stock models (no DOT model is swapped)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import Application
from oauth2_provider.settings import oauth2_settings

from cells_oidc.internal import redirects

__all__ = [
    "AuditEvent",
    "Client",
    "ClientPolicy",
    "ClientSecret",
    "Consent",
    "LogoutDelivery",
    "PersonalAccessToken",
    "SigningKey",
    "TokenFamily",
    "UserSession",
    "policy_for",
]


#: The JWS algorithms cells-oidc signs with (RFC 7518 §3.1, RFC 8037 §3.1): RS256 (the default,
#: what the Cells clients expect of ID tokens), ES256 (P-256) and EdDSA (Ed25519).
SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA")
SIGNING_ALGORITHM_CHOICES = [
    ("RS256", "RS256 (RSA)"),
    ("ES256", "ES256 (ECDSA P-256)"),
    ("EdDSA", "EdDSA (Ed25519)"),
]


def checksum(value: str) -> str:
    """SHA-256 hex digest, the form in which codes and tokens are looked up (RFC 9700 §4)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class Client(Application):
    """DOT's application, as cells-oidc validates and presents it (a proxy: same table, same rows).

    The redirect URIs, post-logout redirect URIs and allowed origins keep living in DOT's
    fields, but in cells-oidc's syntax (port ranges, ``serverName``, custom schemes; see
    :mod:`cells_oidc.internal.redirects`), so they are validated here instead of by DOT's URL validator.
    """

    class Meta:
        proxy = True
        verbose_name = _("client")
        verbose_name_plural = _("clients")

    def clean(self) -> None:
        validate_application(self)


URI_FIELDS = (("redirect_uris", False), ("post_logout_redirect_uris", False), ("allowed_origins", True))


def registration_errors(app: Application) -> dict[str, list[str]]:
    """The problems of ``app``'s redirect URIs, post-logout URIs and origins, by field."""
    errors: dict[str, list[str]] = {}
    for field, origins in URI_FIELDS:
        # In the reader's language (the admin's active one); the system checks get LANGUAGE_CODE's.
        problems = redirects.validation_errors(getattr(app, field) or "", origins=origins, translate=gettext)
        if problems:
            errors[field] = problems
    return errors


def validate_application(app: Application) -> None:
    """Raise a field-keyed ``ValidationError`` for every problem of ``app``'s registration."""
    errors = registration_errors(app)
    needs_redirect = app.authorization_grant_type in (
        Application.GRANT_AUTHORIZATION_CODE,
        Application.GRANT_IMPLICIT,
        Application.GRANT_OPENID_HYBRID,
    )
    if needs_redirect and not (app.redirect_uris or "").split():
        errors.setdefault("redirect_uris", []).append(
            str(_("A client using the authorization code grant needs at least one redirect URI."))
        )
    if app.algorithm == Application.HS256_ALGORITHM:
        errors.setdefault("algorithm", []).append(
            str(_("HS256 is not supported: cells-oidc signs every token with RS256."))
        )
    if app.authorization_grant_type in (Application.GRANT_IMPLICIT, Application.GRANT_PASSWORD):
        errors.setdefault("authorization_grant_type", []).append(
            str(_("This grant is forbidden by RFC 9700 §2.1.2 and §2.4; use the authorization code grant."))
        )
    if errors:
        raise ValidationError(errors)


class ClientPolicyManager(models.Manager["ClientPolicy"]):
    def get_by_natural_key(self, client_id: str) -> ClientPolicy:
        return self.get(application__client_id=client_id)


class ClientPolicy(models.Model):
    """What cells-oidc adds to a DOT application: its PKCE and confirmation policy.

    A client without a policy row gets the defaults (PKCE required, confirmation on).
    """

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="cells_policy",
        verbose_name=_("application"),
    )
    require_pkce = models.BooleanField(
        _("require PKCE"),
        default=True,
        help_text=_(
            "RFC 9700 §2.1.1: require an S256 code challenge on every authorization request. "
            "Turn off only for legacy public clients that cannot send one."
        ),
    )
    confirm_existing_session = models.BooleanField(
        _("confirm when already signed in"),
        default=True,
        help_text=_(
            "RFC 8252 §8.6: when the user already has a session, ask for a one-click "
            "'Continue as …' before sending a code to a public native client (another app on the "
            "device could have claimed its loopback port or custom scheme)."
        ),
    )
    allowed_scopes = models.TextField(
        _("allowed scopes"),
        blank=True,
        default="",
        help_text=_("Space-separated scopes this client may ask for; empty means every configured scope."),
    )
    allow_device_flow = models.BooleanField(
        _("allow the device flow"),
        default=False,
        help_text=_(
            "RFC 8628: the client may sign in on a device without a browser (a headless server) by "
            "showing a code the user enters at the verification page on another device."
        ),
    )

    # ---- client authentication at the token endpoint (RFC 7591 §2, RFC 7523 §2.2) ----
    token_endpoint_auth_method = models.CharField(
        _("client authentication"),
        max_length=32,
        blank=True,
        default="",
        choices=[
            ("", _("client secret, HTTP Basic or in the body (default)")),
            ("client_secret_basic", _("client secret, HTTP Basic only (client_secret_basic)")),
            ("client_secret_post", _("client secret, in the body only (client_secret_post)")),
            ("private_key_jwt", _("a JWT signed with the client's key (private_key_jwt)")),
        ],
        help_text=_(
            "How a confidential client proves itself at the token, revocation and introspection "
            "endpoints. private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9) needs the client's "
            "public keys below; its secret is then refused."
        ),
    )
    jwks = models.TextField(
        _("public keys (JWKS)"),
        blank=True,
        default="",
        help_text=_(
            'The client\'s public keys as a JWK Set ({"keys": [...]}), for private_key_jwt. '
            "RS256, ES256 or EdDSA keys; never a private key."
        ),
    )
    jwks_uri = models.CharField(
        _("public keys URL (jwks_uri)"),
        max_length=2000,
        blank=True,
        default="",
        help_text=_(
            "Where the client publishes its JWK Set instead (https; http only on a loopback host). "
            "Fetched when needed, cached, and fetched again for an unknown key id."
        ),
    )

    require_pushed_authorization_requests = models.BooleanField(
        _("require pushed authorization requests"),
        default=False,
        help_text=_(
            "RFC 9126 §5: the client must push its authorization requests to the PAR endpoint and "
            "send only the request_uri it got to the authorization endpoint."
        ),
    )
    require_dpop = models.BooleanField(
        _("require DPoP"),
        default=False,
        help_text=_(
            "RFC 9449: every token request of this client carries a DPoP proof, so its access tokens "
            "(and a public client's refresh tokens) are bound to the client's key. Off for Cells' clients."
        ),
    )

    allow_admin_scope = models.BooleanField(
        _("may ask for administrative powers"),
        default=False,
        help_text=_(
            "Let this client request the cells_oidc:admin scope, with which an administrator's token may "
            "act on other users' tokens. Off for third-party clients and for Cells' own clients."
        ),
    )
    allowed_resources = models.TextField(
        _("allowed resources"),
        blank=True,
        default="",
        help_text=_(
            "RFC 8707: space-separated resource indicators (API URLs) this client may request tokens "
            "for; they become the access token's audience. Empty: no resource parameter is accepted."
        ),
    )

    id_token_algorithm = models.CharField(
        _("ID token signing algorithm"),
        max_length=8,
        choices=SIGNING_ALGORITHM_CHOICES,
        default="RS256",
        help_text=_(
            "OpenID Connect Registration §2 (id_token_signed_response_alg): the algorithm of this "
            "client's ID tokens. RS256 unless the client's app is known to verify another; a current "
            "signing key of that algorithm must exist (manage.py cells_oidc_keys create)."
        ),
    )

    # ---- OpenID Connect Back-Channel Logout 1.0 §2.2 (docs/backchannel-logout.md) ----
    backchannel_logout_uri = models.CharField(
        _("back-channel logout URL"),
        max_length=2000,
        blank=True,
        default="",
        help_text=_(
            "OpenID Connect Back-Channel Logout §2.2: where a logout token is POSTed when a user's "
            "session with this client ends (logout, an ended session or sign-in). https (http only on "
            "a loopback host), no fragment. Empty: no back-channel logout."
        ),
    )
    backchannel_logout_session_required = models.BooleanField(
        _("back-channel logout needs the session id"),
        default=False,
        help_text=_(
            "OpenID Connect Back-Channel Logout §2.2: the client needs the sid claim in logout tokens "
            "(a sign-in without a browser session, such as the device flow, is then not announced)."
        ),
    )

    objects = ClientPolicyManager()

    class Meta:
        verbose_name = _("client policy")
        verbose_name_plural = _("client policies")

    def __str__(self) -> str:
        # The heading of the policy on the client's admin page: the client's name, else its id.
        if self.application_id is None:
            return str(_("new client"))
        return self.application.name or self.application.client_id

    def allowed_scope_set(self) -> frozenset[str] | None:
        """The scopes this client may request, or ``None`` when it is not restricted."""
        scopes = frozenset(self.allowed_scopes.split())
        return scopes or None

    def allowed_resource_set(self) -> frozenset[str]:
        """The RFC 8707 resource indicators this client may name (compared exactly); empty: none."""
        return frozenset((self.allowed_resources or "").split())

    def clean(self) -> None:
        if self.id_token_algorithm != "RS256":
            from cells_oidc.internal import keys

            if self.id_token_algorithm not in keys.id_token_algorithms():
                raise ValidationError(
                    {
                        "id_token_algorithm": _(
                            "No current signing key of this algorithm signs ID tokens; create one "
                            "first (manage.py cells_oidc_keys create --algorithm %(alg)s)."
                        )
                        % {"alg": self.id_token_algorithm}
                    }
                )
        # RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
        from cells_oidc.internal.validators import valid_resource_indicator

        bad = [
            value for value in (self.allowed_resources or "").split() if not valid_resource_indicator(value)
        ]
        if bad:
            raise ValidationError(
                {
                    "allowed_resources": _(
                        "Not a resource indicator (an absolute URI with a host, no fragment): %(values)s"
                    )
                    % {"values": ", ".join(bad[:5])}
                }
            )

        self._clean_client_authentication()
        if self.backchannel_logout_uri:
            from cells_oidc.internal.backchannel import logout_uri_error

            problem = logout_uri_error(self.backchannel_logout_uri)
            if problem:
                raise ValidationError(
                    {
                        "backchannel_logout_uri": _("Not a usable back-channel logout URL: %(reason)s.")
                        % {"reason": problem}
                    }
                )

    def _clean_client_authentication(self) -> None:
        from cells_oidc.internal import client_auth

        errors = client_auth.policy_errors(self)
        if errors:
            raise ValidationError(errors)

    def natural_key(self) -> tuple[str]:
        return (self.application.client_id,)

    natural_key.dependencies = ["oauth2_provider.application"]  # type: ignore[attr-defined]


def policy_for(application: Application) -> ClientPolicy:
    """The policy of ``application``, or an unsaved one holding the defaults."""
    try:
        return application.cells_policy  # type: ignore[attr-defined]
    except ClientPolicy.DoesNotExist:
        return ClientPolicy(application=application)


class InitialAccessToken(models.Model):
    """An initial access token (RFC 7591 §3): lets its bearer register a client when
    ``CELLS_OIDC_REGISTRATION`` is ``"initial_access_token"``. Shown once; only its SHA-256
    checksum is stored. Single use unless ``multi_use``."""

    token_checksum = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(_("starts with"), max_length=16, editable=False)
    label = models.CharField(_("label"), max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(_("expires"))
    multi_use = models.BooleanField(_("may register several clients"), default=False)
    uses = models.PositiveIntegerField(_("clients registered"), default=0)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("initial access token")
        verbose_name_plural = _("initial access tokens")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.label or 'no label'})"


class ClientRegistration(models.Model):
    """A client registered through the registration endpoint (RFC 7591) and the SHA-256 checksum
    of its registration access token (RFC 7592 §1), with which it reads, updates and deletes
    its registration."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="cells_registration",
    )
    access_token_checksum = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    initial_token = models.ForeignKey(
        InitialAccessToken,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="registrations",
        verbose_name=_("registered with"),
    )

    class Meta:
        verbose_name = _("dynamic client registration")
        verbose_name_plural = _("dynamic client registrations")

    def __str__(self) -> str:
        return f"registration of {self.application_id}"


class TokenFamilyQuerySet(models.QuerySet["TokenFamily"]):
    """The queries callers repeat about sign-ins."""

    def live(self) -> TokenFamilyQuerySet:
        """Sign-ins not revoked (their tokens may still have expired)."""
        return self.filter(revoked__isnull=True)

    def of_user(self, user: Any) -> TokenFamilyQuerySet:
        """The sign-ins of ``user``."""
        return self.filter(user=user)

    def for_code(self, code: str) -> TokenFamilyQuerySet:
        """The sign-in an authorization code was issued for (its SHA-256 checksum is stored)."""
        return self.filter(code_checksum=checksum(code))


class TokenFamily(models.Model):
    """One sign-in of a user to a client: the authorization code and every token derived from it.

    Its id is DOT's ``RefreshToken.token_family``. It remembers what the ID tokens of later
    refreshes must repeat (``auth_time``, ``sid``) and lets a replayed authorization code revoke
    every token issued from it (RFC 6749 §4.1.2).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="cells_token_families"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cells_token_families"
    )
    code_checksum = models.CharField(max_length=64, unique=True, null=True, blank=True)
    sid = models.CharField(_("session id"), max_length=64, blank=True, db_index=True)
    auth_time = models.DateTimeField(_("authenticated at"))
    created = models.DateTimeField(auto_now_add=True)
    redeemed = models.DateTimeField(_("code redeemed at"), null=True, blank=True)
    # The access token of a sign-in that got no refresh token (no offline scope): DOT reaches a
    # family's access tokens through its refresh tokens only.
    access_token = models.OneToOneField(
        oauth2_settings.ACCESS_TOKEN_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cells_token_family",
    )
    revoked = models.DateTimeField(null=True, blank=True)
    # RFC 6749 §6: the scope granted at sign-in. A refresh may narrow one access token, never the
    # grant: later refreshes may ask again for anything within this scope.
    scope = models.TextField(_("scope"), blank=True, default="")
    # RFC 6749 §4.1.3: the redirect_uri the authorization request named ("" when it named none),
    # which the code exchange must then repeat.
    redirect_uri = models.TextField(_("redirect URI of the request"), blank=True, default="")
    #: RFC 9449 §5: the RFC 7638 thumbprint of the DPoP key the refresh tokens of a public client's
    #: sign-in are bound to ("" when they are not bound).
    dpop_jkt = models.CharField(_("DPoP key thumbprint"), max_length=64, blank=True, default="")

    objects = TokenFamilyQuerySet.as_manager()

    class Meta:
        verbose_name = _("token family")
        verbose_name_plural = _("token families")

    def __str__(self) -> str:
        return f"token family {self.id}"

    def revoke(self) -> None:
        """Revoke every refresh and access token of the family."""
        revoke_families([self.pk])


def revoke_families(family_ids: list[Any]) -> None:
    """Revoke every token of the given families, set-based.

    DOT's ``RefreshToken.revoke_family`` revokes the refresh tokens and deletes the access tokens
    they point to; the access token of a sign-in that got no refresh token is reached through
    :attr:`TokenFamily.access_token`. Deleting access tokens fires ``post_delete``, which puts
    them on the resource servers' deny-list (:mod:`cells_oidc.internal.revocation`).
    """
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    refresh_model = get_refresh_token_model()
    families = TokenFamily.objects.filter(pk__in=family_ids)
    with transaction.atomic():
        # The families' rows first, then their tokens: the lock order of the token endpoint
        # (docs/security.md, "Exactly once"), so a concurrent refresh cannot deadlock with this.
        list(families.select_for_update().order_by("pk").values_list("pk", flat=True))
        for family_id in family_ids:
            refresh_model.revoke_family(family_id)
        get_access_token_model().objects.filter(
            pk__in=families.exclude(access_token=None).values("access_token_id")
        ).delete()
        families.filter(revoked__isnull=True).update(revoked=timezone.now())


def validate_registration_on_save(
    sender: Any, instance: Application, raw: bool = False, **kwargs: Any
) -> None:
    """``pre_save`` of DOT's application: refuse a malformed registration from any path.

    The admin and forms show these errors next to the field; this guard also covers
    ``loaddata``, management commands and code that saves without ``full_clean()``.
    """
    errors = registration_errors(instance)
    if errors:
        raise ValidationError(errors)


#: Personal tokens whose minting sign-in is not revoked (or that no sign-in minted).
SIGN_IN_LIVE = models.Q(token_family__isnull=True) | models.Q(token_family__revoked__isnull=True)


class PersonalAccessTokenQuerySet(models.QuerySet["PersonalAccessToken"]):
    """The queries callers repeat about personal access tokens."""

    def live(self) -> PersonalAccessTokenQuerySet:
        """Tokens neither revoked nor expired, nor minted by a sign-in since revoked; their
        sign-in is loaded in the same query."""
        now = timezone.now()
        return (
            self.filter(revoked__isnull=True, expires__gt=now)
            .filter(models.Q(max_expires__isnull=True) | models.Q(max_expires__gt=now))
            .filter(SIGN_IN_LIVE)
            .select_related("token_family")
        )

    def of_user(self, user: Any) -> PersonalAccessTokenQuerySet:
        """The tokens of ``user``."""
        return self.filter(user=user)


class PersonalAccessToken(models.Model):
    """A personal access token (Cells' ``admin user token``): a long random secret shown once.

    Only its SHA-256 checksum is stored. Two expiry modes as in Cells: a fixed ``expires``, or an
    auto-refresh window (``auto_refresh_seconds``) that pushes ``expires`` forward on every use,
    never beyond ``max_expires``.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cells_personal_tokens"
    )
    label = models.CharField(_("label"), max_length=100, blank=True)
    token_checksum = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(_("starts with"), max_length=16, editable=False)
    scope = models.TextField(_("scope"), blank=True)
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    expires = models.DateTimeField(_("expires"))
    auto_refresh_seconds = models.PositiveIntegerField(
        _("auto-refresh window (seconds)"), null=True, blank=True
    )
    max_expires = models.DateTimeField(_("never valid after"), null=True, blank=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    # The sign-in whose (delegated) access token minted this token: revoking that sign-in revokes
    # this token too. Empty for tokens minted by an administrator, a command or the account page.
    token_family = models.ForeignKey(
        TokenFamily,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="personal_tokens",
        verbose_name=_("minted through sign-in"),
    )

    objects = PersonalAccessTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("personal access token")
        verbose_name_plural = _("personal access tokens")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.label or 'no label'})"


class Consent(models.Model):
    """A user's remembered consent to a client for a set of scopes (until ``expires``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cells_consents"
    )
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="cells_consents"
    )
    scope = models.TextField(_("scope"))
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(_("expires"))

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "application"], name="cells_oidc_consent_unique_user_client"
            )
        ]

    def __str__(self) -> str:
        return f"consent of {self.user_id} to {self.application_id}"


class UserSession(models.Model):
    """A browser session of a user at the provider, so that users can see and end their sessions."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cells_sessions"
    )
    session_key = models.CharField(max_length=64, unique=True)
    sid = models.CharField(max_length=64, db_index=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("user session")
        verbose_name_plural = _("user sessions")

    def __str__(self) -> str:
        return f"session {self.sid[:8]} of {self.user_id}"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """The queries callers repeat about the audit trail."""

    def expired(self, now: Any = None) -> AuditEventQuerySet:
        """Events older than ``CELLS_OIDC_AUDIT_RETENTION_DAYS`` at ``now`` (default: now), which
        ``cells_oidc_cleanup`` deletes; none when the retention is 0 (kept for ever)."""
        from datetime import timedelta

        from cells_oidc.conf import app_settings

        days = app_settings.AUDIT_RETENTION_DAYS
        if not days:
            return self.none()
        return self.filter(time__lt=(now or timezone.now()) - timedelta(days=days))

    def sign_ins_of(self, user: Any) -> AuditEventQuerySet:
        """``user``'s sign-ins and failed attempts at their login, newest first."""
        return self.filter(user=user, event__in=("sign_in_succeeded", "sign_in_failed")).order_by("-time")


class AuditEvent(models.Model):
    """One entry of the audit trail: a signal of :mod:`cells_oidc.signals`, as it happened.

    Written by :mod:`cells_oidc.internal.audit` after the event committed. The user and the client
    are kept as snapshots (``login``, ``client_id``) that survive their deletion. Never a token, a
    code, a secret or a password (docs/audit.md).
    """

    time = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    event = models.CharField(_("event"), max_length=40, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cells_audit_events",
        verbose_name=_("user"),
    )
    login = models.CharField(_("login"), max_length=150, blank=True)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cells_audit_events",
        verbose_name=_("client"),
    )
    client_id = models.CharField(_("client id"), max_length=100, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-time", "-pk"]

    def __str__(self) -> str:
        return f"{self.event} {self.login or '-'} {self.client_id or '-'} at {self.time:%Y-%m-%d %H:%M:%S}"


class SigningKeyQuerySet(models.QuerySet["SigningKey"]):
    """The queries callers repeat about signing keys."""

    def unrevoked(self) -> SigningKeyQuerySet:
        """Keys not revoked (a retired key is published until its tokens have expired)."""
        return self.exclude(state=SigningKey.State.REVOKED)

    def ring(self, algorithm: str, use: str) -> SigningKeyQuerySet:
        """The keys of one algorithm and use, which rotate together."""
        return self.filter(algorithm=algorithm, use=use)


class SigningKey(models.Model):
    """A key that signs ID tokens and JWT access tokens (docs/keys.md).

    Its life: ``next`` (published in the JWKS so that clients learn it, not yet signing) →
    ``current`` (signing) → ``retired`` (published until every token it signed has expired) or
    ``revoked`` (withdrawn at once: its tokens fail everywhere). The private key is stored only
    encrypted with the key-encryption key of ``CELLS_OIDC_KEY_ENCRYPTION_KEY`` (Fernet): a database
    dump alone yields no signing key. ``kid`` is the RFC 7638 thumbprint of the public key.
    """

    class State(models.TextChoices):
        NEXT = "next", _("next (published, not signing yet)")
        CURRENT = "current", _("current (signing)")
        RETIRED = "retired", _("retired (published until its tokens expire)")
        REVOKED = "revoked", _("revoked")

    class Use(models.TextChoices):
        BOTH = "both", _("ID tokens and access tokens")
        ID_TOKEN = "id_token", _("ID tokens")
        ACCESS_TOKEN = "access_token", _("access tokens")

    kid = models.CharField(_("key id"), max_length=128, unique=True, editable=False)
    algorithm = models.CharField(
        _("algorithm"), max_length=8, choices=SIGNING_ALGORITHM_CHOICES, editable=False
    )
    use = models.CharField(_("signs"), max_length=16, choices=Use.choices, default=Use.BOTH, editable=False)
    state = models.CharField(
        _("state"), max_length=8, choices=State.choices, default=State.NEXT, db_index=True, editable=False
    )
    #: The public JWK (RFC 7517 §4) as published, without private members.
    public_jwk = models.JSONField(_("public key"), editable=False)
    #: The private key (PKCS#8 PEM) encrypted with the key-encryption key (a Fernet token).
    encrypted_private_key = models.TextField(editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    activated_at = models.DateTimeField(_("signing since"), null=True, blank=True, editable=False)
    retired_at = models.DateTimeField(_("retired"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    objects = SigningKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("signing key")
        verbose_name_plural = _("signing keys")
        ordering = ["-created_at"]
        constraints = [
            # One key signs per algorithm and use; one waits to. Two rotations racing (cron on two
            # machines) cannot both promote.
            models.UniqueConstraint(
                fields=["algorithm", "use"],
                condition=models.Q(state="current"),
                name="cells_oidc_signingkey_one_current",
            ),
            models.UniqueConstraint(
                fields=["algorithm", "use"],
                condition=models.Q(state="next"),
                name="cells_oidc_signingkey_one_next",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} key {self.kid} ({self.state})"


class ClientSecretQuerySet(models.QuerySet["ClientSecret"]):
    def live(self, now: Any = None) -> ClientSecretQuerySet:
        """Secrets that still authenticate: no expiry, or one in the future."""
        now = now or timezone.now()
        return self.filter(models.Q(expires__isnull=True) | models.Q(expires__gt=now))


class ClientSecret(models.Model):
    """A secret of a confidential client, stored as a fast hash (:mod:`cells_oidc.internal.client_secrets`).

    A client may hold several during a rotation: the new one, and the old one until ``expires``
    (the overlap). Only ``digest`` is stored: ``sha256$<hex>`` of a 256-bit random secret, or, for a
    secret carried over from DOT's ``client_secret`` column, DOT's password-hasher form, upgraded to
    the fast form on its first successful use.
    """

    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="cells_secrets",
        verbose_name=_("client"),
    )
    digest = models.CharField(max_length=255, editable=False)
    hint = models.CharField(_("starts with"), max_length=8, blank=True, editable=False)
    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires = models.DateTimeField(_("valid until"), null=True, blank=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)

    objects = ClientSecretQuerySet.as_manager()

    class Meta:
        verbose_name = _("client secret")
        verbose_name_plural = _("client secrets")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"secret {self.hint or '…'}… of {self.application_id}"


class LogoutDeliveryQuerySet(models.QuerySet["LogoutDelivery"]):
    """The queries callers repeat about back-channel logout deliveries."""

    def pending(self) -> LogoutDeliveryQuerySet:
        """Deliveries neither made nor given up."""
        return self.filter(delivered_at__isnull=True, next_attempt__isnull=False)

    def due(self, now: Any = None) -> LogoutDeliveryQuerySet:
        """Pending deliveries whose next attempt is now or past, oldest first."""
        return self.pending().filter(next_attempt__lte=now or timezone.now()).order_by("next_attempt", "pk")

    def failed(self) -> LogoutDeliveryQuerySet:
        """Deliveries given up after ``CELLS_OIDC_BACKCHANNEL_MAX_ATTEMPTS`` attempts."""
        return self.filter(delivered_at__isnull=True, next_attempt__isnull=True)


class LogoutDelivery(models.Model):
    """One logout token to deliver to a client's ``backchannel_logout_uri`` (OpenID Connect
    Back-Channel Logout 1.0 §2.5), queued when a session ends and sent by
    ``manage.py cells_oidc_deliver_logouts`` (:mod:`cells_oidc.internal.backchannel`).

    The token itself is not stored: what it says (client, ``sub``, ``sid``) is, and each attempt
    signs a fresh one. ``next_attempt`` is empty once delivered or given up.
    """

    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="cells_logout_deliveries",
        verbose_name=_("client"),
    )
    sid = models.CharField(_("session id"), max_length=64, blank=True, db_index=True)
    sub = models.CharField(_("subject"), max_length=255, blank=True)
    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt = models.DateTimeField(_("next attempt"), null=True, blank=True, db_index=True)
    last_attempt = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_status = models.PositiveIntegerField(_("last HTTP status"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)

    objects = LogoutDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("back-channel logout delivery")
        verbose_name_plural = _("back-channel logout deliveries")
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"logout of {self.sid[:8] or self.sub} to {self.application_id}"
