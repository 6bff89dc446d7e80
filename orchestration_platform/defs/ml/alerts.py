"""Run-failure alerts: any failed run in this code location is posted to ALERT_WEBHOOK_URL."""

import dagster as dg

from orchestration_platform.defs.shared.alerts import AlertWebhookResource


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts every failed run (job, run id, error) to the ALERT_WEBHOOK_URL secret; logs only if unset.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhookResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alert_webhook.post(
        {
            "text": f"Dagster run {run.run_id} of job {run.job_name} failed: {message[:500]}",
            "run_id": run.run_id,
            "job": run.job_name,
            "tags": {k: v for k, v in run.tags.items() if not k.startswith("dagster/")},
        }
    )
