"""``manage.py cells_oidc_client``: register and manage OAuth clients from the command line.

    manage.py cells_oidc_client list
    manage.py cells_oidc_client show CLIENT_ID
    manage.py cells_oidc_client set CLIENT_ID [--name N] [--confidential|--public]
        [--redirect-uri URI ...] [--post-logout-uri URI ...] [--origin ORIGIN ...]
        [--pkce/--no-pkce] [--confirm/--no-confirm] [--first-party/--third-party] [--scopes "a b"]
        [--allow-admin-scope/--no-allow-admin-scope] [--client-credentials]
        [--auth-method METHOD] [--jwks-file FILE | --jwks-uri URL]
        [--backchannel-logout-uri URL] [--backchannel-logout-session-required/--no-...]
    manage.py cells_oidc_client rotate-secret CLIENT_ID [--overlap 7d]
    manage.py cells_oidc_client initial-token [--expires 1d] [--multi-use] [--label TEXT]
    manage.py cells_oidc_client remove CLIENT_ID

``set`` creates the client or updates only the given fields, so running it twice changes nothing.
Every value goes through the same validation as the admin. A new confidential client's secret is
printed once; only its SHA-256 is stored (:mod:`cells_oidc.internal.client_secrets`). ``rotate-secret
--overlap 7d`` keeps the previous secret valid for seven more days, time to deploy the new one.

``--allow-admin-scope`` lets the client ask for ``cells_oidc:admin``, with which an administrator's
access token may mint personal access tokens for other users and revoke theirs (docs/api.md).
Leave it off unless the client is an administration tool you trust with that power.

``--client-credentials`` makes a new confidential client a service account: it obtains tokens for
itself (RFC 6749 §4.4), whose ``sub`` is its client id, with no user (docs/service-accounts.md).
``--auth-method private_key_jwt`` with ``--jwks-file`` or ``--jwks-uri`` makes it prove itself
with a JWT signed by its own key instead of the secret (RFC 7523 §2.2).

``initial-token`` issues an initial access token for dynamic client registration (RFC 7591 §3,
``CELLS_OIDC_REGISTRATION = "initial_access_token"``), printed once; only its checksum is stored
(docs/registration.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from cells_oidc.internal import client_auth
from cells_oidc.models import Client, ClientPolicy, policy_for, validate_application

AUTH_METHODS = ("client_secret", "client_secret_basic", "client_secret_post", client_auth.PRIVATE_KEY_JWT)


class Command(BaseCommand):
    help = "Register and manage OAuth clients (list, show, set, rotate-secret, remove, initial-token)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="List the clients.")
        parsers = {}
        for name, what in (
            ("show", "Print a client's registration and policy."),
            ("rotate-secret", "Give a confidential client a new secret, printed once."),
            ("remove", "Delete a client and every token issued to it."),
        ):
            parsers[name] = sub.add_parser(name, help=what, description=what)
            parsers[name].add_argument("client_id", help="The client's client_id.")
        parsers["rotate-secret"].add_argument(
            "--overlap",
            default="0",
            help="How long the previous secret keeps working (e.g. 7d, 12h, 3600; default 0: it stops "
            "at once). Deploy the new secret within the overlap.",
        )
        initial = sub.add_parser(
            "initial-token",
            help="Issue an initial access token for dynamic client registration, printed once.",
            description="Issue an initial access token (RFC 7591 §3) with which a developer registers "
            'a client when CELLS_OIDC_REGISTRATION is "initial_access_token". Only its checksum is '
            "stored; it is printed once.",
        )
        initial.add_argument(
            "--expires", default="1d", help="Lifetime, e.g. 1h, 1d, 2w (default 1d, at most 90d)."
        )
        initial.add_argument(
            "--multi-use",
            action="store_true",
            help="May register several clients until it expires (default: one client).",
        )
        initial.add_argument("--label", default="", help="A note for the administrators (who it is for).")
        put = sub.add_parser(
            "set",
            help="Create a client, or update the given fields of one.",
            description="Create the client CLIENT_ID, or update only the options given (running it "
            "twice changes nothing). Values are validated as in the admin; a new confidential "
            "client's secret is printed once.",
        )
        put.add_argument("client_id", help="The client_id the application sends.")
        put.add_argument("--name", help="The name shown to users on the consent and account pages.")
        kind = put.add_mutually_exclusive_group()
        kind.add_argument(
            "--public",
            dest="client_type",
            action="store_const",
            const=Client.CLIENT_PUBLIC,
            help="A native or browser application that cannot keep a secret (the default for a new "
            "client; RFC 6749 §2.1). Fixed once the client exists.",
        )
        kind.add_argument(
            "--confidential",
            dest="client_type",
            action="store_const",
            const=Client.CLIENT_CONFIDENTIAL,
            help="A server-side application that authenticates with a secret (printed once).",
        )
        put.add_argument(
            "--redirect-uri",
            action="append",
            dest="redirect_uris",
            metavar="URI",
            help="A redirect URI (repeat for several; replaces the list). Matched exactly, plus "
            "loopback port ranges http://127.0.0.1:[3636-3666]/cb, serverName and custom schemes "
            "(docs/redirect-uris.md).",
        )
        put.add_argument(
            "--post-logout-uri",
            action="append",
            dest="post_logout_uris",
            metavar="URI",
            help="Where RP-initiated logout may send the user back (repeat; replaces the list).",
        )
        put.add_argument(
            "--origin",
            action="append",
            dest="origins",
            metavar="ORIGIN",
            help="An origin (scheme://host[:port]) whose JavaScript may call the token, userinfo and "
            "revocation endpoints: CORS (repeat; replaces the list).",
        )
        put.add_argument(
            "--pkce",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Require an S256 PKCE challenge (RFC 7636; default for a new client: yes). "
            "--no-pkce only for legacy public clients that send none.",
        )
        put.add_argument(
            "--confirm",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Ask a signed-in user 'Continue as …' before a code goes to a public native client "
            "(RFC 8252 §8.6; default: yes).",
        )
        put.add_argument(
            "--first-party",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="A client of this site itself: no consent page (default: no, users are asked).",
        )
        put.add_argument(
            "--scopes",
            metavar='"SCOPE ..."',
            help='The scopes the client may ask for, space-separated (e.g. "openid profile"); '
            '"" allows every configured scope.',
        )
        put.add_argument(
            "--allow-admin-scope",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="May the client ask for the administrative scope cells_oidc:admin (default: no)?",
        )
        put.add_argument(
            "--require-par",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Accept only pushed authorization requests from the client (RFC 9126 §5; default: no).",
        )
        put.add_argument(
            "--backchannel-logout-uri",
            metavar="URL",
            help="Where a logout token is POSTed when a user's session with the client ends (OpenID "
            'Connect Back-Channel Logout §2.2; https, http only on loopback, no fragment); "" clears.',
        )
        put.add_argument(
            "--backchannel-logout-session-required",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="The client needs the sid claim in logout tokens (§2.2; default: no).",
        )
        put.add_argument(
            "--require-dpop",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Issue tokens to the client only with a DPoP proof, bound to its key (RFC 9449; "
            "default: no).",
        )

        put.add_argument(
            "--client-credentials",
            action="store_true",
            default=None,
            help="A new confidential client is a service account: client credentials grant (RFC 6749 "
            "§4.4), tokens for itself with no user. Fixed once the client exists.",
        )
        put.add_argument(
            "--auth-method",
            choices=AUTH_METHODS,
            help="How a confidential client authenticates at the token endpoint (RFC 7591 §2): "
            "client_secret (Basic or body, the default), client_secret_basic, client_secret_post, or "
            "private_key_jwt (RFC 7523 §2.2; needs --jwks-file or --jwks-uri).",
        )
        keys = put.add_mutually_exclusive_group()
        keys.add_argument(
            "--jwks-file",
            metavar="FILE",
            help="The client's public keys, a JWK Set in a JSON file (replaces --jwks-uri).",
        )
        keys.add_argument(
            "--jwks-uri",
            metavar="URL",
            help='Where the client publishes its JWK Set (https; http only on loopback); "" clears.',
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self.list()
            return
        if action == "initial-token":
            self.initial_token(options)
            return
        client_id = options["client_id"]
        if action == "set":
            self.set(client_id, options)
            return
        client = Client.objects.filter(client_id=client_id).first()
        if client is None:
            raise CommandError(f"No client {client_id!r}.")
        if action == "show":
            self.show(client)
        elif action == "remove":
            client.delete()
            self.stdout.write(self.style.SUCCESS(f"Removed {client_id} and every token issued to it."))
        elif action == "rotate-secret":
            self.rotate_secret(client, options["overlap"])

    def rotate_secret(self, client: Client, overlap_text: str) -> None:
        from cells_oidc.internal import client_secrets
        from cells_oidc.management.commands.cells_oidc_cleanup import parse_duration

        if client.client_type != Client.CLIENT_CONFIDENTIAL:
            raise CommandError(f"{client.client_id} is a public client: it has no secret.")
        overlap = parse_duration(overlap_text)
        secret = client_secrets.issue(client, overlap=overlap)
        self.stdout.write(self.style.SUCCESS(f"New secret of {client.client_id} (shown once): {secret}"))
        if overlap:
            self.stdout.write(
                f"The previous secret keeps working for {overlap} "
                f"(until {timezone.now() + overlap:%Y-%m-%d %H:%M %Z})."
            )
        else:
            self.stdout.write("The previous secret no longer works.")

    def list(self) -> None:
        for client in Client.objects.select_related("cells_policy").order_by("client_id"):
            policy = policy_for(client)
            self.stdout.write(
                f"{client.client_id:24} {client.client_type:12} "
                f"pkce={'required' if policy.require_pkce else 'optional':8} {client.name}"
            )

    def show(self, client: Client) -> None:
        policy = policy_for(client)
        rows = [
            ("client_id", client.client_id),
            ("name", client.name),
            ("type", client.client_type),
            ("first party (no consent)", client.skip_authorization),
            ("redirect URIs", " ".join(client.redirect_uris.split())),
            ("post-logout URIs", " ".join(client.post_logout_redirect_uris.split())),
            ("CORS origins", " ".join(client.allowed_origins.split())),
            ("PKCE required", policy.require_pkce),
            ("confirm when signed in", policy.confirm_existing_session),
            ("allowed scopes", policy.allowed_scopes or "(all)"),
            ("admin scope allowed", policy.allow_admin_scope),
            ("allowed resources", " ".join(policy.allowed_resources.split()) or "(none)"),
            ("PAR required", policy.require_pushed_authorization_requests),
            ("DPoP required", policy.require_dpop),
            ("back-channel logout URL", policy.backchannel_logout_uri or "(none)"),
            ("back-channel logout sid", policy.backchannel_logout_session_required),
            ("grant", client.authorization_grant_type),
            ("authentication", policy.token_endpoint_auth_method or "client_secret (Basic or body)"),
            ("public keys", policy.jwks_uri or ("inline JWKS" if policy.jwks else "(none)")),
            ("registered dynamically", hasattr(client, "cells_registration")),
        ]
        for label, value in rows:
            self.stdout.write(f"{label:26} {value}")

    @transaction.atomic
    def set(self, client_id: str, options: dict[str, Any]) -> None:
        client = Client.objects.filter(client_id=client_id).first()
        created = client is None
        secret = None
        if client is None:
            service = bool(options.get("client_credentials"))
            if service and options["client_type"] == Client.CLIENT_PUBLIC:
                raise CommandError("A service account is a confidential client (RFC 6749 §4.4).")
            client = Client(
                client_id=client_id,
                client_type=Client.CLIENT_CONFIDENTIAL
                if service
                else options["client_type"] or Client.CLIENT_PUBLIC,
                authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS
                if service
                else Client.GRANT_AUTHORIZATION_CODE,
                algorithm=Client.RS256_ALGORITHM,
            )
            if client.client_type != Client.CLIENT_CONFIDENTIAL:
                client.client_secret = ""
                client.hash_client_secret = False
        elif options["client_type"] and options["client_type"] != client.client_type:
            raise CommandError("The type of an existing client cannot change; remove it and create it again.")
        elif (
            options.get("client_credentials")
            and client.authorization_grant_type != client.GRANT_CLIENT_CREDENTIALS
        ):
            raise CommandError(
                "The grant of an existing client cannot change; remove it and create it again."
            )
        if options["name"] is not None:
            client.name = options["name"]
        for option, field in (
            ("redirect_uris", "redirect_uris"),
            ("post_logout_uris", "post_logout_redirect_uris"),
            ("origins", "allowed_origins"),
        ):
            if options[option] is not None:
                setattr(client, field, " ".join(options[option]))
        if options["first_party"] is not None:
            client.skip_authorization = options["first_party"]
        try:
            validate_application(client)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(problems) from exc
        client.save()
        policy = ClientPolicy.objects.filter(application=client).first() or ClientPolicy(application=client)
        if options["pkce"] is not None:
            policy.require_pkce = options["pkce"]
        if options["confirm"] is not None:
            policy.confirm_existing_session = options["confirm"]
        if options["scopes"] is not None:
            policy.allowed_scopes = " ".join(options["scopes"].split())
        if options["allow_admin_scope"] is not None:
            policy.allow_admin_scope = options["allow_admin_scope"]
        if options["require_par"] is not None:
            policy.require_pushed_authorization_requests = options["require_par"]
        if options["require_dpop"] is not None:
            policy.require_dpop = options["require_dpop"]
        self._set_backchannel_logout(policy, options)
        self._set_authentication(client, policy, options)
        policy.save()
        if created and client.client_type == Client.CLIENT_CONFIDENTIAL:
            from cells_oidc.internal import client_secrets

            secret = client_secrets.issue(client)
        self.stdout.write(self.style.SUCCESS(f"{'Created' if created else 'Updated'} {client_id}."))
        if secret:
            self.stdout.write(f"Client secret (shown once, only its hash is stored): {secret}")

    def _set_backchannel_logout(self, policy: ClientPolicy, options: dict[str, Any]) -> None:
        """--backchannel-logout-uri, --backchannel-logout-session-required (Back-Channel Logout §2.2)."""
        from cells_oidc.internal.backchannel import logout_uri_error

        uri = options.get("backchannel_logout_uri")
        if uri is not None:
            uri = uri.strip()
            problem = logout_uri_error(uri) if uri else None
            if problem:
                raise CommandError(f"--backchannel-logout-uri: {problem}.")
            policy.backchannel_logout_uri = uri
        if options.get("backchannel_logout_session_required") is not None:
            policy.backchannel_logout_session_required = options["backchannel_logout_session_required"]

    def _set_authentication(self, client: Client, policy: ClientPolicy, options: dict[str, Any]) -> None:
        """--auth-method, --jwks-file, --jwks-uri: validated as in the admin (RFC 7591 §2)."""
        method = options.get("auth_method")
        if method is not None:
            policy.token_endpoint_auth_method = "" if method == "client_secret" else method
        if options.get("jwks_file"):
            try:
                with open(options["jwks_file"], encoding="utf-8") as handle:
                    policy.jwks = handle.read().strip()
            except OSError as exc:
                raise CommandError(f"Cannot read {options['jwks_file']}: {exc.strerror}") from exc
            policy.jwks_uri = ""
        if options.get("jwks_uri") is not None:
            policy.jwks_uri = options["jwks_uri"].strip()
            if policy.jwks_uri:
                policy.jwks = ""
        errors = client_auth.policy_errors(policy)
        if errors:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
            raise CommandError(problems)

    def initial_token(self, options: dict[str, Any]) -> None:
        """An initial access token for dynamic registration (RFC 7591 §3), printed once."""
        from datetime import timedelta

        from cells_oidc.conf import app_settings
        from cells_oidc.internal import registration
        from cells_oidc.internal.pat import PersonalTokenError, parse_duration

        try:
            lifetime = parse_duration(options["expires"])
        except (PersonalTokenError, ValueError) as exc:
            raise CommandError(f"--expires: {exc}") from exc
        if lifetime <= timedelta(0) or lifetime > timedelta(days=90):
            raise CommandError("--expires: between 1s and 90d.")
        row, secret = registration.issue_initial_token(
            lifetime=lifetime, multi_use=options["multi_use"], label=options["label"]
        )
        uses = "any number of clients" if row.multi_use else "one client"
        self.stdout.write(
            self.style.SUCCESS(
                f"Initial access token (shown once, registers {uses} until {row.expires:%Y-%m-%d %H:%M %Z}):"
            )
        )
        self.stdout.write(secret)
        if app_settings.REGISTRATION != "initial_access_token":
            self.stderr.write(
                f'CELLS_OIDC_REGISTRATION is "{app_settings.REGISTRATION}": set it to "initial_access_token" '
                "for the registration endpoint to ask for this token."
            )
