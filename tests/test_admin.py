"""Admins manage clients in the Django admin: DOT's application and our policy on one page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cells_oidc.models import ClientPolicy

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(default_clients: None, make_user: Any) -> Client:
    make_user("root", is_staff=True, is_superuser=True)
    http = Client()
    assert http.login(username="root", password="correct horse battery staple")
    return http


def form_data(response: Any) -> dict[str, Any]:
    """The data a browser would submit unchanged from an admin change page."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{name}"] = value
        for inline_form in formset.forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is None or value is False:
                    continue
                data[inline_form.add_prefix(name)] = "on" if value is True else value
    return data


def change_url(client_id: str) -> str:
    from cells_oidc.models import Client as OAuthClient

    return f"/admin/cells_oidc/client/{OAuthClient.objects.get(client_id=client_id).pk}/change/"


@pytest.mark.parametrize("client_id", ["cells-sync", "cells-mobile", "cells-client"])
def test_default_clients_save_unchanged_without_errors(admin_client: Client, client_id: str) -> None:
    page = admin_client.get(change_url(client_id))
    assert page.status_code == 200
    if client_id == "cells-sync":
        assert b"http://localhost:[3636-3666]/servers/callback" in page.content
    response = admin_client.post(change_url(client_id), form_data(page))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("redirect_uris", "http://localhost:[3666-3636]/cb", "range"),
        ("redirect_uris", "http://localhost:[0-99999]/cb", "range"),
        ("redirect_uris", "http://cells.example.com:[3636-3666]/cb", "loopback"),
        ("redirect_uris", "http://cells.example.com/cb", "https"),
        ("redirect_uris", "https://example.com/cb#frag", "fragment"),
        ("redirect_uris", "javascript://alert(1)", "javascript"),
        ("allowed_origins", "http://localhost:3000/", "path"),
    ],
)
def test_invalid_registrations_are_refused_and_explained(
    admin_client: Client, field: str, value: str, message: str
) -> None:
    page = admin_client.get(change_url("cells-sync"))
    data = form_data(page)
    data[field] = value
    response = admin_client.post(change_url("cells-sync"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors
    assert message in " ".join(errors[field]).lower()
    from oauth2_provider.models import Application

    stored = getattr(Application.objects.get(client_id="cells-sync"), field).split()
    assert value not in stored


def test_admin_adds_a_client_with_custom_scheme_and_policy(admin_client: Client) -> None:
    page = admin_client.get("/admin/cells_oidc/client/add/")
    assert page.status_code == 200
    data = form_data(page)
    data.update(
        {
            "name": "Notes app",
            "client_id": "notes-app",
            "client_type": "public",
            "authorization_grant_type": "authorization-code",
            "client_secret": "",
            "redirect_uris": "com.example.notes:/oauth2redirect\nhttp://127.0.0.1/callback",
            "cells_policy-0-require_pkce": "on",
            "cells_policy-0-allowed_scopes": "openid profile",
        }
    )
    data.pop("hash_client_secret", None)
    response = admin_client.post("/admin/cells_oidc/client/add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = ClientPolicy.objects.get(application__client_id="notes-app")
    assert policy.require_pkce is True
    assert policy.allowed_scopes == "openid profile"
    assert policy.application.redirect_uris == "com.example.notes:/oauth2redirect http://127.0.0.1/callback"


def test_dot_application_admin_is_replaced(admin_client: Client) -> None:
    assert admin_client.get("/admin/oauth2_provider/application/").status_code == 404
    assert admin_client.get("/admin/cells_oidc/client/").status_code == 200


# ---- issue 12: the admin's rough edges -------------------------------------------------------------
def test_the_client_page_offers_no_broken_view_on_site_link(admin_client: Client) -> None:
    # DOT's Application.get_absolute_url names DOT's management views, which are not mounted: the
    # admin's "View on site" link led to a 500 (NoReverseMatch).
    page = admin_client.get(change_url("cells-sync"))
    assert page.status_code == 200
    assert b"/admin/r/" not in page.content
    assert b"viewsitelink" not in page.content


def test_the_policy_is_titled_with_the_clients_name(admin_client: Client) -> None:
    page = admin_client.get(change_url("cells-sync"))
    assert page.status_code == 200
    label = next(iter(page.context["inline_admin_formsets"][0])).original
    assert str(label) == "CellsSync Application"
    assert b"CellsSync Application" in page.content
    assert b"policy of" not in page.content
    from cells_oidc.models import Client as OAuthClient

    unnamed = OAuthClient.objects.create(
        client_id="unnamed",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://app.example.com/cb",
        algorithm="RS256",
    )
    assert str(ClientPolicy.objects.create(application=unnamed)) == "unnamed"


def test_secret_fields_show_only_for_confidential_clients(admin_client: Client) -> None:
    from django.contrib.auth.hashers import check_password
    from django.core.management import call_command

    public = admin_client.get(change_url("cells-sync"))
    assert b'name="client_secret"' not in public.content
    assert b'name="hash_client_secret"' not in public.content

    call_command(
        "cells_oidc_client", "set", "partner", "--confidential", "--redirect-uri", "https://p.example/cb"
    )
    from cells_oidc.models import Client as OAuthClient

    stored = OAuthClient.objects.get(client_id="partner").client_secret
    page = admin_client.get(change_url("partner"))
    assert b'name="client_secret"' in page.content
    assert b'name="hash_client_secret"' in page.content
    # A public client's page saved unchanged keeps working (the hidden fields are not required).
    response = admin_client.post(change_url("cells-sync"), form_data(public))
    assert response.status_code == 302
    assert OAuthClient.objects.get(client_id="partner").client_secret == stored
    assert not check_password("", stored)


@pytest.mark.parametrize("model", ["application", "accesstoken", "refreshtoken", "grant", "idtoken"])
def test_dot_admins_are_replaced_by_clients_and_token_families(admin_client: Client, model: str) -> None:
    # Deleting a token's row would not revoke a JWT that APIs verify locally (docs/admin.md).
    assert admin_client.get(f"/admin/oauth2_provider/{model}/").status_code == 404
    index = admin_client.get("/admin/")
    assert b"/admin/oauth2_provider/" not in index.content
    assert b"/admin/cells_oidc/tokenfamily/" in index.content


def test_every_option_of_client_set_is_documented() -> None:
    import argparse

    from cells_oidc.management.commands.cells_oidc_client import Command

    parser = Command().create_parser("manage.py", "cells_oidc_client")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (name, action.option_strings or action.dest)
    text = subparsers.choices["set"].format_help()
    for option in ("--name", "--public", "--confidential", "--redirect-uri", "--post-logout-uri", "--origin"):
        assert option in text
    for option in ("--pkce", "--confirm", "--first-party", "--scopes", "--allow-admin-scope"):
        assert option in text


@pytest.mark.parametrize("page", ["change", "delete"])
def test_an_empty_to_field_means_the_primary_key(admin_client: Client, page: str) -> None:
    # Django looked up a field named "" (FieldDoesNotExist, a 500).
    url = change_url("cells-sync").replace("/change/", f"/{page}/")
    response = admin_client.get(f"{url}?_to_field=")
    from cells_oidc.models import Client as OAuthClient

    assert response.status_code == 200, response.status_code
    assert OAuthClient.objects.get(client_id="cells-sync").name.encode() in response.content


@pytest.mark.parametrize(
    ("model", "field"), [("auditevent", "time"), ("logoutdelivery", "created")], ids=["audit", "logout"]
)
def test_a_date_hierarchy_year_past_a_c_long_is_a_bad_lookup(
    admin_client: Client, model: str, field: str
) -> None:
    # OverflowError while the list was built (a 500); now Django's answer to any bad lookup.
    response = admin_client.get(f"/admin/cells_oidc/{model}/?{field}__year=99999999999999999999")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
    assert admin_client.get(f"/admin/cells_oidc/{model}/").status_code == 200
