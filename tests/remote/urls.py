"""URLs of the provider process: the provider only."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("", include("cells_oidc.urls"))]
