"""Remembered consents: a user's "Allow" for a third-party client, kept per user, client and scopes.

A consent covers a later authorization request of the same user and client when it has not
expired and every requested scope was part of what the user allowed. Asking for a scope the
user never allowed shows the consent page again (OpenID Connect Core §3.1.2.4: the OP obtains
consent for what is requested, and may use an earlier decision for the same request). Users see
and withdraw their consents on their account page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from cells_oidc import signals
from cells_oidc.conf import app_settings
from cells_oidc.internal.events import emit
from cells_oidc.models import Consent


def scope_set(scopes: Iterable[str] | str) -> frozenset[str]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    return frozenset(s for s in scopes if s)


def remembered(user: Any, application: Any, scopes: Iterable[str] | str) -> Consent | None:
    """The unexpired consent of ``user`` to ``application`` that covers ``scopes``, or ``None``."""
    if not getattr(user, "is_authenticated", False) or application is None:
        return None
    consent = (
        Consent.objects.filter(user=user, application=application, expires__gt=timezone.now())
        .order_by("-created")
        .first()
    )
    if consent is None or not scope_set(scopes) <= scope_set(consent.scope):
        return None
    return consent


def remember(user: Any, application: Any, scopes: Iterable[str] | str) -> Consent | None:
    """Record that ``user`` allowed ``application`` the ``scopes`` (for ``CONSENT_LIFETIME``).

    The scopes of a still valid earlier consent are kept: allowing ``email`` after ``profile``
    remembers both. A lifetime of 0 remembers nothing. Sends ``consent_given`` either way.
    """
    lifetime = app_settings.CONSENT_LIFETIME
    if not getattr(user, "is_authenticated", False):
        return None
    if not lifetime:
        emit(
            signals.consent_given,
            user=user,
            client=application,
            scope=" ".join(sorted(scope_set(scopes))),
            remembered=False,
        )
        return None
    now = timezone.now()
    with transaction.atomic():
        existing = Consent.objects.select_for_update().filter(user=user, application=application).first()
        granted = scope_set(scopes)
        if existing is not None and existing.expires > now:
            granted |= scope_set(existing.scope)
        values = {"scope": " ".join(sorted(granted)), "expires": now + timedelta(seconds=lifetime)}
        given = " ".join(sorted(scope_set(scopes)))
        emit(signals.consent_given, user=user, client=application, scope=given, remembered=True)
        if existing is None:
            return Consent.objects.create(user=user, application=application, **values)
        Consent.objects.filter(pk=existing.pk).update(created=now, **values)
        existing.refresh_from_db()
        return existing


def withdraw(user: Any, consent_id: Any) -> bool:
    """Forget a consent of ``user`` (only their own); whether there was one."""
    try:
        pk = int(consent_id)
    except (TypeError, ValueError):
        return False
    consent = Consent.objects.filter(pk=pk, user=user).select_related("application").first()
    if consent is None or Consent.objects.filter(pk=consent.pk).delete()[0] == 0:
        return False
    emit(signals.consent_withdrawn, user=user, client=consent.application, scope=consent.scope)
    return True


def of_user(user: Any) -> list[Consent]:
    """The unexpired consents of ``user``, newest first, with their applications."""
    return list(
        Consent.objects.filter(user=user, expires__gt=timezone.now())
        .select_related("application")
        .order_by("-created")
    )
