"""Browser tests: Playwright (Python) driving Debian's Chromium against pytest-django's live server.

They are marked ``browser`` and skipped, with the reason, when ``/usr/bin/chromium`` is absent
(install it with ``apt-get install chromium``; never a downloaded browser). With
``CELLS_OIDC_REQUIRE_BROWSER=1`` (set by ``.ci/run`` when Chromium is installed) a missing browser
is an error instead. Screenshots of every page go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CELLS_OIDC_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"CELLS_OIDC_REQUIRE_BROWSER is set but {CHROMIUM} does not exist.")
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the "
        "browser tests"
    )
    for item in items:
        if "browser" in item.keywords and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module.

    Playwright's sync API keeps an event loop running in this thread, which Django takes for an
    async context; the ORM calls of the tests themselves are synchronous, so the check is lifted
    while the browser lives (and only then).
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def site(live_server: Any, settings: Any) -> Any:
    """The live server as the public site: issuer, serverName and the OOB page follow its URL."""
    from django.core.cache import cache
    from django.core.management import call_command

    settings.CELLS_OIDC_SITE_URL = live_server.url
    call_command("loaddata", "default_clients", verbosity=0)
    cache.clear()
    return live_server


@pytest.fixture
def screenshot() -> Any:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
