"""The admin's "test a redirect URI" box in headless Chromium: type a URI, press Enter, read why."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cells_oidc.models import Client as OAuthClient
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_redirect_tester_in_chromium(chromium: Any, site: Any, make_user: Any, screenshot: Any) -> None:
    make_user("root", is_staff=True, is_superuser=True)
    pk = OAuthClient.objects.get(client_id="cells-sync").pk
    context = chromium.new_context(base_url=site.url)
    page = context.new_page()
    try:
        page.goto(f"/admin/login/?next=/admin/cells_oidc/client/{pk}/change/")
        page.fill("#id_username", "root")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"**/admin/cells_oidc/client/{pk}/change/")

        box = page.locator("#redirect-tester")
        assert "Test a redirect URI" in box.inner_text()
        field = page.get_by_label("Redirect URI to test")
        field.fill("http://localhost:3651/servers/callback")
        field.press("Enter")
        result = page.locator("#redirect-test-result")
        result.wait_for()
        assert result.inner_text().startswith("Allowed.")
        assert "http://localhost:[3636-3666]/servers/callback" in result.inner_text()
        # The URI stays in the box, ready to be edited.
        assert (
            page.get_by_label("Redirect URI to test").input_value()
            == "http://localhost:3651/servers/callback"
        )
        screenshot(page, "admin-redirect-tester-allowed")

        page.get_by_label("Redirect URI to test").fill("http://localhost:4000/servers/callback")
        page.click("#redirect-test-submit")
        page.wait_for_load_state()
        text = page.locator("#redirect-test-result").inner_text()
        assert text.startswith("Refused.") and "outside the range" in text, text
        assert "[3636-3666]/servers/callback" in text  # the closest registered value
        screenshot(page, "admin-redirect-tester-refused")

        # The client's own form is still there and saves.
        page.click("input[name=_save]")
        # (The browser keeps the tester's #fragment across the redirect, RFC 9110 §10.2.2.)
        page.wait_for_url(re.compile(r".*/admin/cells_oidc/client/(#.*)?$"))
        assert "was changed successfully" in page.content()
    finally:
        context.close()
