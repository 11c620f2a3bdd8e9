"""The account page: what the signed-in user has given access to, and where they are signed in.

- applications holding tokens for the user (one row per sign-in, i.e. per token family), with
  the last time they renewed their access, and a button that revokes every token of that sign-in
  (RFC 7009 §2.1: revoking a grant revokes its refresh and access tokens);
- remembered consents (see :mod:`cells_oidc.consent`), each with a button to withdraw it;
- active browser sessions at the provider (filled by :func:`record_session`, a ``user_logged_in``
  receiver), each with a button that ends it: the Django session is deleted and the tokens issued
  from it are revoked (as RP-initiated logout does for the current one).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from importlib import import_module
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import logout
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views import View
from oauth2_provider.models import get_refresh_token_model
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings

from .. import consent, pages, sessions
from ..models import TokenFamily, UserSession

logger = logging.getLogger("cells_oidc.account")

#: ``?done=`` values of the account page after an action, and what they say.
NOTICES = {
    "revoked": _("Access revoked. The application has to ask you to sign in again."),
    "withdrawn": _("Consent withdrawn. The application will ask for your approval next time."),
    "ended": _("Session ended. That browser is signed out."),
    "missing": _("That item no longer exists; nothing was changed."),
}
TOUCH_INTERVAL = timedelta(minutes=1)


# ---- sessions ----------------------------------------------------------------------------------
def _session_store(session_key: str | None = None) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)


def record_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: remember this browser session of ``user``.

    Connected after :func:`cells_oidc.sessions.on_user_logged_in`, which gives the session
    its ``sid``. Never breaks a login: a failure is logged.
    """
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if request is None or session is None or not key:
        return
    try:
        UserSession.objects.update_or_create(
            session_key=key,
            defaults={
                "user": user,
                "sid": sessions.session_id(request),
                "user_agent": request.headers.get("User-Agent", "")[:300],
                "last_seen": timezone.now(),
            },
        )
    except DatabaseError:
        logger.exception("could not record the session of user %s", getattr(user, "pk", None))


def forget_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: the session is over, forget it."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        try:
            UserSession.objects.filter(session_key=key).delete()
        except DatabaseError:
            logger.exception("could not forget a session")


def touch(request: HttpRequest) -> None:
    """Note that the current session was just used (at most once a minute)."""
    key = request.session.session_key
    if key:
        now = timezone.now()
        UserSession.objects.filter(session_key=key, user=request.user).exclude(
            last_seen__gt=now - TOUCH_INTERVAL
        ).update(last_seen=now)


#: (marker in the User-Agent, name), first match wins: Edge and Opera also say "Chrome", Chrome
#: also says "Safari", Android also says "Linux", iOS also says "Mac OS X".
_BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("CriOS/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
]


def describe_user_agent(user_agent: str) -> str:
    """``Mozilla/5.0 (X11; Linux x86_64) … Firefox/128.0`` → ``Firefox on Linux``."""
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return str(_("%(browser)s on %(system)s") % {"browser": browser, "system": system})
    return browser or system or str(_("Unknown browser"))


def active_sessions(request: HttpRequest) -> list[UserSession]:
    """The user's sessions that still exist (rows of ended or expired sessions are removed)."""
    current = request.session.session_key
    alive, dead = [], []
    for row in UserSession.objects.filter(user=request.user).order_by("-last_seen", "-created"):
        row.device = describe_user_agent(row.user_agent)  # type: ignore[attr-defined]
        if row.session_key == current:
            row.is_current = True  # type: ignore[attr-defined]
            alive.append(row)
            continue
        data = _session_store(row.session_key).load()
        if str(data.get("_auth_user_id", "")) == str(request.user.pk):
            row.is_current = False  # type: ignore[attr-defined]
            alive.append(row)
        else:
            dead.append(row.pk)
    if dead:
        UserSession.objects.filter(pk__in=dead).delete()
    alive.sort(key=lambda r: not r.is_current)  # type: ignore[attr-defined]
    return alive


def revoke_session_tokens(user: Any, sids: set[str]) -> None:
    """Revoke the token families issued from the browser sessions ``sids``."""
    sids = {sid for sid in sids if sid}
    if sids:
        for family in TokenFamily.objects.filter(user=user, sid__in=sids, revoked__isnull=True):
            family.revoke()


