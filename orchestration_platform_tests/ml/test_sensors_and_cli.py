"""Sensors (lag trigger, failure alerts to a webhook whose URL is a secret) and the ML commands of the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from orchestration_platform.defs.ml.alerts import run_failure_alerts
from orchestration_platform.defs.ml.sensors import payment_events_lag
from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.devstack.events import generate_events, produce_events
from orchestration_platform.devstack.services import free_port
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY
from orchestration_platform_tests.webhook_receiver import webhook_receiver

CLI = str(Path(sys.executable).parent / "orchestration-platform")


def _tick(sensor, instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return sensor(context)


def test_lag_sensor_requests_consumption_past_the_threshold_and_reports_the_lag(
    kafka_bootstrap, ml_env, ml_resources, instance, monkeypatch
):
    monkeypatch.setenv("ML_CONSUME_LAG_THRESHOLD", "500")
    monkeypatch.setenv("ML_CONSUME_INTERVAL_S", "3600")
    # One record per produce request: tansu's high watermark counts a whole record batch as one offset.
    unbatched = {"linger.ms": 0, "batch.num.messages": 1}
    produce_events(
        kafka_bootstrap, ml_env["topic"], generate_events(100, DAY, DAY + timedelta(hours=1)), extra=unbatched
    )
    first = _tick(
        payment_events_lag, instance, ml_resources, cursor=json.dumps({"last_request": time.time()})
    )
    assert first.run_requests == [] and first.asset_events[0].metadata["consumer_lag"].value == 200
    due = _tick(payment_events_lag, instance, ml_resources, cursor=json.dumps({"last_request": 0}))
    assert len(due.run_requests) == 1  # lag > 0 and the interval has passed
    produce_events(
        kafka_bootstrap,
        ml_env["topic"],
        generate_events(200, DAY, DAY + timedelta(hours=1), seed=8),
        extra=unbatched,
    )
    busy = _tick(payment_events_lag, instance, ml_resources, cursor=due.cursor)
    assert len(busy.run_requests) == 1 and busy.run_requests[0].tags["ml/consumer_lag"] == "600"
    flow.consume(ml_resources, instance)
    drained = _tick(payment_events_lag, instance, ml_resources, cursor=busy.cursor)
    assert drained.run_requests == [] and drained.asset_events[0].metadata["consumer_lag"].value == 0


@pytest.fixture
def webhook():
    with webhook_receiver() as hook:
        yield hook


def test_a_failed_run_is_posted_to_the_webhook_without_leaking_its_url(webhook, instance, caplog):
    @dg.asset
    def always_fails():
        raise RuntimeError("upstream API is down")

    failed = dg.materialize([always_fails], instance=instance, raise_on_error=False)
    assert not failed.success
    secret_url = f"{webhook.url}/hooks/T0KEN-s3cret"
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE"),
        resources={"alert_webhook": AlertWebhookResource(url=secret_url)},
    ) as context, caplog.at_level(logging.DEBUG):  # fmt: skip
        run_failure_alerts(context.for_run_failure())
    assert len(webhook.received) == 1 and webhook.received[0]["path"] == "/hooks/T0KEN-s3cret"
    alert = webhook.received[0]["body"]
    assert alert["run_id"] == failed.run_id and "failed" in alert["text"]
    assert "T0KEN-s3cret" not in caplog.text


def test_an_unreachable_webhook_is_logged_without_its_url(caplog):
    resource = AlertWebhookResource(url=f"http://127.0.0.1:{free_port()}/hooks/T0KEN-s3cret", timeout_s=1)
    with caplog.at_level(logging.INFO):
        assert resource.post({"text": "run x failed"}) is False
    assert "unreachable" in caplog.text and "T0KEN" not in caplog.text


@pytest.mark.parametrize("command", ["approve", "reject", "approvals", "produce-events", "serve", "review"])
def test_every_ml_command_has_help(command):
    result = subprocess.run([CLI, command, "--help"], capture_output=True, text=True, check=True)
    assert "Usage:" in result.stdout and len(result.stdout) > 200


def test_cli_decisions_on_unknown_versions_fail_clearly(ml_env):
    result = subprocess.run([CLI, "approve", "42"], capture_output=True, text=True, env=os.environ)
    assert result.returncode == 1
    assert "no approval was requested for model 'fraud_detector' version '42'" in result.stderr
    listing = subprocess.run([CLI, "approvals"], capture_output=True, text=True, env=os.environ, check=True)
    assert "no pending approvals" in listing.stdout


def test_the_cli_decides_as_the_os_user_and_never_as_a_typed_name(ml_env):
    import pwd

    import psycopg

    from orchestration_platform.lib.ml.approvals import audit_after, request_approval

    me = pwd.getpwuid(os.geteuid()).pw_name
    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
        for model, version, trainer in (("own_model", "1", me), ("fraud_detector", "2", "dagster run 1234abcd")):
            request_approval(conn, model_name=model, version=version, fingerprint="f" * 64,
                             ttl=timedelta(hours=1), metrics={}, requested_by=trainer)  # fmt: skip
    typed = subprocess.run([CLI, "approve", "2", "--reviewer", "alice"], capture_output=True, text=True, env=os.environ)
    assert typed.returncode == 2 and "the CLI records your OS user; drop --reviewer" in typed.stderr
    own = subprocess.run([CLI, "approve", "1", "--model-name", "own_model"], capture_output=True, text=True,
                         env=os.environ)  # fmt: skip
    assert own.returncode == 1 and "four-eyes" in own.stderr  # the OS user trained version 1
    outsider = subprocess.run([CLI, "approve", "2"], capture_output=True, text=True,
                              env=os.environ | {"ML_APPROVERS": "alice@example.com"})  # fmt: skip
    assert outsider.returncode == 1 and f"reviewer '{me}'" in outsider.stderr and "is not an approver" in outsider.stderr
    prod = subprocess.run([CLI, "approve", "2"], capture_output=True, text=True,
                          env=os.environ | {"DAGSTER_DEPLOYMENT": "prod"})  # fmt: skip
    assert prod.returncode == 1 and "in prod the CLI cannot know who runs it" in prod.stderr
    done = subprocess.run([CLI, "approve", "2", "--comment", "fine"], capture_output=True, text=True,
                          env=os.environ | {"ML_APPROVERS": me})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"approved by {me}; the approved_model_deployments sensor deploys it next" in done.stdout
    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
        last = audit_after(conn, 0)[-1]
    assert (last["action"], last["actor"], last["source"], last["details"]["via"]) == ("approved", me, "cli", "os-user")


def test_produce_events_streams_valid_events_at_the_requested_rate(
    kafka_bootstrap, ml_env, ml_resources, instance
):
    result = subprocess.run(
        [CLI, "produce-events", "--rate", "200", "--duration", "2", "--label-delay", "0.5", "--seed", "3"],
        capture_output=True, text=True, env=os.environ, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = flow.consume(ml_resources, instance)
    assert 300 <= stored["transactions_stored"] <= 450  # ~200/s for 2 s
    assert stored["labels_stored"] > 0 and stored["dead_letters"] == 0


def test_produce_events_sends_labelled_history_first_so_past_hours_are_complete(
    kafka_bootstrap, ml_env, ml_resources, instance
):
    import psycopg

    result = subprocess.run(
        [CLI, "produce-events", "--history-hours", "2", "--history-per-hour", "300",
         "--rate", "5", "--duration", "0.5", "--late-fraction", "0", "--seed", "4"],
        capture_output=True, text=True, env=os.environ, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sent 1200 past events (2 h of transactions and their labels)" in result.stdout
    stored = flow.consume(ml_resources, instance)
    assert stored["dead_letters"] == 0 and stored["transactions_stored"] >= 600
    with psycopg.connect(os.environ["POSTGRES_URL"]) as conn:
        per_hour = conn.execute(
            "SELECT date_trunc('hour', t.occurred_at), count(*), count(l.transaction_id) FROM ml.transactions t "
            "LEFT JOIN ml.labels l USING (transaction_id) "
            "WHERE t.occurred_at < date_trunc('hour', now()) GROUP BY 1 ORDER BY 1"
        ).fetchall()
    # Two complete past hours, every transaction already labelled: training can start at once.
    assert [(count, labelled) for _, count, labelled in per_hour] == [(300, 300), (300, 300)]
