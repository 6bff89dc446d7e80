"""Secrets stay out of logs, metadata and errors; a process killed between staging and the swap
leaves the published table as it was, and the next load works."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid

import dagster as dg
import pytest

from orchestration_platform_tests.api_etl.conftest import make_config, synthetic

PARTNERS = {"name": "partners", "url": "/api/partners", "records_path": "data", "primary_key": ["partner_id"],
            "auth": {"env": "TEST_PARTNERS_TOKEN"},
            "columns": {"partner_id": "integer", "name": "text", "country": "text"}}


def everything_dagster_recorded(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    """Every log line and event of the run as stored by the instance: messages, metadata, errors, checks."""
    return "\n".join(repr(entry) for entry in instance.all_logs(result.run_id))


def test_auth_secret_never_appears_in_logs_metadata_or_errors(materialize, query, monkeypatch, caplog, capfd):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("DEMO_API_TOKEN", secret)  # what the demo server expects
    monkeypatch.setenv("TEST_PARTNERS_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    with dg.DagsterInstance.ephemeral() as instance:  # disposed: an instance left open leaks into later loads
        good = materialize(make_config(PARTNERS), instance=instance)
        assert good.success and query("SELECT count(*) FROM api.partners") == [(20,)]

        wrong = f"wrong-{uuid.uuid4().hex}"
        monkeypatch.setenv("TEST_PARTNERS_TOKEN", wrong)
        bad = materialize(make_config(PARTNERS), instance=instance)
        assert not bad.success
        assert "HTTP 401" in bad.get_step_failure_events()[0].step_failure_data.error.message

        recorded = everything_dagster_recorded(instance, good) + everything_dagster_recorded(instance, bad)
        assert "ASSET_MATERIALIZATION" in recorded and "rows_loaded" in recorded  # the capture holds the metadata
        captured = capfd.readouterr()
        loads = query("SELECT * FROM api_etl.loads")
        for text in (recorded, caplog.text, captured.out, captured.err, repr(loads)):
            assert secret not in text and wrong not in text
        assert "TEST_PARTNERS_TOKEN" in recorded  # the variable's name is shown: that is the fix


CRASHING_LOAD = """
import json, sys, time, psycopg
from orchestration_platform.lib.api_etl.pipeline import run_endpoints
from orchestration_platform.lib.api_etl.endpoint_config import parse_endpoints_config

config = parse_endpoints_config(json.loads(sys.argv[1]))

def stop_before_the_swap(name):
    print("STAGED", name, flush=True)
    time.sleep(120)  # killed here

run_endpoints(config, config.endpoints, base_url=sys.argv[2], load_id="doomed",
              connect=lambda: psycopg.connect(sys.argv[3], autocommit=True), before_publish=stop_before_the_swap)
"""


@pytest.mark.timeout(120)
def test_process_killed_between_staging_and_swap_leaves_the_table_intact(run_pipeline, query, sources_url,
                                                                          use_fresh_database):
    first = make_config(synthetic("ledger", records=200))
    assert run_pipeline(first)["ledger"].published
    before = query("SELECT * FROM api.ledger ORDER BY id")

    second = make_config(synthetic("ledger", records=300))
    raw = {"defaults": second.defaults.model_dump(), "endpoints": [e.model_dump() for e in second.endpoints]}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_LOAD, json.dumps(raw), sources_url, use_fresh_database],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline()
        assert line.strip() == "STAGED ledger", line
        assert query("SELECT count(*) FROM api_staging.ledger") == [(300,)]  # staged, audited, not yet swapped
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert query("SELECT * FROM api.ledger ORDER BY id") == before
    assert query("SELECT count(*) FROM api_etl.loads WHERE load_id = 'doomed'") == [(0,)]

    again = run_pipeline(second)["ledger"]  # the dead process's lock went with its connection
    assert again.published and query("SELECT count(*) FROM api.ledger") == [(300,)]
