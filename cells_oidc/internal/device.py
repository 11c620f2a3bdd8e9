"""The device authorization grant (RFC 8628): its domain rules, without HTTP.

User codes (generation, normalisation, display), the failure limit of the verification page,
the lookup and decision of a pending grant, the ``slow_down`` rule of polling and the
redemption of an approved device code. The endpoint and the pages live in
:mod:`cells_oidc.internal.views.device`; the validator calls :func:`redeem_device_code`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from oauth2_provider.models import get_application_model, get_device_grant_model
from oauthlib.oauth2.rfc8628.grant_types import DeviceCodeGrant

from cells_oidc.adapter import get_adapter
from cells_oidc.internal import throttle
from cells_oidc.internal.context import sign_in_context
from cells_oidc.internal.endpoints import absolute_url
from cells_oidc.models import TokenFamily, checksum, policy_for

__all__ = [
    "DEVICE_GRANT",
    "USER_CODE_ALPHABET",
    "USER_CODE_LENGTH",
    "code_found",
    "count_attempt",
    "decide",
    "display_user_code",
    "find_pending",
    "generate_user_code",
    "normalize_user_code",
    "pending_grant",
    "polled_too_fast",
    "record_issued",
    "redeem_device_code",
    "verification_uri",
    "verification_uri_complete",
]

#: RFC 8628 §3.4: the grant type of the device's token request.
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alike digits), upper case.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8  # 20^8 ≈ 2^34.6, with the failure limit below (RFC 8628 §5.1)
#: Longest device code looked up (oauthlib's are far shorter).
MAX_DEVICE_CODE_LENGTH = 100


# ---- user codes (RFC 8628 §6.1) ------------------------------------------------------------------
def normalize_user_code(value: str) -> str:
    """What the user typed, as stored: upper case, without dashes, spaces or other separators."""
    return "".join(c for c in value.upper() if c in USER_CODE_ALPHABET)[: USER_CODE_LENGTH + 1]


def display_user_code(code: str) -> str:
    """``WDJBMJHT`` → ``WDJB-MJHT`` (RFC 8628 §6.1: easier to read and to type)."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}" if len(code) == USER_CODE_LENGTH else code


def generate_user_code() -> str:
    """A new user code, in display form; not in use by another pending grant."""
    model = get_device_grant_model()
    while True:
        code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        if not model.objects.filter(user_code=code, status=model.AUTHORIZATION_PENDING).exists():
            return display_user_code(code)


def verification_uri() -> str:
    return absolute_url("device")


def verification_uri_complete(user_code: str) -> str:
    # RFC 8628 §3.3.1: the user code in the URI, so that a QR code or link pre-fills it.
    return f"{verification_uri()}?user_code={user_code}"


# ---- the device authorization endpoint (RFC 8628 §3.2) -------------------------------------------
def record_issued(client_id: str, data: dict[str, Any]) -> None:
    """Store the grant oauthlib's device authorization response ``data`` announces."""
    get_device_grant_model().objects.create(
        client_id=client_id,
        device_code=data["device_code"],
        user_code=normalize_user_code(data["user_code"]),
        scope=data.get("scope", ""),
        interval=int(data.get("interval") or 5),
        expires=timezone.now() + timedelta(seconds=int(data["expires_in"])),
    )


# ---- failure limit of the user code (RFC 8628 §5.1) ----------------------------------------------
def _failure_identities(request: Any) -> list[str]:
    identities = [f"user:{request.user.pk}"]
    session_key = request.session.session_key
    if session_key:
        identities.append(f"session:{session_key}")  # hashed by the throttle
    return identities


def count_attempt(request: Any) -> list[throttle.AttemptCount] | None:
    """Count a typed code against this user and browser session before it is looked up; raise
    :class:`~cells_oidc.internal.throttle.Throttled` when they may not type one now.

    The shared throttle (:mod:`cells_oidc.internal.throttle`, rule ``device_code``): the limit
    holds across every process of the site, and for codes typed in parallel (each is counted
    before any is looked up). A right code is taken back (:func:`code_found`). ``None`` when the
    cache is down and the throttles fail open.
    """
    current = throttle.rule("device_code")
    return throttle.count_attempt([(current, identity) for identity in _failure_identities(request)])


def code_found(counters: list[throttle.AttemptCount] | None) -> None:
    """The typed code was right: it was no failure."""
    if counters:
        throttle.take_back(counters)


