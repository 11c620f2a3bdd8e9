"""Views a site names in its settings (the provider's own views are mounted by :mod:`cells_oidc.urls`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

__all__ = ["bad_request", "csrf_failure"]


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF failure (an expired login form, say) answered with the provider's styled error page.

    Opt in with ``CSRF_FAILURE_VIEW = "cells_oidc.views.csrf_failure"``.
    """
    from cells_oidc.internal import errors

    return errors.page_response(request, errors.OAuthError(error="csrf_failure", status=403))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (a body it cannot parse, a host not in ``ALLOWED_HOSTS``, too many fields)
    answered like the provider's other errors: JSON ``invalid_request`` from the API endpoints,
    the styled error page from pages, ``no-store``. Unlike Django's own ``bad_request`` it does
    not run the CSRF check, which reads the unreadable body once more.

    Opt in with ``handler400 = "cells_oidc.views.bad_request"`` in the root URLconf.
    """
    from cells_oidc.middleware import bad_request_response

    return bad_request_response(request)
