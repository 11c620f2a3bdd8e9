"""OpenID Connect Back-Channel Logout 1.0: telling clients, server to server, that a session ended.

- :func:`session_ended` and :func:`sign_in_ended` queue one :class:`~cells_oidc.models.LogoutDelivery`
  per client of the ended browser session (``sid``) that registered a ``backchannel_logout_uri``
  (§2.2), in the caller's transaction: the queue commits with the logout, or not at all.
- :func:`deliver_due` (``manage.py cells_oidc_deliver_logouts``) POSTs a freshly signed logout
  token (:func:`logout_token`, §2.4) to each client (§2.5), retrying with exponential backoff up to
  ``CELLS_OIDC_BACKCHANNEL_MAX_ATTEMPTS``; with ``CELLS_OIDC_BACKCHANNEL_SEND_INLINE`` a first
  attempt is also made right after commit, in a background thread.

Only the registered URL is ever called (https, or http on a loopback host), no redirect is
followed, the call is bounded in time and at most :data:`MAX_RESPONSE_BYTES` of the answer is read.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import requests
from django.db import DatabaseError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from cells_oidc.conf import app_settings
from cells_oidc.internal import redirects

__all__ = [
    "EVENT",
    "LOGOUT_TOKEN_TYP",
    "deliver",
    "deliver_due",
    "logout_token",
    "logout_uri_error",
    "session_ended",
    "sign_in_ended",
]

logger = logging.getLogger("cells_oidc.backchannel")

#: Back-Channel Logout §2.4: the event that makes a JWT a logout token.
EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Back-Channel Logout §2.4 (and RFC 8725 §3.11): the explicit type of a logout token.
LOGOUT_TOKEN_TYP = "logout+jwt"
#: The longest answer read from a client (its body is not used; §2.8 defines only the status).
MAX_RESPONSE_BYTES = 4096
#: The longest wait between two attempts of one delivery.
MAX_RETRY_DELAY = 24 * 3600
#: Back-Channel Logout §2.8: 200 OK; "some Web frameworks will substitute a 204 No Content".
DELIVERED_STATUSES = frozenset({200, 204})


# ---- registration (§2.2) ------------------------------------------------------------------------
def logout_uri_error(uri: str) -> str | None:
    """Why ``uri`` may not be a client's ``backchannel_logout_uri``, or ``None``.

    §2.2: an absolute URL without a fragment (it may have a query); the rule of every URL this
    server calls, :func:`cells_oidc.internal.redirects.server_url_error`.
    """
    return redirects.server_url_error(uri)


def _policy_uri(application: Any) -> str:
    from cells_oidc.models import policy_for

    return policy_for(application).backchannel_logout_uri or ""


# ---- queueing ----------------------------------------------------------------------------------
def session_ended(user: Any, sids: Iterable[str]) -> None:
    """The browser sessions ``sids`` of ``user`` ended (logout, the account page): queue a
    delivery for every client signed in from them that registered a ``backchannel_logout_uri``."""
    from cells_oidc.models import TokenFamily

    sids = {sid for sid in sids if isinstance(sid, str) and sid}
    if not sids or user is None or not getattr(user, "pk", None) or not app_settings.BACKCHANNEL_LOGOUT:
        return
    _queue(user, TokenFamily.objects.filter(user=user, sid__in=sids))


def sign_in_ended(family: Any) -> None:
    """One sign-in (:class:`~cells_oidc.models.TokenFamily`) was revoked (the account page, the
    API, an administrator): the client's session ``sid`` is over (a sign-in without a browser
    session, the device flow's, is not announced: a ``sub``-only token would end all the user's
    sessions at the client, §2.4)."""
    from cells_oidc.models import TokenFamily

    if not family.sid or not app_settings.BACKCHANNEL_LOGOUT:
        return
    _queue(family.user, TokenFamily.objects.filter(pk=family.pk))


def _queue(user: Any, families: Any) -> None:
    from oauth2_provider.models import get_application_model

    from cells_oidc.adapter import get_adapter
    from cells_oidc.models import LogoutDelivery

    try:
        with transaction.atomic():  # a savepoint: the queue is written whole, or not at all
            groups = list(
                families.exclude(sid="")
                .filter(application__cells_policy__backchannel_logout_uri__gt="")
                .values("application_id", "sid")
                .annotate(latest=Max("created"))
            )
            ids = {group["application_id"] for group in groups}
            applications = get_application_model().objects.in_bulk(ids)
            created = []
            for group in groups:
                # A client is told once per session: again only when it signed in again since.
                told = LogoutDelivery.objects.filter(
                    application_id=group["application_id"], sid=group["sid"], created__gte=group["latest"]
                )
                if told.exists():
                    continue
                application = applications[group["application_id"]]
                created.append(
                    LogoutDelivery.objects.create(
                        application=application,
                        sid=group["sid"],
                        sub=get_adapter().subject(user, client=application),
                        next_attempt=timezone.now(),
                    ).pk
                )
    except DatabaseError:
        # The logout itself goes on: its tokens are revoked whatever becomes of the notices.
        logger.exception("could not queue the back-channel logouts of user %s", getattr(user, "pk", None))
        return
    if created and app_settings.BACKCHANNEL_SEND_INLINE:
        transaction.on_commit(lambda: _send_in_background(created))


def _send_in_background(pks: list[int]) -> None:
    def run() -> None:
        try:
            deliver_due(only=pks)
        except Exception:  # noqa: BLE001 - a background attempt must never crash the process
            logger.exception("inline back-channel logout delivery failed")
        finally:
            connection.close()

    threading.Thread(target=run, name="cells-oidc-backchannel", daemon=True).start()


# ---- the logout token (§2.4) -----------------------------------------------------------------
def logout_token(delivery: Any, *, now: int | None = None) -> str:
    """A logout token for ``delivery``: ``iss``, ``aud`` (the client id), ``iat``, a short ``exp``,
    ``jti``, ``events``, ``sub`` and ``sid``; never a ``nonce`` (§2.4). Signed as the client's ID
    tokens are (its ``id_token_algorithm``, the same keys, ``typ: logout+jwt``)."""
    from cells_oidc.internal.endpoints import issuer
    from cells_oidc.internal.issuance import id_token_algorithm
    from cells_oidc.internal.tokens import sign

    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer(),
        "aud": delivery.application.client_id,
        "iat": now,
        "exp": now + app_settings.BACKCHANNEL_TOKEN_LIFETIME,
        "jti": str(uuid.uuid4()),
        "events": {EVENT: {}},
    }
    if delivery.sub:
        claims["sub"] = delivery.sub
    if delivery.sid:
        claims["sid"] = delivery.sid
    return sign(claims, typ=LOGOUT_TOKEN_TYP, alg=id_token_algorithm(delivery.application))


# ---- delivery (§2.5) ---------------------------------------------------------------------------
def _post(uri: str, token: str) -> int:
    """POST ``logout_token`` to ``uri``: bounded in time and size, never following a redirect;
    the HTTP status."""
    timeout = app_settings.BACKCHANNEL_TIMEOUT
    deadline = time.monotonic() + timeout
    with (
        requests.Session() as session,
        session.post(
            uri,
            data={"logout_token": token},
            headers={"Accept-Encoding": "identity", "User-Agent": "cells-oidc-backchannel-logout"},
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response,
    ):
        read = 0
        for chunk in response.iter_content(1024):
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                break
        return response.status_code


def _retry_delay(attempts: int) -> timedelta:
    seconds = app_settings.BACKCHANNEL_RETRY_DELAY * 2 ** min(max(attempts - 1, 0), 20)
    return timedelta(seconds=min(seconds, MAX_RETRY_DELAY))


def _claim(delivery: Any) -> bool:
    """Take ``delivery`` for one attempt (two senders at once never send it twice): a conditional
    UPDATE that moves its next attempt past this one's deadline."""
    from cells_oidc.models import LogoutDelivery

    lease = timezone.now() + timedelta(seconds=app_settings.BACKCHANNEL_TIMEOUT * 2 + 60)
    taken = LogoutDelivery.objects.filter(
        pk=delivery.pk, delivered_at__isnull=True, next_attempt=delivery.next_attempt
    ).update(next_attempt=lease)
    return taken == 1


