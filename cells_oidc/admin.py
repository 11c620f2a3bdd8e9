"""The Django admin for clients: DOT's application and cells-oidc's policy on one page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import get_application_model

from .models import Client, ClientPolicy, TokenFamily

URI_HELP = _(
    "One per line. Matched exactly (RFC 9700 §2.1), except: a port range in the port position for "
    "loopback hosts, e.g. http://localhost:[3636-3666]/servers/callback; the host serverName, which "
    "stands for this site's public host (http://serverName/oauth2/oob); custom schemes such as "
    "cellsauth://callback. http is only allowed for loopback hosts and serverName."
)


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
    verbose_name_plural = _("policy")


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    form = ClientForm
    inlines = [ClientPolicyInline]
    list_display = ("client_id", "name", "client_type", "authorization_grant_type", "skip_authorization")
    list_filter = ("client_type", "authorization_grant_type", "skip_authorization")
    search_fields = ("client_id", "name")
    ordering = ("client_id",)


@admin.register(TokenFamily)
class TokenFamilyAdmin(admin.ModelAdmin):
    list_display = ("id", "application", "user", "auth_time", "redeemed", "revoked")
    list_filter = ("application",)
    search_fields = ("user__username", "application__client_id")
    readonly_fields = [f.name for f in TokenFamily._meta.fields]
    actions = ["revoke_selected"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description=_("Revoke every token of the selected sign-ins"))
    def revoke_selected(self, request: Any, queryset: Any) -> None:
        for family in queryset:
            family.revoke()


# DOT's own application admin would validate redirect URIs with DOT's rules; this one replaces it.
_application = get_application_model()
if admin.site.is_registered(_application):
    admin.site.unregister(_application)
