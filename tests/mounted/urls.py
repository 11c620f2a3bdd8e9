from django.http import HttpResponse
from django.urls import include, path

from cells_oidc.urls import mount

urlpatterns = [
    path("", lambda request: HttpResponse("the site's own home page")),
    path("", include(mount("auth/sso/"))),
]
