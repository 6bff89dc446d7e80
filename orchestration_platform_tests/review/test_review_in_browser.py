"""People decide on the review page in a real browser (headless Chromium through the sign-in proxy), on a
model really trained, and the deployment sensor then deploys the approved version and refuses the
rejected one. The alert webhook announces each pending approval with a link to the page."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from orchestration_platform.defs.ml.sensors import approved_model_deployments
from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY, produce_hours
from orchestration_platform_tests.review.conftest import PROXY_SECRET, USERS
from orchestration_platform_tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOT = Path("/tmp/orchestration_platform_review_page.png")


@pytest.fixture
def webhook():
    with webhook_receiver() as hook:
        yield hook


def _deployments(instance, resources) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return approved_model_deployments(context)


def _decide_in_browser(browser, url: str, user: str, version: str, button: str, comment: str, screenshot=None):
    from playwright.sync_api import expect

    context = browser.new_context(http_credentials={"username": user, "password": USERS[user][0]})
    try:
        page = context.new_page()
        page.goto(url)
        card = page.locator(f"#fraud_detector-{version}")
        expect(card).to_be_visible(timeout=30_000)
        shown = card.inner_text() + card.inner_html()
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        card.get_by_label("Comment").fill(comment)
        card.get_by_role("button", name=button).click()
        status = page.get_by_role("status")
        expect(status).to_be_visible(timeout=30_000)
        return status.inner_text(), shown
    finally:
        context.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)")
def test_approve_and_reject_on_the_review_page_then_the_sensor_deploys_or_refuses(
    kafka_bootstrap, ml_env, ml_resources, instance, serving, serving_resource, review_app, signin_proxy,
    webhook, monkeypatch,
):  # fmt: skip
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("REVIEW_PAGE_URL", signin_proxy.url)
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=4, per_hour=1000, seed=1)
    flow.consume(ml_resources, instance)
    flow.compute_hours(ml_resources, instance, DAY, 4)
    resources = {**ml_resources, "model_serving": serving_resource,
                 "alert_webhook": AlertWebhookResource(url=f"{webhook.url}/hooks/T0KEN")}
    first = flow.train(resources, instance, DAY + timedelta(hours=4), 4)
    assert first.success
    v1 = flow.candidate_version(first)
    (announcement,) = [alert["body"] for alert in webhook.received]
    assert announcement["review_url"] == f"{signin_proxy.url}/#fraud_detector-{v1}" and v1 in announcement["text"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            refused, _ = _decide_in_browser(browser, announcement["review_url"], "mallory", v1, "Approve", "mine")
            assert "Refused" in refused and "reviewer 'mallory' (groups: staff) is not an approver" in refused
            assert _deployments(instance, resources).run_requests == []

            approved, _ = _decide_in_browser(browser, announcement["review_url"], "alice", v1, "Approve",
                                             "holdout AUC well above baseline")  # fmt: skip
            assert f"Version {v1} is approved (by alice)" in approved
            (request,) = _deployments(instance, resources).run_requests
            assert request.tags == {"ml/model_version": v1, "ml/approved_by": "alice"}
            assert flow.deploy(resources, instance, request.run_config).success
            assert serving.get("/version").json()["version"] == v1

            # Same data and seed: as good as the served model, so it is offered again; bob rejects it.
            second = flow.train(resources, instance, DAY + timedelta(hours=4), 4)
            assert second.success
            v2 = flow.candidate_version(second)
            rejected, card = _decide_in_browser(browser, webhook.received[-1]["body"]["review_url"], "bob", v2, "Reject",
                                                "no new data since the last version", SCREENSHOT)  # fmt: skip
            assert f"Version {v2} is rejected (by bob)" in rejected
            assert f"served v{v1} ROC AUC" in card and "<svg" in card and "asked by" in card
        finally:
            browser.close()
    assert _deployments(instance, resources).run_requests == []
    refused_deploy = flow.deploy(resources, instance, {"ops": {"ml__served_model": {"config": {"version": v2}}}})
    assert not refused_deploy.success
    failure = next(e for e in refused_deploy.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"version {v2} is rejected, not approved" in failure.event_specific_data.error.message
    assert serving.get("/version").json()["version"] == v1
    assert PROXY_SECRET not in review_app.output() + signin_proxy.output() + json.dumps(webhook.received)
