"""URLs of the bearer API; a site mounts them under ``a/`` as Cells does::

path("a/", include("cells_oidc.api.urls"))
"""

from __future__ import annotations

from django.urls import path

from cells_oidc.internal import api_views as views

app_name = "cells_oidc_api"

urlpatterns = [
    path("user/me", views.MeView.as_view(), name="user-me"),
    path("tokens", views.TokensView.as_view(), name="tokens"),
    path("tokens/<str:token_id>", views.TokenView.as_view(), name="token"),
    path("personal-tokens", views.PersonalTokensView.as_view(), name="personal-tokens"),
    path("personal-tokens/<str:token_id>", views.PersonalTokenView.as_view(), name="personal-token"),
]
