"""The Django admin for clients: DOT's application and cells-oidc's policy on one page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from cells_oidc.models import (
    AuditEvent,
    Client,
    ClientPolicy,
    ClientSecret,
    Consent,
    LogoutDelivery,
    PersonalAccessToken,
    SigningKey,
    TokenFamily,
)

URI_HELP = _(
    "One per line. Matched exactly (RFC 9700 §2.1), except: a port range in the port position for "
    "loopback hosts, e.g. http://localhost:[3636-3666]/servers/callback; the host serverName, which "
    "stands for this site's public host (http://serverName/oauth2/oob); custom schemes such as "
    "cellsauth://callback. http is only allowed for loopback hosts and serverName."
)


class ProviderModelAdmin(admin.ModelAdmin):
    """The base of the provider's admin pages: two hand-made query strings Django's admin answers
    with a 500 are a plain refusal here.

    - ``_to_field=`` (empty) on a change or delete page: Django looks up a field named ``""``
      (``FieldDoesNotExist``); empty means none, the primary key.
    - A ``date_hierarchy`` year past what C's ``long`` holds (``?time__year=99999999999999999999``):
      ``OverflowError`` while the list is built; answered as Django answers any bad lookup
      (``IncorrectLookupParameters``: back to the list with ``?e=1``).
    """

    def get_object(self, request: Any, object_id: str, from_field: str | None = None) -> Any:
        return super().get_object(request, object_id, from_field or None)

    def get_changelist_instance(self, request: Any) -> Any:
        try:
            return super().get_changelist_instance(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc


class LinesTextarea(forms.Textarea):
    """Shows a space-separated list one item per line (and accepts either)."""

    def format_value(self, value: Any) -> str:
        return "\n".join(str(value or "").split())


class ClientForm(forms.ModelForm):
    class Meta:
        model = Client
        fields = [
            "name",
            "client_id",
            "client_type",
            "authorization_grant_type",
            "client_secret",
            "hash_client_secret",
            "redirect_uris",
            "post_logout_redirect_uris",
            "allowed_origins",
            "skip_authorization",
            "user",
        ]
        widgets = {
            "redirect_uris": LinesTextarea(attrs={"rows": 6, "cols": 80}),
            "post_logout_redirect_uris": LinesTextarea(attrs={"rows": 3, "cols": 80}),
            "allowed_origins": LinesTextarea(attrs={"rows": 3, "cols": 80}),
        }
        help_texts = {
            "redirect_uris": URI_HELP,
            "post_logout_redirect_uris": URI_HELP,
            "allowed_origins": _(
                "Origins (scheme://host[:port], no path) whose JavaScript may call the token, "
                "userinfo and revocation endpoints; port ranges and serverName as above."
            ),
            "skip_authorization": _(
                "First-party client: no consent screen (public native clients still get the "
                "one-click confirmation when the user already had a session, see the policy below)."
            ),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for field in ("redirect_uris", "post_logout_redirect_uris", "allowed_origins"):
            if isinstance(data.get(field), str):
                data[field] = " ".join(data[field].split())
        return data


class ClientPolicyInline(admin.StackedInline):
    model = ClientPolicy
    can_delete = False
    max_num = 1
    min_num = 1
    # The inline's heading reads "Policy: <client name>" (ClientPolicy.__str__).
    verbose_name = _("policy")
    verbose_name_plural = _("policy")
    fields = (
        "require_pkce",
        "confirm_existing_session",
        "allowed_scopes",
        "allow_device_flow",
        # RFC 9126 §5 and RFC 9449: docs/par.md, docs/dpop.md.
        "require_pushed_authorization_requests",
        "require_dpop",
        # Administrative powers (cells_oidc:admin) and RFC 8707 resources: see docs/api.md.
        "allow_admin_scope",
        "allowed_resources",
        # Client authentication at the token endpoint (RFC 7591 §2, RFC 7523 §2.2): see
        # docs/service-accounts.md.
        "token_endpoint_auth_method",
        "jwks",
        "jwks_uri",
        # OpenID Connect Registration §2 id_token_signed_response_alg: docs/keys.md.
        "id_token_algorithm",
        # OpenID Connect Back-Channel Logout 1.0 §2.2: docs/backchannel-logout.md.
        "backchannel_logout_uri",
        "backchannel_logout_session_required",
    )


#: Fields that only mean something for a confidential client (RFC 6749 §2.1: a public client has
#: no credentials), hidden on the page of a public one.
SECRET_FIELDS = ("client_secret", "hash_client_secret")


class ClientSecretInline(admin.TabularInline):
    """The client's secrets (cells_oidc.internal.client_secrets): when made, until when, last use.
    Never the secret, nor its hash; new ones come from ``cells_oidc_client rotate-secret``."""

    model = ClientSecret
    extra = 0
    can_delete = False
    fields = ("hint", "created", "expires", "last_used")
    readonly_fields = fields
    verbose_name_plural = _("secrets (rotate with manage.py cells_oidc_client rotate-secret)")

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(ProviderModelAdmin):
    form = ClientForm
    inlines = [ClientPolicyInline, ClientSecretInline]
    list_display = ("client_id", "name", "client_type", "authorization_grant_type", "skip_authorization")
    list_filter = ("client_type", "authorization_grant_type", "skip_authorization")
    search_fields = ("client_id", "name")
    ordering = ("client_id",)
    # DOT's Application.get_absolute_url names DOT's own management views (namespace
    # "oauth2_provider"), which cells-oidc does not mount: the client has no page on the site.
    view_on_site = False

    def get_fields(self, request: Any, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.client_type == Client.CLIENT_PUBLIC:
            # Left out of the form, the stored values are kept as they are.
            fields = [name for name in fields if name not in SECRET_FIELDS]
        return fields

    def get_inline_instances(self, request: Any, obj: Any = None) -> list[Any]:
        inlines = super().get_inline_instances(request, obj)
        if obj is None or obj.client_type == Client.CLIENT_PUBLIC:
            # RFC 6749 §2.1: a public client has no secret to list.
            inlines = [inline for inline in inlines if not isinstance(inline, ClientSecretInline)]
        return inlines

    def change_view(
        self, request: Any, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        """The change page, with the "test a redirect URI" box (admin/cells_oidc/client/change_form.html)."""
        extra_context = dict(extra_context or {})
        client = self.get_object(request, object_id)
        if client is not None and request.method == "GET":
            extra_context["redirect_tester"] = redirect_tester(request, client)
        return super().change_view(request, object_id, form_url, extra_context)


def redirect_tester(request: Any, client: Any) -> dict[str, Any]:
    """What the tester box shows: the URI tried and :func:`cells_oidc.internal.redirects.explain`'s
    verdict and reason against the client's saved redirect URIs, in the reader's language."""
    from django.utils.translation import gettext

    from cells_oidc.conf import app_settings
    from cells_oidc.internal import redirects

    uri = request.GET.get("test_redirect_uri", "")
    keep = [(name, value) for name, value in request.GET.items() if name == "_changelist_filters"]
    tester: dict[str, Any] = {"uri": uri[: redirects.MAX_URI_LENGTH + 1], "keep": keep, "result": None}
    if "test_redirect_uri" in request.GET:
        result = redirects.explain(uri, client.redirect_uris or "", app_settings.SITE_URLS)
        tester["result"] = result
        tester["message"] = result.message(gettext)
    return tester


@admin.register(TokenFamily)
class TokenFamilyAdmin(ProviderModelAdmin):
    list_display = ("id", "application", "user", "auth_time", "redeemed", "revoked")
    list_filter = ("application", ("revoked", admin.EmptyFieldListFilter), "auth_time")
    # By user (login or e-mail) and by client (id or name); the code is stored as a checksum only.
    search_fields = ("user__username", "user__email", "application__client_id", "application__name")
    list_select_related = ("user", "application")
    readonly_fields = [f.name for f in TokenFamily._meta.fields]
    actions = ["revoke_selected"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description=_("Revoke every token of the selected sign-ins"))
    def revoke_selected(self, request: Any, queryset: Any) -> None:
        from cells_oidc import signals
        from cells_oidc.internal.events import emit

        for family in queryset.select_related("user", "application"):
            if family.revoked is None:
                family.revoke()
                emit(
                    signals.token_revoked,
                    request=request,
                    user=family.user,
                    client=family.application,
                    kind="sign_in",
                    family_id=family.pk,
                    reason="admin",
                )
                from cells_oidc.internal import backchannel

                backchannel.sign_in_ended(family)  # Back-Channel Logout §2.5


# DOT's own admins (docs/admin.md). Its application admin would validate redirect URIs with DOT's
# rules: the client admin above replaces it. Its token admins would let a staff member edit or delete
# a stored token as a row: deleting an access token's row does not revoke the JWT, which APIs verify
# locally (RFC 7009 §2 needs the deny-list), and editing one rewrites a credential. Sign-ins are
# revoked as a whole under "Token families" instead (TokenFamily.revoke()).
for _model in (
    get_application_model(),
    get_access_token_model(),
    get_refresh_token_model(),
    get_grant_model(),
    get_id_token_model(),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class ReadOnlyAdmin(ProviderModelAdmin):
    """Listed and searchable, never added, edited or deleted here: each such model has its own path
    (the consent page, the account page, ``cells_oidc_keys``, ``cells_oidc_cleanup``,
    ``cells_oidc_deliver_logouts``). Issued tokens are reached through their sign-in ("Token families")."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    """Remembered consents. Read-only; deleting one withdraws it (the user is asked again)."""

    list_display = ("user", "application", "scope", "created", "expires")
    list_filter = ("application", "expires")
    search_fields = ("user__username", "user__email", "application__client_id", "application__name")
    list_select_related = ("user", "application")
    fields = ("user", "application", "scope", "created", "expires")
    readonly_fields = fields

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


# ---- personal access tokens ------------------------------------------------------------------
PAT_CREATED_PAGE = """{% extends "admin/base_site.html" %}{% load i18n %}
{% block content %}<div id="content-main">
<p>{% blocktranslate with user=token.user %}
The new personal access token of {{ user }}:{% endblocktranslate %}</p>
<p><input type="text" readonly size="60" value="{{ secret }}" aria-label="{% translate "token" %}"
  class="vTextField" autocomplete="off" spellcheck="false"></p>