def deliver(delivery: Any) -> bool:
    """One attempt at ``delivery`` (already claimed); whether it was delivered. The outcome is
    recorded on the row: status, error, and the next attempt or none (delivered, given up)."""
    uri = _policy_uri(delivery.application)
    status: int | None = None
    error = ""
    if not uri or logout_uri_error(uri):
        error = "the client has no usable backchannel_logout_uri"
    else:
        try:
            status = _post(uri, logout_token(delivery))
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - a signing key missing, …: recorded, retried
            logger.exception("could not send the logout token of delivery %s", delivery.pk)
            error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            if status not in DELIVERED_STATUSES:
                error = f"answered HTTP {status}"
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt = now
    delivery.last_status = status
    delivery.error = error[:300]
    if not error:
        delivery.delivered_at, delivery.next_attempt = now, None
    elif delivery.attempts >= app_settings.BACKCHANNEL_MAX_ATTEMPTS or not uri:
        delivery.next_attempt = None  # given up
        logger.warning(
            "gave up the back-channel logout %s to %s after %s attempts: %s",
            delivery.pk,
            delivery.application.client_id,
            delivery.attempts,
            error,
        )
    else:
        delivery.next_attempt = now + _retry_delay(delivery.attempts)
    delivery.save(
        update_fields=["attempts", "last_attempt", "last_status", "error", "delivered_at", "next_attempt"]
    )
    return not error


def deliver_due(*, limit: int = 500, only: Iterable[int] | None = None) -> dict[str, int]:
    """Attempt every delivery due now (at most ``limit``; ``only`` those pks): the counts of
    ``delivered``, ``failed`` (to be retried or given up) and ``skipped`` (taken by another sender)."""
    from cells_oidc.models import LogoutDelivery

    due = LogoutDelivery.objects.due().select_related("application")
    if only is not None:
        due = due.filter(pk__in=list(only))
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    for delivery in list(due[:limit]):
        if not _claim(delivery):
            counts["skipped"] += 1
            continue
        counts["delivered" if deliver(delivery) else "failed"] += 1
    return counts