# ---- token families ----------------------------------------------------------------------------
def held_applications(user: Any) -> list[dict[str, Any]]:
    """One entry per sign-in of ``user`` whose refresh or access token still works, newest use first."""
    refresh_model = get_refresh_token_model()
    live = refresh_model.objects.filter(user=user, revoked__isnull=True, token_family__isnull=False)
    lifetime = oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS
    if lifetime:
        live = live.filter(created__gt=timezone.now() - timedelta(seconds=int(lifetime)))
    entries: dict[UUID, dict[str, Any]] = {}
    for token in live.select_related("application", "access_token").order_by("-created"):
        entry = entries.get(token.token_family)
        if entry is None:
            scope = token.access_token.scope if token.access_token is not None else ""
            entries[token.token_family] = {
                "id": token.token_family,
                "application": token.application,
                "last_used": token.created,
                "signed_in": token.created,
                "scope_descriptions": describe(scope),
            }
        else:
            entry["signed_in"] = min(entry["signed_in"], token.created)
    families = TokenFamily.objects.filter(pk__in=list(entries), user=user)
    for family in families:
        if family.revoked is not None:
            entries.pop(family.id, None)
        elif family.id in entries:
            entries[family.id]["signed_in"] = family.created
    # Sign-ins without a refresh token (no offline scope) hold their access token until it expires.
    short = (
        TokenFamily.objects.filter(user=user, revoked__isnull=True, access_token__expires__gt=timezone.now())
        .exclude(pk__in=list(entries))
        .select_related("application", "access_token")
    )
    for family in short:
        entries[family.id] = {
            "id": family.id,
            "application": family.application,
            "last_used": family.access_token.created,
            "signed_in": family.created,
            "scope_descriptions": describe(family.access_token.scope),
        }
    return sorted(entries.values(), key=lambda e: e["last_used"], reverse=True)


def revoke_family(user: Any, family_id: UUID) -> bool:
    """Revoke the sign-in ``family_id`` of ``user`` (never another user's); whether it existed."""
    family = TokenFamily.objects.filter(pk=family_id, user=user).first()
    if family is not None:
        family.revoke()
        return True
    refresh_model = get_refresh_token_model()
    if refresh_model.objects.filter(token_family=family_id, user=user).exists():
        refresh_model.revoke_family(family_id)
        return True
    return False


def describe(scope: str) -> list[str]:
    """The scopes in plain words (the descriptions of ``OAUTH2_PROVIDER["SCOPES"]``)."""
    all_scopes = get_scopes_backend().get_all_scopes()
    return [str(all_scopes.get(s, s)) for s in scope.split()]


# ---- the views ---------------------------------------------------------------------------------
class AccountView(pages.SignedInPageMixin, View):
    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        touch(request)
        consents = [
            {"consent": c, "application": c.application, "scope_descriptions": describe(c.scope)}
            for c in consent.of_user(request.user)
        ]
        return pages.render_page(
            request,
            "cells_oidc/account.html",
            {
                "applications": held_applications(request.user),
                "consents": consents,
                "sessions": active_sessions(request),
                "notice": NOTICES.get(request.GET.get("done", "")),
            },
        )


class AccountActionView(pages.SignedInPageMixin, View):
    """A button of the account page (POST, CSRF-checked), answered with 303 back to the page."""

    http_method_names = ["post"]

    def done(self, notice: str) -> HttpResponse:
        return HttpResponseRedirect(f"{reverse('cells_oidc:account')}?done={notice}", status=303)


class RevokeApplicationView(AccountActionView):
    def post(self, request: HttpRequest, family: UUID) -> HttpResponse:
        return self.done("revoked" if revoke_family(request.user, family) else "missing")


class WithdrawConsentView(AccountActionView):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.done("withdrawn" if consent.withdraw(request.user, pk) else "missing")


class EndSessionView(AccountActionView):
    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        row = UserSession.objects.filter(pk=pk, user=request.user).first()
        if row is None:
            return self.done("missing")
        if row.session_key == request.session.session_key:
            # Ending this very session is signing out here.
            revoke_session_tokens(request.user, {row.sid, request.session.get(sessions.SID_KEY, "")})
            logout(request)
            return HttpResponseRedirect(reverse("cells_oidc:logged-out"), status=303)
        store = _session_store(row.session_key)
        data = store.load()
        sids = {row.sid}
        if str(data.get("_auth_user_id", "")) == str(request.user.pk):
            sids.add(str(data.get(sessions.SID_KEY, "")))
            store.delete(row.session_key)
        revoke_session_tokens(request.user, sids)
        row.delete()
        return self.done("ended")