# ---- the verification pages: lookup and decision -------------------------------------------------
def pending_grant(pk: Any) -> Any:
    """The device grant ``pk`` if it still waits for a decision, of a client that may use it."""
    model = get_device_grant_model()
    if not isinstance(pk, int):
        return None
    grant = model.objects.filter(
        pk=pk, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now()
    ).first()
    if grant is None:
        return None
    application = get_application_model().objects.filter(client_id=grant.client_id).first()
    if application is None or not policy_for(application).allow_device_flow:
        return None
    grant.application = application
    return grant


def find_pending(typed: str) -> Any:
    """The pending grant of the user code ``typed`` (any case, any separators), or ``None``."""
    code = normalize_user_code(typed)
    if len(code) != USER_CODE_LENGTH:
        return None
    model = get_device_grant_model()
    candidate = (
        model.objects.filter(user_code=code, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now())
        .order_by("-pk")
        .first()
    )
    return pending_grant(candidate.pk) if candidate is not None else None


def decide(grant: Any, user: Any, *, approve: bool) -> bool:
    """Record ``user``'s answer to ``grant``; whether it was still pending (one decision per code,
    even when two tabs answer at once)."""
    model = get_device_grant_model()
    status = model.AUTHORIZED if approve else model.DENIED
    with transaction.atomic():
        decided = model.objects.filter(
            pk=grant.pk, status=model.AUTHORIZATION_PENDING, expires__gt=timezone.now()
        ).update(status=status, user=user)
        if decided and approve:
            from cells_oidc import signals
            from cells_oidc.internal.events import emit

            # The sign-in (family_id) is made when the device redeems the code.
            client = getattr(grant, "application", None)  # set by pending_grant
            emit(signals.code_issued, user=user, client=client, scope=grant.scope, family_id=None)
    return bool(decided)


# ---- the token endpoint's side (RFC 8628 §3.4, §3.5) --------------------------------------------
def redeem_device_code(client_id: str, device_code: Any, request: Any) -> str | None:
    """The validator's ``validate_device_code``: the RFC 8628 §3.5 status of ``device_code``.

    Returns one of oauthlib's ``DeviceCodeGrant.DEVICE_CODE_*`` statuses, or ``None`` for a code
    that is unknown, of another client or already used (``invalid_grant``). An approved code is
    redeemed exactly once: its row is deleted before any token exists, so two concurrent polls
    never both get tokens. On success ``request.user``, ``request.scopes`` and a new
    :class:`~cells_oidc.models.TokenFamily` (shown and revocable on the account page) are set.
    """
    model = get_device_grant_model()
    if not isinstance(device_code, str) or not device_code or len(device_code) > MAX_DEVICE_CODE_LENGTH:
        return None
    grant = model.objects.filter(device_code=device_code, client_id=client_id).select_related("user").first()
    if grant is None:
        return None
    if grant.status == model.DENIED:
        return DeviceCodeGrant.DEVICE_CODE_DENIED
    if grant.is_expired():
        return DeviceCodeGrant.DEVICE_CODE_EXPIRED
    if grant.status == model.AUTHORIZATION_PENDING:
        if polled_too_fast(grant):
            return DeviceCodeGrant.DEVICE_CODE_SLOW_DOWN
        return DeviceCodeGrant.DEVICE_CODE_PENDING
    if grant.status != model.AUTHORIZED:
        return None
    if model.objects.filter(pk=grant.pk, status=model.AUTHORIZED).delete()[0] != 1:
        return None  # redeemed by a concurrent poll
    user = grant.user
    if user is None or not get_adapter().can_sign_in(user=user, client=request.client):
        return DeviceCodeGrant.DEVICE_CODE_DENIED
    now = timezone.now()
    family = TokenFamily.objects.create(
        application=request.client, user=user, auth_time=now, redeemed=now, sid="", scope=grant.scope
    )
    request.user = user
    request.scopes = grant.scope.split()
    # RFC 8628 §3.4: the token request carries no scope; the tokens get what the user approved,
    # even nothing (oauthlib takes an empty request.scopes as unset and would read the request's
    # own scope parameter instead; None leaves it the defaults, as at the device endpoint).
    request.scope = grant.scope or None
    sign_in_context(request).bind(family)  # auth_time: now; no browser session (sid "")
    return DeviceCodeGrant.DEVICE_CODE_AUTHORIZED


def polled_too_fast(grant: Any) -> bool:
    """RFC 8628 §3.5 ``slow_down``: a poll within ``interval`` seconds of the previous one.

    The interval then grows by 5 seconds "for this and all subsequent requests".
    """
    key = f"cells_oidc:device-poll:{checksum(grant.device_code)}"
    if cache.add(key, 1, timeout=grant.interval):
        return False
    model = get_device_grant_model()
    model.objects.filter(pk=grant.pk).update(interval=F("interval") + 5)
    cache.set(key, 1, timeout=grant.interval + 5)
    return True
