"""URLs of cells-oidc.

One ``include()`` mounts everything a site needs::

    path("", include("cells_oidc.urls"))            # the provider at oidc/, the OOB page at the root

or, under another prefix::

    from cells_oidc.urls import mount
    path("", include(mount("sso/")))

The out-of-band page of ``cec`` is served at the site root (``/oauth2/oob`` and ``/oauth/oob``)
because that is where the Cells clients look for it.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, re_path

from cells_oidc.internal import pages
from cells_oidc.internal.views import (
    account,
    authorize,
    device,
    discovery,
    health,
    oob,
    registration,
    session,
    token,
)
from cells_oidc.internal.views import par as par_views

__all__ = ["app_name", "mount", "provider_urlpatterns", "site_urlpatterns", "urlpatterns"]

app_name = "cells_oidc"

#: The provider's endpoints, relative to the mount (paths as Cells serves them).
provider_urlpatterns: list[URLPattern | URLResolver] = [
    path("", discovery.IssuerView.as_view(), name="issuer"),
    # OpenID Connect Discovery §4: no trailing slash.
    re_path(r"^\.well-known/openid-configuration/?$", discovery.DiscoveryView.as_view(), name="discovery"),
    path(".well-known/jwks.json", discovery.JwksView.as_view(), name="jwks"),
    path("oauth2/auth", authorize.AuthorizationView.as_view(), name="authorize"),
    path("oauth2/token", token.TokenView.as_view(), name="token"),
    path("oauth2/revoke", token.RevokeView.as_view(), name="revoke"),
    path("oauth2/introspect", token.IntrospectView.as_view(), name="introspect"),
    path("oauth2/par", par_views.PushedAuthorizationView.as_view(), name="par"),  # RFC 9126 §2
    path("oauth2/sessions/logout", session.LogoutView.as_view(), name="logout"),
    path("userinfo", token.UserInfoView.as_view(), name="userinfo"),
    # RFC 7591 §3 and RFC 7592 §2 (404 unless CELLS_OIDC_REGISTRATION turns them on).
    path("oauth2/register", registration.RegisterView.as_view(), name="register"),
    path(
        "oauth2/register/<str:client_id>",
        registration.ClientConfigurationView.as_view(),
        name="register-client",
    ),
    path("login/", session.LoginView.as_view(), name="login"),
    path("logged-out/", session.LoggedOutView.as_view(), name="logged-out"),
    # RFC 8628: the device authorization endpoint and the (short) verification URI.
    path("oauth2/device/auth", device.DeviceAuthorizationView.as_view(), name="device-authorization"),
    path("device", device.DeviceView.as_view(), name="device"),
    path("device/confirm", device.DeviceConfirmView.as_view(), name="device-confirm"),
    # The signed-in user's own access: applications, consents, sessions, personal tokens.
    path("account/", account.AccountView.as_view(), name="account"),
    path("account/apps/<uuid:family>/revoke", account.RevokeApplicationView.as_view(), name="account-revoke"),
    path(
        "account/consents/<int:pk>/withdraw", account.WithdrawConsentView.as_view(), name="account-withdraw"
    ),
    path("account/sessions/<int:pk>/end", account.EndSessionView.as_view(), name="account-end-session"),
    # The user's personal access tokens: mint (when CELLS_OIDC_PAT_SELF_SERVICE is on) and revoke.
    path("account/tokens/new", account.MintTokenView.as_view(), name="account-token-create"),
    path("account/tokens/<int:pk>/revoke", account.RevokeTokenView.as_view(), name="account-token-revoke"),
    path("brand.css", pages.brand_css, name="brand-css"),
    # Probes (docs/deploy.md): liveness without I/O; readiness checks database, caches and key.
    path("healthz", health.LivenessView.as_view(), name="healthz"),
    path("readyz", health.ReadinessView.as_view(), name="readyz"),
]

#: Pages Cells' clients expect at the site root.
site_urlpatterns: list[URLPattern | URLResolver] = [
    path("oauth2/oob", oob.OutOfBandView.as_view(), name="oob"),
    path("oauth/oob", oob.OutOfBandView.as_view(), name="oob-documented"),
]


def mount(prefix: str = "oidc/") -> tuple[list[URLPattern | URLResolver], str]:
    """URL patterns with the provider under ``prefix`` and the OOB pages at the site root."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return [path(prefix, include(provider_urlpatterns)), *site_urlpatterns], app_name


urlpatterns = mount()[0]
