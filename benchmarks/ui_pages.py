"""How long the Dagster UI's main pages take to load in a real browser (Debian chromium via Playwright).

A page counts as loaded when what a person came for is on screen: Lineage shows the asset groups of the
graph with the "Materialize all (N)" button (the asset graph and its live data are in); Catalog lists the
assets (an asset row); Runs shows its table with rows (or says there are none). One browser context
keeps its cache, as a person's open tab does, so the figure is the page's data, not the JS bundle.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 600_000  # a page that takes minutes is a finding to report, not an error


def _lineage_loaded(page) -> None:
    page.get_by_role("button", name=re.compile(r"Materialize all \(\d+\)")).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.locator('[data-tooltip="ingestion"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)  # the graph's group node


def _catalog_loaded(page) -> None:
    page.get_by_text(re.compile(r"^ml / payment_events$")).first.wait_for(timeout=PAGE_TIMEOUT_MS)


def _runs_loaded(page) -> None:
    page.locator("text=/^(View|No runs found.*)$/").first.wait_for(timeout=PAGE_TIMEOUT_MS)


PAGES: dict[str, tuple[str, Callable]] = {
    "Lineage": ("/asset-groups", _lineage_loaded),
    "Catalog": ("/assets", _catalog_loaded),
    "Runs": ("/runs", _runs_loaded),
}


@contextmanager
def browser_pages(base_url: str) -> Iterator[Callable[[str], float]]:
    """Yield `load(page_name) -> seconds`, with the UI opened once so the static files are cached."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            warm = context.new_page()
            warm.goto(f"{base_url}/overview", timeout=PAGE_TIMEOUT_MS)
            warm.close()

            def load(name: str) -> float:
                path, loaded = PAGES[name]
                page = context.new_page()
                try:
                    started = time.monotonic()
                    page.goto(base_url + path, timeout=PAGE_TIMEOUT_MS)
                    loaded(page)
                    return time.monotonic() - started
                finally:
                    page.close()

            yield load
        finally:
            browser.close()
