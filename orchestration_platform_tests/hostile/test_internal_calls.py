"""Calls the platform makes to services of its own (model serving's checks, the alerts webhook) are bounded
like reads from sources: a server that stalls, trickles or answers without end cannot hold the deployment
or the alert, and a webhook's secret URL never reaches a log."""

from __future__ import annotations

import logging
import time

import pytest

from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.lib.ml.serving_switch import verify_serving
from orchestration_platform_tests.hostile.server import HostileServer


@pytest.fixture(scope="module")
def hostile():
    server = HostileServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize(("case", "reason"), [
    ("trickle_headers", "no complete answer within deadline_s="),  # never finishes its headers
    ("trickle", "no complete answer within deadline_s="),  # a byte every half second, for ever
    ("endless", "max_response_bytes=1048576"),  # a body without end: refused at 1 MiB, at once
    ("bomb", "max_response_bytes=1048576"),  # 8 GiB once inflated
])
def test_serving_verification_ends_on_time_with_the_reason(hostile, case: str, reason: str) -> None:
    started = time.monotonic()
    problem = verify_serving(f"{hostile.url}/{case}", "7", timeout_s=2)
    assert time.monotonic() - started < 4
    assert problem is not None and f"serving at {hostile.url}/{case} did not answer properly" in problem
    assert reason in problem


@pytest.mark.parametrize(("case", "accepted"), [("ok", True), ("trickle_headers", False), ("trickle", False),
                                                ("endless", False)])
def test_the_alert_webhook_gives_up_on_time_and_never_logs_its_url(hostile, caplog, case: str,
                                                                   accepted: bool) -> None:
    webhook = AlertWebhookResource(url=f"{hostile.url}/{case}?token=s3cret-hook", timeout_s=1.0)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):  # even with every logger at DEBUG (httpx logs request URLs at INFO)
        assert webhook.post({"text": "run 42 failed"}) is accepted
    assert time.monotonic() - started < 3
    assert "s3cret-hook" not in caplog.text
    assert accepted or "run 42 failed" in caplog.text  # a lost alert is still in the log
