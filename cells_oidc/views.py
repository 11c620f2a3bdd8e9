"""Views a site names in its settings (the provider's own views are mounted by :mod:`cells_oidc.urls`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

__all__ = ["csrf_failure"]


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF failure (an expired login form, say) answered with the provider's styled error page.

    Opt in with ``CSRF_FAILURE_VIEW = "cells_oidc.views.csrf_failure"``.
    """
    from cells_oidc.internal import errors

    return errors.page_response(request, errors.OAuthError(error="csrf_failure", status=403))
