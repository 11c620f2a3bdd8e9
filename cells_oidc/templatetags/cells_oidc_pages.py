"""Template tags of the pages: ``{% load cells_oidc_pages %}{% cells_oidc_brand as brand %}``."""

from __future__ import annotations

from typing import Any

from django import template

from cells_oidc.conf import app_settings
from cells_oidc.internal.pages import branding

register = template.Library()


@register.simple_tag
def cells_oidc_brand() -> dict[str, Any]:
    """Site name and host, logo URL and colour stylesheet, read from the settings on each use."""
    return branding()


@register.simple_tag
def cells_oidc_consent_days() -> int:
    """How many days a consent is remembered (``CELLS_OIDC_CONSENT_LIFETIME``), at least 1."""
    return max(1, round(app_settings.CONSENT_LIFETIME / 86400))
