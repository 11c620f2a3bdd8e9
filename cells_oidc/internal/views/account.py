"""The account page: what the signed-in user has given access to, and where they are signed in.

- applications holding tokens for the user (one row per sign-in, i.e. per token family), with
  the last time they renewed their access, and a button that revokes every token of that sign-in
  (RFC 7009 §2.1: revoking a grant revokes its refresh and access tokens);
- remembered consents (see :mod:`cells_oidc.internal.consent`), each with a button to withdraw it;
- active browser sessions at the provider (:func:`cells_oidc.internal.sessions.active_sessions`,
  filled by a ``user_logged_in`` receiver there), each with a button that ends it: the Django
  session is deleted and the tokens issued from it are revoked (as RP-initiated logout does for
  the current one);
- personal access tokens (:mod:`cells_oidc.internal.pat`): listed without their secret, each with a button
  that revokes it, and, when ``CELLS_OIDC_PAT_SELF_SERVICE`` is on, a form that mints one and
  shows its secret once, in the answer to that POST only (never in a URL, the session or a log).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django import forms
from django.contrib.auth import logout
from django.core.cache import cache
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views import View
from django.views.decorators.debug import sensitive_variables
from oauth2_provider.scopes import get_scopes_backend

from cells_oidc import signals
from cells_oidc.conf import app_settings
from cells_oidc.internal import consent, errors, grants, pages, pat, sessions
from cells_oidc.internal.events import emit
from cells_oidc.models import PersonalAccessToken, UserSession

logger = logging.getLogger("cells_oidc.account")

#: ``?done=`` values of the account page after an action, and what they say.
NOTICES = {
    "revoked": _("Access revoked. The application has to ask you to sign in again."),
    "withdrawn": _("Consent withdrawn. The application will ask for your approval next time."),
    "ended": _("Session ended. That browser is signed out."),
    "missing": _("That item no longer exists; nothing was changed."),
    "token-revoked": _(
        "Personal access token revoked. Every request that presents it is refused from now on."
    ),
}


# ---- token families ----------------------------------------------------------------------------
def held_applications(user: Any) -> list[dict[str, Any]]:
    """One entry per sign-in ``user`` holds (:func:`cells_oidc.internal.grants.held_by`, the rule the API
    follows too), most recently used first."""
    return [
        {
            "id": held.id,
            "application": held.application,
            "last_used": held.last_used,
            "signed_in": held.created,
            "scope_descriptions": describe(held.scope),
        }
        for held in grants.held_by(user)
    ]


def revoke_family(user: Any, family_id: UUID) -> bool:
    """End the sign-in ``family_id`` of ``user`` (:func:`.grants.revoke`); whether it was held."""
    return grants.revoke(user, family_id)


def describe(scope: str) -> list[str]:
    """The scopes in plain words (the descriptions of ``OAUTH2_PROVIDER["SCOPES"]``)."""
    all_scopes = get_scopes_backend().get_all_scopes()
    return [str(all_scopes.get(s, s)) for s in scope.split()]


# ---- personal access tokens --------------------------------------------------------------------
#: Tokens that ended (revoked or expired) this recently are still listed, with their status.
RECENTLY_ENDED = timedelta(days=30)
#: The durations offered for a fixed expiry and for an auto-refresh window (``pat.parse_duration``
#: syntax); only those within ``CELLS_OIDC_PAT_MAX_LIFETIME`` are offered.
FIXED_EXPIRY_CHOICES = ("1h", "1d", "7d", "30d", "90d", "365d")
AUTO_REFRESH_CHOICES = ("10m", "1h", "1d", "7d", "30d")
DEFAULT_FIXED_EXPIRY = "30d"
DEFAULT_AUTO_REFRESH = "1d"
#: Session key: the mint forms already used (their nonce and the token each minted), newest last,
#: so that a reload (a second POST of the same form) neither mints again nor shows a secret.
MINTED_KEY = "cells_oidc.pat_minted"
MINTED_REMEMBERED = 20
NONCE_RE = r"^[A-Za-z0-9_-]{22}$"

STATUS_LABELS = {"active": _("active"), "expired": _("expired"), "revoked": _("revoked")}


def describe_duration(seconds: int | float) -> str:
    """``86400`` → "1 day", ``1209600`` → "2 weeks", ``5400`` → "90 minutes": the largest exact unit."""
    seconds = int(seconds)
    units = (
        (365 * 86400, lambda n: ngettext("%(count)d year", "%(count)d years", n)),
        (7 * 86400, lambda n: ngettext("%(count)d week", "%(count)d weeks", n)),
        (86400, lambda n: ngettext("%(count)d day", "%(count)d days", n)),
        (3600, lambda n: ngettext("%(count)d hour", "%(count)d hours", n)),
        (60, lambda n: ngettext("%(count)d minute", "%(count)d minutes", n)),
    )
    for size, words in units:
        if seconds >= size and seconds % size == 0:
            return words(seconds // size) % {"count": seconds // size}
    return ngettext("%(count)d second", "%(count)d seconds", seconds) % {"count": seconds}


def duration_choices(presets: tuple[str, ...], *, offer_limit: bool) -> list[tuple[str, str]]:
    """``(value, words)`` of the presets a token may have; with ``offer_limit`` the maximum too."""
    limit = app_settings.PAT_MAX_LIFETIME
    offered = sorted(
        {int(pat.parse_duration(p).total_seconds()) for p in presets} | ({limit} if offer_limit else set())
    )
    fitting = [seconds for seconds in offered if seconds <= limit] or [limit]
    return [(pat.format_duration(seconds), describe_duration(seconds)) for seconds in fitting]


def scope_choices() -> list[tuple[str, str]]:
    """``(scope, description)`` of every scope a personal token may carry (:func:`pat.configured_scopes`),
    in the order of ``OAUTH2_PROVIDER["SCOPES"]``."""
    allowed = pat.configured_scopes()
    return [(s, str(d)) for s, d in get_scopes_backend().get_all_scopes().items() if s in allowed]


class MintTokenForm(forms.Form):
    """The account page's form to mint a personal access token (checked again by :func:`pat.plan`)."""

    FIXED, AUTO_REFRESH = "fixed", "auto_refresh"

    label = forms.CharField(
        max_length=100,
        error_messages={"required": _("Say what the token is for, for example “nightly backup”.")},
    )
    scope = forms.MultipleChoiceField(error_messages={"required": _("Choose at least one permission.")})
    mode = forms.ChoiceField(choices=[(FIXED, FIXED), (AUTO_REFRESH, AUTO_REFRESH)])
    expires_in = forms.ChoiceField()
    auto_refresh = forms.ChoiceField()
    # Identifies this copy of the form: a second POST of it (a reload) does not mint again.
    nonce = forms.RegexField(
        regex=NONCE_RE,
        error_messages={
            "required": _("This form was out of date. It has been renewed: check it and send it again."),
            "invalid": _("This form was out of date. It has been renewed: check it and send it again."),
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scope"].choices = scope_choices()
        fixed = duration_choices(FIXED_EXPIRY_CHOICES, offer_limit=True)
        window = duration_choices(AUTO_REFRESH_CHOICES, offer_limit=False)
        self.fields["expires_in"].choices = fixed
        self.fields["auto_refresh"].choices = window
        # Only the duration of the chosen mode is needed.
        self.fields["expires_in"].required = self.data.get("mode") != self.AUTO_REFRESH
        self.fields["auto_refresh"].required = self.data.get("mode") == self.AUTO_REFRESH
        default_scope = set(app_settings.PAT_DEFAULT_SCOPE.split())
        fixed_values = [value for value, _words in fixed]
        window_values = [value for value, _words in window]
        self.initial = {
            "scope": [s for s, _words in scope_choices() if s in default_scope],
            "mode": self.FIXED,
            "expires_in": DEFAULT_FIXED_EXPIRY if DEFAULT_FIXED_EXPIRY in fixed_values else fixed_values[-1],
            "auto_refresh": DEFAULT_AUTO_REFRESH
            if DEFAULT_AUTO_REFRESH in window_values
            else window_values[0],
            "nonce": secrets.token_urlsafe(16),
            **self.initial,
        }

    def nonce_value(self) -> str:
        """The nonce the page sends with the form: the one sent, unless it was not a valid one."""
        sent = self.data.get("nonce") if self.is_bound else None
        if isinstance(sent, str) and "nonce" not in self.errors:
            return sent
        return str(self.initial["nonce"])

    def mint_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`pat.mint` for the valid form."""
        data = self.cleaned_data
        if data["mode"] == self.AUTO_REFRESH:
            duration = {"auto_refresh": pat.parse_duration(data["auto_refresh"])}
        else:
            duration = {"expires_in": pat.parse_duration(data["expires_in"])}
        return {"label": data["label"], "scope": data["scope"], **duration}


class ShownOnce(str):
    """A token's secret on its way into the page: its ``repr()`` (error reports, debug pages, log
    formatting of locals) shows only the hint, so that it never ends up in a log."""

    def __repr__(self) -> str:
        return f"<secret {self[: pat.HINT_LENGTH]}\u2026>"


def personal_tokens(user: Any) -> list[dict[str, Any]]:
    """The user's tokens that are live or ended within :data:`RECENTLY_ENDED`, live ones first."""
    now = timezone.now()
    since = now - RECENTLY_ENDED
    recent = (
        PersonalAccessToken.objects.filter(user=user)
        .filter(
            Q(revoked__gt=since)
            | Q(revoked__isnull=True, token_family__revoked__gt=since)
            | (
                Q(revoked__isnull=True, expires__gt=since)
                & (Q(max_expires__isnull=True) | Q(max_expires__gt=since))
                & pat.SIGN_IN_LIVE
            )
        )
        .select_related("token_family")
    )
    entries = []
    for token in recent.order_by("-created"):
        status = pat.status(token, now)
        ended: datetime | None = None
        if status == "expired":
            ended = min(d for d in (token.expires, token.max_expires) if d is not None)
        elif status == "revoked":
            ended = pat.revoked_at(token)
        entries.append(
            {
                "token": token,
                "status": status,
                "status_label": STATUS_LABELS[status],
                "ended": ended,
                "window": describe_duration(token.auto_refresh_seconds) if token.auto_refresh_seconds else "",
                "scope_descriptions": describe(token.scope),
                "by_someone_else": token.created_by_id is not None and token.created_by_id != token.user_id,
            }
        )
    entries.sort(key=lambda e: e["status"] != "active")
    return entries


#: How many of the user's recent sign-ins (and failed attempts at their login) the page lists.
RECENT_SIGN_INS = 10


def recent_sign_ins(user: Any) -> list[dict[str, Any]]:
    """The user's last sign-ins and failed attempts at their login, from the audit trail
    (:mod:`cells_oidc.internal.audit`): when, from which address, with which browser."""
    from cells_oidc.models import AuditEvent

    events = AuditEvent.objects.sign_ins_of(user).only("time", "event", "ip", "user_agent")
    return [
        {
            "time": event.time,
            "ip": event.ip or "",
            "device": sessions.describe_user_agent(event.user_agent),
            "succeeded": event.event == "sign_in_succeeded",
        }
        for event in events[:RECENT_SIGN_INS]
    ]


def token_settings() -> dict[str, Any]:
    """What the page says about minting: whether users may, and the longest lifetime."""
    return {
        "self_service": app_settings.PAT_SELF_SERVICE,
        "max_lifetime": describe_duration(app_settings.PAT_MAX_LIFETIME),
        "token_prefix": pat.PAT_PREFIX,
    }


# ---- the views ---------------------------------------------------------------------------------
def render_account(
    request: HttpRequest,
    *,
    form: MintTokenForm | None = None,
    status: int = 200,
    notice: Any = None,
    mint_refused: bool = False,
) -> HttpResponse:
    """The account page (also with a mint form that failed: ``status`` 400, or 403 when refused)."""
    sessions.touch(request)
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
            "sessions": sessions.active_sessions(request),
            "audit_enabled": app_settings.AUDIT_ENABLED,
            "recent_sign_ins": recent_sign_ins(request.user) if app_settings.AUDIT_ENABLED else [],
            "notice": notice,
            "personal_tokens": personal_tokens(request.user),
            "mint_form": form if form is not None else MintTokenForm(),
            "mint_refused": mint_refused,
            **token_settings(),
        },
        status=status,
    )


