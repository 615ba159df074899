"""Browser tests: the app under the harness (the e2e fixtures) and headless Chromium driven by Playwright.

Chromium is Debian's package (``apt-get install chromium``): Playwright's own browser download does not work
here. Tests skip only when no Chromium binary or no Playwright package is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.e2e.conftest import _app, _start_app  # noqa: F401  (fixtures shared with the e2e tests)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


Browser = Callable[[], AbstractContextManager[Any]]


@pytest.fixture(name="browser")
def _browser() -> Browser:
    """``with browser() as chromium:`` a headless Chromium (Playwright's sync API runs its own event loop, so
    tests open it after any ``asyncio.run`` setup)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):  # ./dev test installs it: in CI a missing browser is a failure, not a skip
            pytest.fail("chromium is not installed; ./dev test should have installed it")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")

    @contextlib.contextmanager
    def launch() -> Iterator[Any]:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()

    return launch
