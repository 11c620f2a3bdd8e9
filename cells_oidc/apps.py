from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CellsOidcConfig(AppConfig):
    name = "cells_oidc"
    verbose_name = _("Cells OpenID Connect provider")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Nothing here may raise: a broken setting is reported by the system checks instead.
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import pre_save
        from oauth2_provider.models import get_application_model

        from . import checks  # noqa: F401 - registers the checks
        from .models import validate_registration_on_save
        from .sessions import on_user_logged_in

        user_logged_in.connect(on_user_logged_in, dispatch_uid="cells_oidc.sessions")
        application_model = get_application_model()
        for model in (application_model, *_proxies_of(application_model)):
            pre_save.connect(
                validate_registration_on_save,
                sender=model,
                dispatch_uid=f"cells_oidc.validate.{model._meta.label}",
            )


def _proxies_of(model: type) -> list[type]:
    from django.apps import apps

    return [m for m in apps.get_models() if m._meta.proxy and m._meta.concrete_model is model]
