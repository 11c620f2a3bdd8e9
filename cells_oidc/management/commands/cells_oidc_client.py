"""``manage.py cells_oidc_client``: register and manage OAuth clients from the command line.

    manage.py cells_oidc_client list
    manage.py cells_oidc_client show CLIENT_ID
    manage.py cells_oidc_client set CLIENT_ID [--name N] [--confidential|--public]
        [--redirect-uri URI ...] [--post-logout-uri URI ...] [--origin ORIGIN ...]
        [--pkce/--no-pkce] [--confirm/--no-confirm] [--first-party/--third-party] [--scopes "a b"]
        [--allow-admin-scope/--no-allow-admin-scope]
    manage.py cells_oidc_client rotate-secret CLIENT_ID
    manage.py cells_oidc_client remove CLIENT_ID

``set`` creates the client or updates only the given fields, so running it twice changes nothing.
Every value goes through the same validation as the admin. A new confidential client's secret is
printed once; only its hash is stored.

``--allow-admin-scope`` lets the client ask for ``cells_oidc:admin``, with which an administrator's
access token may mint personal access tokens for other users and revoke theirs (docs/api.md).
Leave it off unless the client is an administration tool you trust with that power.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from oauth2_provider.generators import generate_client_secret

from cells_oidc.models import Client, ClientPolicy, policy_for, validate_application


class Command(BaseCommand):
    help = "Register and manage OAuth clients (list, show, set, rotate-secret, remove)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="List the clients.")
        for name, what in (
            ("show", "Print a client's registration and policy."),
            ("rotate-secret", "Give a confidential client a new secret, printed once."),
            ("remove", "Delete a client and every token issued to it."),
        ):
            sub.add_parser(name, help=what, description=what).add_argument(
                "client_id", help="The client's client_id."
            )
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

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self.list()
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
            if client.client_type != Client.CLIENT_CONFIDENTIAL:
                raise CommandError(f"{client_id} is a public client: it has no secret.")
            secret = generate_client_secret()
            client.client_secret = secret
            client.hash_client_secret = True
            client.save()
            self.stdout.write(self.style.SUCCESS(f"New secret of {client_id} (shown once): {secret}"))

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
        ]
        for label, value in rows:
            self.stdout.write(f"{label:26} {value}")

    @transaction.atomic
    def set(self, client_id: str, options: dict[str, Any]) -> None:
        client = Client.objects.filter(client_id=client_id).first()
        created = client is None
        secret = None
        if client is None:
            client = Client(
                client_id=client_id,
                client_type=options["client_type"] or Client.CLIENT_PUBLIC,
                authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
                algorithm=Client.RS256_ALGORITHM,
            )
            if client.client_type == Client.CLIENT_CONFIDENTIAL:
                secret = generate_client_secret()
                client.client_secret = secret
            else:
                client.client_secret = ""
                client.hash_client_secret = False
        elif options["client_type"] and options["client_type"] != client.client_type:
            raise CommandError("The type of an existing client cannot change; remove it and create it again.")
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
        policy.save()
        self.stdout.write(self.style.SUCCESS(f"{'Created' if created else 'Updated'} {client_id}."))
        if secret:
            self.stdout.write(f"Client secret (shown once, only its hash is stored): {secret}")
