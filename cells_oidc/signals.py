"""Signals of cells-oidc: one per protocol event, for audit logs, metrics and site integrations.

Every signal is sent **after the change it reports has committed** (``transaction.on_commit``): a
receiver never sees an event that was rolled back, and a failing receiver never undoes the event
(each is sent with ``send_robust``; an exception is logged and swallowed). Each is sent exactly once
per action.

Every signal is sent with ``sender=None`` and these keyword arguments, plus its own:

``user``
    the user concerned (a user instance), or ``None`` (an unknown login, a client acting alone);
``client``
    DOT's ``Application`` concerned, or ``None``;
``ip``
    the client IP address of the HTTP request that caused the event (``REMOTE_ADDR``; put a proxy's
    address rewriting in front of Django if you need the forwarded one), or ``None`` outside a request;
``user_agent``
    the request's ``User-Agent`` (at most 300 characters), or ``""``;
``request_id``
    the request id shown on error pages and logged (the proxy's ``X-Request-ID`` when sane), or ``""``.

No signal ever carries a token, a code, a secret or a password — only ids (``family_id``, ``token_id``)
and public values (``scope``, ``grant_type``). Connect receivers in your ``AppConfig.ready()``::

    from cells_oidc import signals

    def on_reuse(sender, *, user, client, family_id, ip, **kwargs):
        ...

    signals.refresh_reuse_detected.connect(on_reuse)
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "client_changed",
    "code_issued",
    "code_redeemed",
    "code_replayed",
    "consent_given",
    "consent_withdrawn",
    "key_changed",
    "pat_created",
    "pat_revoked",
    "pat_used",
    "refresh_reuse_detected",
    "sign_in_failed",
    "sign_in_locked_out",
    "sign_in_succeeded",
    "signed_out",
    "token_revoked",
    "tokens_issued",
]

#: A user signed in on the provider's login page, the admin's, or any page calling Django's ``login()``
#: (sent from ``user_logged_in``). Extra: ``method`` ("password").
sign_in_succeeded = Signal()
#: A sign-in failed. Extra: ``login`` (what was typed as the login, at most 150 characters; ``user`` is
#: ``None`` even when such an account exists, so receivers cannot leak which logins exist).
sign_in_failed = Signal()
#: Too many failures: the account or the IP address is locked out for a while (sent once, when the lock
#: begins). Extra: ``login`` (as typed), ``until`` (an aware ``datetime``), ``rule`` ("login_account"
#: or "login_ip": which lock began; both may, one signal each).
sign_in_locked_out = Signal()
#: A browser session ended (RP-initiated logout, the account page, the admin's logout, any Django
#: ``logout()``). Extra: ``sid`` (the provider's session id, ``""`` when it had none).
signed_out = Signal()
#: The user approved a client on the consent page. Extra: ``scope`` (space-separated, what this approval
#: covered), ``remembered`` (whether the approval is remembered for next time).
consent_given = Signal()
#: The user withdrew a remembered approval (account page). Extra: ``scope``.
consent_withdrawn = Signal()
#: An authorization code (or an approved device code) was issued. Extra: ``scope``, ``family_id``
#: (``None`` for a device code: its sign-in is made when the device redeems it).
code_issued = Signal()
#: An authorization code was redeemed at the token endpoint (sent with the tokens it gave, not for a
#: refused exchange). Extra: ``family_id``.
code_redeemed = Signal()
#: A spent authorization code was presented again; its sign-in was revoked (RFC 6749 §4.1.2). Extra:
#: ``family_id``.
code_replayed = Signal()
#: The token endpoint issued tokens. Extra: ``grant_type``, ``scope``, ``family_id`` (``None`` for
#: grants without a sign-in), ``refresh_token`` (bool: whether one was issued).
tokens_issued = Signal()
#: A rotated-out refresh token was used again; its whole sign-in was revoked (RFC 9700 §4.14.2). Extra:
#: ``family_id``.
refresh_reuse_detected = Signal()
#: Tokens were revoked. Extra: ``kind`` ("access_token", "refresh_token": the token a client sent to the
#: revocation endpoint, RFC 7009; "sign_in": every token of a sign-in), ``family_id`` (or ``None``),
#: ``reason`` ("revocation_endpoint", "account_page", "api", "logout", "admin", "reuse", "replay").
#: Sent once per sign-in that was live; a sign-in revoked already sends nothing again.
token_revoked = Signal()
#: A personal access token was created. Extra: ``token_id``, ``created_by`` (user or ``None``),
#: ``scope``.
pat_created = Signal()
#: A personal access token was used: its first use of the day (the site's ``TIME_ZONE``), noticed when
#: its "last used" time is written, so at most once per token per day. Extra: ``token_id``.
pat_used = Signal()
#: A personal access token was revoked. Extra: ``token_id``, ``revoked_by`` (user or ``None``: a
#: command). A token that dies with the sign-in that minted it sends no signal of its own (that
#: sign-in's ``token_revoked`` does).
pat_revoked = Signal()
#: A client registration changed (``post_save``/``post_delete`` of DOT's application: the admin,
#: commands, ``loaddata``). Extra: ``action`` ("created", "changed", "deleted"), ``client_id``.
#: ``client`` is ``None`` once deleted.
client_changed = Signal()
#: A signing key changed state. Extra: ``kid``, ``action`` ("created", "imported", "promoted",
#: "retired", "revoked").
key_changed = Signal()
