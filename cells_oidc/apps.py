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

        from cells_oidc import checks  # noqa: F401 - registers the checks
        from cells_oidc.internal.sessions import on_user_logged_in
        from cells_oidc.models import validate_registration_on_save

        user_logged_in.connect(on_user_logged_in, dispatch_uid="cells_oidc.internal.sessions")
        _connect_account_receivers()
        from cells_oidc.internal import metrics

        metrics.connect()  # Prometheus series from cells_oidc.signals (docs/metrics.md)
        application_model = get_application_model()
        for model in (application_model, *_proxies_of(application_model)):
            pre_save.connect(
                validate_registration_on_save,
                sender=model,
                dispatch_uid=f"cells_oidc.validate.{model._meta.label}",
            )
        _connect_resource_receivers()
        from cells_oidc.internal import profiles

        profiles.connect()  # the cached profiles of GET /a/user/me stay exact
        _connect_discovery_receivers()
        _connect_key_receivers()
        _connect_event_receivers(application_model)


def _connect_resource_receivers() -> None:
    # Revoked access tokens go on the deny-list of cells_oidc.internal.revocation (RFC 7009 §2).
    from django.core.signals import setting_changed
    from django.db.models.signals import post_delete
    from oauth2_provider.models import get_access_token_model

    from cells_oidc.internal.resource import clear_remote_cache
    from cells_oidc.internal.revocation import on_access_token_deleted

    post_delete.connect(
        on_access_token_deleted,
        sender=get_access_token_model(),
        dispatch_uid="cells_oidc.revocation",
    )
    setting_changed.connect(clear_remote_cache, dispatch_uid="cells_oidc.internal.resource.settings")


def _connect_key_receivers() -> None:
    # The key-set version is read once per request (cells_oidc.internal.keys, docs/keys.md).
    from django.core.signals import request_finished, request_started

    from cells_oidc.internal import keys

    request_started.connect(keys.on_request_started, dispatch_uid="cells_oidc.keys.request_started")
    request_finished.connect(keys.on_request_finished, dispatch_uid="cells_oidc.keys.request_finished")


def _connect_discovery_receivers() -> None:
    # The discovery document and the JWKS are built once per configuration; a changed setting
    # (override_settings in tests) builds them again.
    from django.core.signals import setting_changed

    from cells_oidc.internal.views.discovery import forget_documents

    setting_changed.connect(forget_documents, dispatch_uid="cells_oidc.internal.views.discovery")
    from cells_oidc.internal import endpoints

    setting_changed.connect(endpoints.forget, dispatch_uid="cells_oidc.internal.endpoints")


def _connect_event_receivers(application_model: type) -> None:
    # The signals of cells_oidc.signals that Django's own signals announce (sign-in, sign-out,
    # client changes), and the audit log's receivers of every signal (cells_oidc.internal.audit).
    from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
    from django.db.models.signals import post_delete, post_save

    from cells_oidc.internal import audit, events

    user_logged_in.connect(events.on_user_logged_in, dispatch_uid="cells_oidc.events.logged_in")
    user_login_failed.connect(events.on_user_login_failed, dispatch_uid="cells_oidc.events.login_failed")
    user_logged_out.connect(events.on_user_logged_out, dispatch_uid="cells_oidc.events.logged_out")
    for model in (application_model, *_proxies_of(application_model)):
        label = model._meta.label
        post_save.connect(
            events.on_client_saved, sender=model, dispatch_uid=f"cells_oidc.events.saved.{label}"
        )
        post_delete.connect(
            events.on_client_deleted, sender=model, dispatch_uid=f"cells_oidc.events.deleted.{label}"
        )
    audit.connect()


def _connect_account_receivers() -> None:
    # The account page lists the user's browser sessions. Connected after on_user_logged_in,
    # which gives the session the sid recorded with it.
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    from cells_oidc.internal.sessions import forget_session, record_session

    user_logged_in.connect(record_session, dispatch_uid="cells_oidc.account.record_session")
    user_logged_out.connect(forget_session, dispatch_uid="cells_oidc.account.forget_session")


def _proxies_of(model: type) -> list[type]:
    from django.apps import apps

    return [m for m in apps.get_models() if m._meta.proxy and m._meta.concrete_model is model]
