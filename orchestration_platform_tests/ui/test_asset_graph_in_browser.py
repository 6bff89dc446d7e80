"""A person's path through the UI: `dagster dev` on the local stack, headless Chromium opens the
daily_cases ingestion job's asset graph, materializes the latest day from the Materialize dialog, and the run
succeeds (confirmed through the GraphQL API, for a run id that did not exist before the click)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from orchestration_platform_tests.ui.dagster_dev import running_dagster_dev, runs

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path("/tmp/orchestration_platform_ingestion_ui.png")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)")
def test_materialize_the_latest_day_from_the_asset_graph(tmp_path, platform_environment) -> None:
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "data"
    env = {**platform_environment, "PLATFORM_DATA_DIR": str(data),
           "INGESTION_WAREHOUSE_URL": f"sqlite:///{data / 'warehouse.sqlite'}",
           "INGESTION_LANDING_ZONE": str(tmp_path / "landing"),
           "INGESTION_CSV_URL_TEMPLATE": f"{platform_environment['DEMO_SOURCES_URL']}/csv/daily_cases/{{date}}.csv"}
    with running_dagster_dev(tmp_path, env) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base_url}/locations/orchestration_platform/jobs/daily_cases_ingestion")
            for name in ("raw", "cleaned"):  # the job's assets: ingestion/daily_cases/raw and .../cleaned
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(SCREENSHOT))

            before = set(runs(base_url))
            page.get_by_role("button", name="Materialize all").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("button", name="Latest", exact=True).click()
            launch = dialog.get_by_role("button", name="Launch").last
            expect(launch).to_be_enabled(timeout=10_000)
            launch.click()

            deadline = time.monotonic() + 120
            new: dict[str, dict] = {}
            while time.monotonic() < deadline:
                new = {run_id: run for run_id, run in runs(base_url).items() if run_id not in before}
                if new and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in new.values()):
                    break
                time.sleep(1)
            assert new, "no run was launched by the click"
            assert [r["status"] for r in new.values()] == ["SUCCESS"], new
            (run,) = new.values()
            day = run["tags"].get("dagster/partition") or run["tags"].get("dagster/asset_partition_range_end")
        finally:
            browser.close()
    with sqlite3.connect(data / "warehouse.sqlite") as conn:
        stored = conn.execute("SELECT DISTINCT partition_date FROM daily_cases").fetchall()
        rows = conn.execute("SELECT count(*) FROM daily_cases").fetchone()[0]
    assert stored == [(day,)] and rows > 0