<p><strong>{% translate "Copy it now: only its checksum is stored, it cannot be shown again." %}</strong></p>
<p>{% translate "Scope:" %} {{ token.scope }}<br>{% translate "Expires:" %} {{ token.expires }}
{% if token.auto_refresh_seconds %}({% blocktranslate with s=token.auto_refresh_seconds %}pushed {{ s }} s
forward on every use, never after{% endblocktranslate %} {{ token.max_expires }}){% endif %}</p>
<p><a href="{{ changelist }}">{% translate "Back to the personal access tokens" %}</a></p>
</div>{% endblock %}"""


class PersonalTokenMintForm(forms.ModelForm):
    """Mint a token: its owner, what it may do and how it expires (the secret is generated)."""

    MODES = [("fixed", _("fixed expiry")), ("auto", _("auto-refresh window"))]
    mode = forms.ChoiceField(label=_("expiry mode"), choices=MODES, initial="fixed", widget=forms.RadioSelect)
    duration = forms.CharField(
        label=_("duration"),
        initial="30d",
        help_text=_(
            "Fixed expiry: valid for this long (e.g. 24h, 30d). Auto-refresh: expires after this long "
            "without use, every use pushes the expiry forward (e.g. 10m)."
        ),
    )
    max_lifetime = forms.CharField(
        label=_("maximum lifetime"),
        required=False,
        help_text=_("Auto-refresh only: never valid longer than this after creation (default: the limit)."),
    )

    class Meta:
        model = PersonalAccessToken
        fields = ["user", "label", "scope"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from cells_oidc.conf import app_settings

        self.fields["scope"].initial = app_settings.PAT_DEFAULT_SCOPE
        self.fields["scope"].required = False
        self.fields["scope"].widget = forms.TextInput(attrs={"size": 60})
        self.fields["scope"].help_text = _("Space-separated; empty means the default scopes.")

    def request_arguments(self) -> dict[str, Any]:
        from cells_oidc.internal import pat

        data = self.cleaned_data
        duration = pat.parse_duration(data.get("duration") or "")
        max_lifetime = pat.parse_duration(data["max_lifetime"]) if data.get("max_lifetime") else None
        auto = data.get("mode") == "auto"
        return {
            "expires_in": None if auto else duration,
            "auto_refresh": duration if auto else None,
            "max_lifetime": max_lifetime,
            "scope": data.get("scope") or None,
            "label": data.get("label") or "",
        }

    def clean(self) -> dict[str, Any]:
        from cells_oidc.internal import pat

        data = super().clean()
        if self.errors or not data.get("user"):
            return data
        try:
            pat.plan(data["user"], **self.request_arguments())
        except pat.PersonalTokenError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(ProviderModelAdmin):
    """Lists tokens (never secrets), revokes them, and mints new ones showing the secret once."""

    list_display = ("hint", "user", "label", "scope", "created", "last_used", "expires", "token_status")
    list_filter = ("created", "expires", "revoked")
    search_fields = ("user__username", "label", "hint")
    list_select_related = ("user", "token_family")
    raw_id_fields = ("user",)
    actions = ["revoke_selected"]
    readonly_fields = (
        "user",
        "hint",
        "scope",
        "created",
        "created_by",
        "expires",
        "auto_refresh_seconds",
        "max_expires",
        "last_used",
        "revoked",
        "token_family",
    )

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = PersonalTokenMintForm
            kwargs["fields"] = ["user", "label", "scope", "mode", "duration", "max_lifetime"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: Any, obj: Any = None) -> Any:
        if obj is None:
            return ["user", "label", "scope", "mode", "duration", "max_lifetime"]
        return ["label", *self.readonly_fields]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    @admin.display(description=_("status"))
    def token_status(self, obj: Any) -> str:
        from cells_oidc.internal import pat

        return pat.status(obj)

    def save_form(self, request: Any, form: Any, change: bool) -> Any:
        if change:
            return super().save_form(request, form, change)
        from cells_oidc.internal import pat

        minted = pat.mint(form.cleaned_data["user"], created_by=request.user, **form.request_arguments())
        request._cells_oidc_pat_secret = minted.secret
        return minted.token

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        if change:  # a new token was stored by save_form
            super().save_model(request, obj, form, change)

    def save_related(self, request: Any, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    def response_add(self, request: Any, obj: Any, post_url_continue: Any = None) -> Any:
        from django.http import HttpResponse
        from django.template import Engine, RequestContext
        from django.urls import reverse

        secret = getattr(request, "_cells_oidc_pat_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Personal access token created"),
            "token": obj,
            "secret": secret,
            "changelist": reverse(f"{self.admin_site.name}:cells_oidc_personalaccesstoken_changelist"),
        }
        page = Engine.get_default().from_string(PAT_CREATED_PAGE)
        response = HttpResponse(page.render(RequestContext(request, context)))
        # The only place the secret ever appears: never cached, never sent on as a Referer.
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    @admin.action(description=_("Revoke the selected personal access tokens"), permissions=["change"])
    def revoke_selected(self, request: Any, queryset: Any) -> None:
        from cells_oidc.internal import pat

        count = sum(1 for token in queryset if pat.revoke(token, revoked_by=request.user))
        self.message_user(request, _("%(count)d token(s) revoked.") % {"count": count})


# ---- sign-in locks (cells_oidc.internal.throttle): an action on the site's user admin -------------
@admin.action(description=_("Unlock sign-in (clear too many failed passwords)"), permissions=["change"])
def unlock_sign_in(modeladmin: Any, request: Any, queryset: Any) -> None:
    from cells_oidc.internal import throttle
    from cells_oidc.management.commands.cells_oidc_unlock import logins_of

    users = list(queryset)
    throttle.unlock(logins=[login for user in users for login in logins_of(user)])
    modeladmin.message_user(request, _("Sign-in unlocked for %(count)d user(s).") % {"count": len(users)})


def _add_unlock_action() -> None:
    from django.contrib.auth import get_user_model

    user_admin = admin.site._registry.get(get_user_model())
    if user_admin is not None and unlock_sign_in not in (user_admin.actions or []):
        user_admin.actions = [*(user_admin.actions or []), unlock_sign_in]


_add_unlock_action()


# ---- the audit trail (docs/audit.md): read-only -------------------------------------------------
@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail, as written: listed, filtered and searched, never added, edited or deleted
    here (``cells_oidc_cleanup`` deletes entries past ``CELLS_OIDC_AUDIT_RETENTION_DAYS``)."""

    list_display = ("time", "event", "login", "client_id", "ip", "browser", "request_id")
    list_filter = ("event", ("application", admin.RelatedOnlyFieldListFilter))
    date_hierarchy = "time"
    search_fields = ("login", "client_id", "ip", "request_id")
    fields = (
        "time",
        "event",
        "user",
        "login",
        "application",
        "client_id",
        "ip",
        "user_agent",
        "request_id",
        "details_text",
    )
    readonly_fields = fields
    list_per_page = 50
    show_full_result_count = False  # a COUNT(*) of a large table on every page is slow

    @admin.display(description=_("browser"))
    def browser(self, obj: AuditEvent) -> str:
        from cells_oidc.internal.sessions import describe_user_agent

        return describe_user_agent(obj.user_agent) if obj.user_agent else "-"

    @admin.display(description=_("details"))
    def details_text(self, obj: AuditEvent) -> str:
        import json

        return json.dumps(obj.details, indent=1, sort_keys=True, ensure_ascii=False)


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    """The signing keys, read-only (docs/keys.md): changed only by ``manage.py cells_oidc_keys``,
    which publishes a key before it signs and tells every process. The private key, even
    encrypted, is never shown."""

    list_display = (
        "kid",
        "algorithm",
        "use",
        "state",
        "created_at",
        "activated_at",
        "retired_at",
        "revoked_at",
    )
    list_filter = ("state", "algorithm", "use")
    search_fields = ("kid",)
    fields = (
        "kid",
        "algorithm",
        "use",
        "state",
        "created_at",
        "activated_at",
        "retired_at",
        "revoked_at",
        "public_key",
    )
    readonly_fields = fields

    @admin.display(description=_("public key (JWK)"))
    def public_key(self, obj: SigningKey) -> str:
        import json

        return json.dumps(obj.public_jwk, indent=1, sort_keys=True)


@admin.register(LogoutDelivery)
class LogoutDeliveryAdmin(ReadOnlyAdmin):
    """The back-channel logout deliveries (docs/backchannel-logout.md), read-only: queued when a
    session ends, sent and retried by ``manage.py cells_oidc_deliver_logouts``."""

    list_display = ("created", "application", "sid", "attempts", "last_status", "delivered_at", "error")
    list_filter = (
        ("application", admin.RelatedOnlyFieldListFilter),
        ("delivered_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("application__client_id", "sid", "sub")
    date_hierarchy = "created"
    fields = (
        "application",
        "sid",
        "sub",
        "created",
        "attempts",
        "last_attempt",
        "last_status",
        "next_attempt",
        "delivered_at",
        "error",
    )
    readonly_fields = fields
