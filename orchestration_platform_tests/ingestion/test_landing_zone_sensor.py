"""The landing-zone sensor on a real (temporary) Dagster instance: exactly once, partial files wait,
unsafe or unusable files are skipped with a reason, 200 files are all taken exactly once."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from orchestration_platform.defs.ingestion.landing_zone_sensor import MAX_RUNS_PER_TICK
from orchestration_platform_tests.ingestion.conftest import INGESTION, INGESTION_DEFS, RESOURCES, table_rows

(landing_zone_sensor,) = INGESTION.sensors
(daily_cases_ingestion,) = [job for job in INGESTION.jobs if job.name == "daily_cases_ingestion"]

CSV = (
    "report_id,region,reported_at,confirmed_cases,deaths,notes\n"
    "11,north,2026-02-03T08:00:00Z,4,0,\n"
    "12, south ,02/03/2026 09:15,6,1,\"two\nlines\"\n"
    "12, south ,02/03/2026 09:15,6,1,\"two\nlines\"\n"
    "13,,2026-02-03,1,0,\n"
)


def _drop(zone: Path, name: str, text: str = CSV, age_s: float = 10.0) -> Path:
    path = zone / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    past = time.time() - age_s
    os.utime(path, (past, past))  # settled: written a while ago
    return path


def _tick(instance: dg.DagsterInstance, cursor: str | None):
    # entered and exited like the daemon does, so no instance state outlives the tick
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES) as context:
        result = landing_zone_sensor(context)
        if isinstance(result, dg.SkipReason):
            return [], context.cursor, result.skip_message
        return list(result.run_requests or []), result.cursor, None


def test_a_dropped_file_starts_exactly_one_run_that_ingests_it(ingestion_env) -> None:
    zone = ingestion_env["zone"]
    _drop(zone, "daily_cases_2026-02-03.csv")
    with dg.instance_for_test() as instance:
        requests, cursor, _ = _tick(instance, None)
        assert len(requests) == 1
        (request,) = requests
        assert request.partition_key == "2026-02-03"
        again, cursor, skip = _tick(instance, cursor)
        assert again == [] and "no new settled CSV files" in skip

        defs = dg.Definitions(assets=INGESTION_DEFS, jobs=[daily_cases_ingestion],
                              resources=RESOURCES)
        job = defs.resolve_job_def("daily_cases_ingestion")
        result = job.execute_in_process(run_config=request.run_config, partition_key=request.partition_key,
                                        tags=request.tags, instance=instance)
        assert result.success
    rows = table_rows(ingestion_env["warehouse"], "daily_cases")
    assert [(r[1], r[2], r[3], r[4], r[5], r[7]) for r in rows] == [
        ("2026-02-03", 11, "north", "2026-02-03T08:00:00Z", 4, None),
        ("2026-02-03", 12, "south", "2026-02-03T09:15:00Z", 6, "two\nlines"),
    ]


def test_a_new_version_of_a_file_is_ingested_again_once(ingestion_env) -> None:
    zone = ingestion_env["zone"]
    path = _drop(zone, "2026-02-04.csv")
    with dg.instance_for_test() as instance:
        first, cursor, _ = _tick(instance, None)
        _drop(zone, path.name, CSV + "14,east,2026-02-04T10:00:00Z,9,0,\n", age_s=5)
        second, cursor, _ = _tick(instance, cursor)
        third, cursor, _ = _tick(instance, cursor)
    assert len(first) == 1 and len(second) == 1 and third == []
    assert first[0].run_key != second[0].run_key


def test_partial_files_wait_until_complete(ingestion_env) -> None:
    zone = ingestion_env["zone"]
    with dg.instance_for_test() as instance:  # first: on a busy machine it takes longer than the settle time
        (zone / "2026-02-05.csv.part").write_text(CSV)  # an upload in progress, renamed when done
        (zone / ".2026-02-05.csv").write_text(CSV)  # a hidden temp file (rsync style)
        growing = zone / "2026-02-06.csv"
        growing.write_text(CSV[:40])  # just written: not settled yet
        requests, cursor, skip = _tick(instance, None)
        assert requests == [] and "1 waiting to settle" in skip
        with growing.open("a") as handle:  # still being written between the ticks
            handle.write(CSV[40:])
        requests, cursor, _ = _tick(instance, cursor)
        assert requests == []
        requests, cursor, _ = _tick(instance, cursor)  # unchanged since the last tick: complete
        assert [r.partition_key for r in requests] == ["2026-02-06"]
        os.rename(zone / "2026-02-05.csv.part", zone / "2026-02-05.csv")
        os.utime(zone / "2026-02-05.csv", (time.time() - 10, time.time() - 10))
        requests, cursor, _ = _tick(instance, cursor)
        assert [r.partition_key for r in requests] == ["2026-02-05"]


def test_symlinks_outside_paths_and_unusable_files_are_skipped_with_a_reason(ingestion_env, tmp_path) -> None:
    zone = ingestion_env["zone"]
    outside = tmp_path / "secret"
    outside.mkdir()
    _drop(outside, "2026-02-07.csv")
    (zone / "2026-02-07.csv").symlink_to(outside / "2026-02-07.csv")
    (zone / "linked_folder").symlink_to(outside, target_is_directory=True)
    os.mkfifo(zone / "2026-02-08.csv")
    _drop(zone, "no_day_in_name.csv")
    _drop(zone, "daily_cases_2099-01-01.csv")
    _drop(zone, "daily_cases_2026-02-30.csv")
    _drop(zone, "2026-02-09.csv", text="")
    with dg.instance_for_test() as instance:
        requests, cursor, skip = _tick(instance, None)
        assert requests == []
        for expected in (
            "2026-02-07.csv is a symlink",
            "linked_folder is a symlinked folder",
            "2026-02-08.csv is not a regular file",
            "no_day_in_name.csv has no day in its name",
            "daily_cases_2099-01-01.csv names day 2099-01-01, outside the ingested days",
            "2026-02-09.csv is empty",
            "daily_cases_2026-02-30.csv names day '2026-02-30', which is not a date",
        ):
            assert expected in skip
        _, _, skip_again = _tick(instance, cursor)
        assert "is a symlink" in skip_again  # still visible in every tick's reason


def test_an_unreadable_file_is_skipped(ingestion_env, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = ingestion_env["zone"]
    if os.geteuid() == 0:
        # Root reads every file whatever its mode: the sensor evaluates as `nobody` instead, in a zone
        # that `nobody` can enter (pytest's tmp folders are private to root).
        zone = Path(tempfile.mkdtemp(prefix="op-zone-"))
        zone.chmod(0o755)
        monkeypatch.setenv("INGESTION_LANDING_ZONE", str(zone))
    path = _drop(zone, "2026-02-10.csv")
    path.chmod(0)
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources=RESOURCES) as context,
        _effective_user("nobody"),
    ):
        result = landing_zone_sensor(context)
    assert isinstance(result, dg.SkipReason) and "cannot be read" in result.skip_message
    if zone != ingestion_env["zone"]:
        shutil.rmtree(zone)


@contextmanager
def _effective_user(name: str) -> Iterator[None]:
    """Run as `name` (by effective uid) when we are root; as ourselves otherwise."""
    if os.geteuid() != 0:
        yield
        return
    import pwd

    os.seteuid(pwd.getpwnam(name).pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_two_hundred_files_at_once_are_each_taken_exactly_once(ingestion_env) -> None:
    import datetime as dt

    zone = ingestion_env["zone"]
    days = [(dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(200)]
    for day in days:
        _drop(zone, f"batch/daily_cases_{day}.csv")
    taken: list[dg.RunRequest] = []
    ticks = 0
    with dg.instance_for_test() as instance:
        cursor = None
        while True:
            requests, cursor, _ = _tick(instance, cursor)
            ticks += 1
            if not requests:
                break
            assert len(requests) <= MAX_RUNS_PER_TICK
            taken.extend(requests)
            _drop(zone, f"late/daily_cases_{days[ticks]}.csv") if ticks == 1 else None  # one arrives mid-way
    keys = [r.run_key for r in taken]
    assert len(keys) == len(set(keys)) == 201
    assert sorted({r.partition_key for r in taken}) == sorted(days)
    assert ticks == 4