class AccountView(pages.SignedInPageMixin, View):
    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return render_account(request, notice=NOTICES.get(request.GET.get("done", "")))


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
            sid = request.session.get(sessions.SID_KEY, "")
            sessions.revoke_session_tokens(request.user, {row.sid, sid}, reason="account_page")
            logout(request)  # signed_out (cells_oidc.internal.events.on_user_logged_out)
            return HttpResponseRedirect(reverse("cells_oidc:logged-out"), status=303)
        store = sessions.session_store(row.session_key)
        data = store.load()
        sids = {row.sid}
        if str(data.get("_auth_user_id", "")) == str(request.user.pk):
            sids.add(str(data.get(sessions.SID_KEY, "")))
            store.delete(row.session_key)
            emit(signals.signed_out, user=request.user, sid=row.sid)
        sessions.revoke_session_tokens(request.user, sids, reason="account_page")
        row.delete()
        return self.done("ended")


# ---- personal access tokens --------------------------------------------------------------------
class MintTokenView(pages.SignedInPageMixin, View):
    """POST: mint a personal access token and show its secret in this answer, once.

    The secret is in the body of this ``no-store`` response only: not in a URL (no redirect
    after the POST), not in the session, not in a log. A second POST of the same form (the
    browser's reload) finds its nonce used and shows no secret.
    """

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        # The address of the page that showed a secret, opened again: the form is on the account page.
        return HttpResponseRedirect(f"{reverse('cells_oidc:account')}#tokens", status=303)

    @sensitive_variables("minted", "secret")
    def post(self, request: HttpRequest) -> HttpResponse:
        if not app_settings.PAT_SELF_SERVICE:
            return render_account(request, status=403, mint_refused=True)
        form = MintTokenForm(request.POST)
        if not form.is_valid():
            return render_account(request, form=form, status=400)
        nonce = form.cleaned_data["nonce"]
        minted_before = {
            n: pk
            for n, pk in request.session.get(MINTED_KEY, [])
            if isinstance(n, str) and isinstance(pk, int)
        }
        claim = f"cells_oidc:pat-mint:{request.user.pk}:{nonce}"
        # The session remembers the forms used; the cache also catches a double click, whose
        # second POST arrives before the first one saved the session.
        if nonce in minted_before or not cache.add(claim, 1, 86400):
            token = PersonalAccessToken.objects.filter(user=request.user, pk=minted_before.get(nonce)).first()
            return pages.render_page(
                request, "cells_oidc/account_token_created.html", {"token": token, "secret": ""}, status=409
            )
        try:
            minted = pat.mint(request.user, created_by=request.user, **form.mint_arguments())
        except pat.PersonalTokenError as exc:
            cache.delete(claim)
            form.add_error(None, str(exc))
            return render_account(request, form=form, status=400)
        used = [[n, pk] for n, pk in minted_before.items()][-(MINTED_REMEMBERED - 1) :]
        request.session[MINTED_KEY] = [*used, [nonce, minted.token.pk]]
        logger.info(
            "user %s minted personal access token %s (%s\u2026) on the account page",
            request.user.pk,
            minted.token.pk,
            minted.token.hint,
        )
        secret = ShownOnce(minted.secret)
        return pages.render_page(
            request,
            "cells_oidc/account_token_created.html",
            {
                "token": minted.token,
                "secret": secret,
                "scope_descriptions": describe(minted.token.scope),
                "window": describe_duration(minted.token.auto_refresh_seconds or 0),
            },
        )


class RevokeTokenView(pages.SignedInPageMixin, View):
    """POST: revoke one of the user's own personal access tokens; anyone else's is a 404."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        token = PersonalAccessToken.objects.filter(pk=pk, user=request.user).first()
        if token is None:
            # Someone else's token or none at all: the same answer, and nothing changes.
            return errors.page_response(
                request,
                errors.NotFound(_("Nothing was changed.")),
                explanation=_("This personal access token does not exist or is not yours."),
            )
        pat.revoke(token, revoked_by=request.user)  # idempotent
        return HttpResponseRedirect(f"{reverse('cells_oidc:account')}?done=token-revoked#tokens", status=303)
