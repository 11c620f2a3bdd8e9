from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView

from project import views

# Django's 400s (a body it cannot parse, say) as the provider's JSON error or styled page.
handler400 = "cells_oidc.views.bad_request"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("cells_oidc.urls")),
    # The demo's front end: an OAuth client of the provider above (cells-frontend).
    path("", views.home, name="home"),
    path("auth/callback", views.auth_callback, name="auth-callback"),
    # The bearer API, its OpenAPI 3 document and a page to read it (docs/api.md).
    path("a/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("a/docs", views.api_docs, name="api-docs"),
    path("a/", include("cells_oidc.api.urls")),
]
if getattr(settings, "BENCH", False):
    # `make bench` only (project/bench.py): the baseline, a claims-only API view and its DRF floor.
    from project import bench

    urlpatterns += [
        path("bench/trivial", bench.trivial),
        path("a/bench/claims", bench.ClaimsView.as_view()),
        path("a/bench/drf", bench.DrfView.as_view()),
    ]
