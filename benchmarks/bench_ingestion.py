"""Daily CSV ingestion benchmarks (issues 2 and 8), on the demo dataset `daily_cases`.

1. Clean + load a generated 1,000,000-row messy CSV into SQLite through the platform's code path
   (`clean_csv_slices` + `Warehouse.replace_partitions`, as the cleaned asset does: a slice is inserted
   while the next is cleaned) vs the sqlite3 shell's own `.import --csv` of the
   same file with no cleaning at all. Naive pandas (`read_csv` + `to_sql`, no cleaning) beside it.
2. A 365-partition backfill of the demo feed as ONE run (`dagster asset materialize
   --partition-range`, real HTTP to the demo server, default executor), wall time of the command.
3. Loading the definitions vs `import dagster`, each in fresh processes (best of 5); the notes
   name the project modules that cost most at import (from `python -X importtime`).
4. A file dropped into the landing zone to its cleaned rows visible in the warehouse, under the
   real `dagster dev` (webserver + daemon running the sensor), after one warm-up drop.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.result import BenchResult, stopwatch
from orchestration_platform.settings import REPO_ROOT

BIG_ROWS = 1_000_000
CLEAN_ROUNDS = 7
BACKFILL_DAYS = 365
PYTHON = sys.executable
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _best(times: list[float]) -> float:
    return min(times)


def _cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bench_clean_and_load(work: Path) -> list[BenchResult]:
    """The demo dataset's declared schema (`DAILY_CASES` = defs/ingestion/datasets/defs.yaml's daily_cases)."""
    import pandas as pd

    from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv
    from orchestration_platform.lib.ingestion.cleaning import clean_csv, clean_csv_slices
    from orchestration_platform.lib.ingestion.daily_cases import CLEANED_TABLE
    from orchestration_platform.lib.ingestion.warehouse import Warehouse

    source = work / "big.csv"
    source.write_bytes(daily_cases_csv(dt.date(2026, 3, 1), rows=BIG_ROWS))
    ours, anchor, naive, clean_times, ours_cpu, anchor_cpu = [], [], [], [], [], []
    rows_out = 0
    for attempt in range(CLEAN_ROUNDS):  # ours, then the anchor: each pair sees the same moment of the machine
        db = work / f"ours{attempt}.sqlite"
        cpu_before = _cpu_seconds()
        with stopwatch() as t:
            cleaned, slices = clean_csv_slices(source.read_bytes(), source=source.name)
            Warehouse(f"sqlite:///{db}").replace_partitions(CLEANED_TABLE, {"2026-03-01": slices})
        ours_cpu.append(_cpu_seconds() - cpu_before)
        ours.append(t["seconds"])
        with stopwatch() as cleaning:  # cleaning alone, unpipelined, for the notes
            assert clean_csv(source.read_bytes(), source=source.name).rows_out == cleaned.rows_out
        clean_times.append(cleaning["seconds"])
        rows_out = cleaned.rows_out

        anchor_db = work / f"anchor{attempt}.sqlite"
        cpu_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
        with stopwatch() as t:
            subprocess.run(["sqlite3", str(anchor_db), f".import --csv {source} daily_cases"], check=True)
        anchor_cpu.append(_cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before)
        anchor.append(t["seconds"])

        if attempt < 2:
            naive_db = work / f"naive{attempt}.sqlite"
            with stopwatch() as t, sqlite3.connect(naive_db) as conn:
                pd.read_csv(source).to_sql("daily_cases", conn, index=False)
            naive.append(t["seconds"])
    with sqlite3.connect(work / "ours0.sqlite") as conn:
        stored = conn.execute("SELECT count(*) FROM daily_cases").fetchone()[0]
    assert stored == rows_out, (stored, rows_out)
    size_mb = source.stat().st_size / 1e6
    load_avg = os.getloadavg()[0]
    paired = statistics.median(o / a for o, a in zip(ours, anchor, strict=True))
    return [
        BenchResult(
            name=f"clean + load {BIG_ROWS:,}-row messy CSV into SQLite",
            ours=statistics.median(ours), anchor=statistics.median(anchor), unit="s",
            anchor_name="sqlite3 .import --csv (no cleaning)", paired_ratio=paired,
            target="ratio <= 1.0 (goal 0.8)", target_ok=lambda r: r <= 1.0,
            notes=f"{size_mb:.0f} MB, {rows_out:,} rows kept; ratio = median over {CLEAN_ROUNDS} rounds of ours / "
                  f"the anchor run right after it, figures are medians (best: {_best(ours):.3f} s vs "
                  f"{_best(anchor):.3f} s); cleaning alone (parse, trim, 6 date styles, types, dedupe) "
                  f"{_best(clean_times):.2f} s; the file is read as a stream (4 MiB blocks, read ahead in a thread) "
                  "and cleaned in slices (64k rows first, then 250k) while the previous slice goes into SQLite "
                  "(ADBC ingest, GIL released; SQLite numbers the day's rows; 64 KiB pages, WAL) in one "
                  f"transaction; CPU seconds ours {_best(ours_cpu):.2f} (4 threads) vs anchor "
                  f"{_best(anchor_cpu):.2f} (1 thread); load average {load_avg:.1f} on {os.cpu_count()} cores "
                  f"while measured; naive pandas read_csv+to_sql (no cleaning): {_best(naive):.2f} s",
        ),
    ]


def _dagster_home(work: Path) -> Path:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def bench_backfill(work: Path) -> list[BenchResult]:
    from orchestration_platform.devstack.services import free_port, start_sources_server

    sources = start_sources_server(free_port(), faults_enabled=False)
    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=BACKFILL_DAYS - 1)
    data = work / "backfill"
    env = {**os.environ, "DAGSTER_HOME": str(_dagster_home(work)), "DAGSTER_DEPLOYMENT": "local",
           "PLATFORM_DATA_DIR": str(data), "INGESTION_START_DATE": first.isoformat(),
           "INGESTION_WAREHOUSE_URL": f"sqlite:///{data / 'warehouse.sqlite'}",
           "INGESTION_CSV_URL_TEMPLATE": f"{sources.url}/csv/daily_cases/{{date}}.csv",
           "POSTGRES_URL": os.environ.get("POSTGRES_URL", "postgresql://unused@127.0.0.1:1/unused")}
    try:
        with stopwatch() as t:
            subprocess.run(
                [DAGSTER, "asset", "materialize", "-m", "orchestration_platform.definitions", "--select",
                 "ingestion/daily_cases/raw,ingestion/daily_cases/cleaned,ingestion/daily_cases/regional_summary",
                 "--partition-range", f"{first}...{last}"],
                env=env, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
    finally:
        sources.stop()
    with sqlite3.connect(data / "warehouse.sqlite") as conn:
        days, rows = conn.execute("SELECT count(DISTINCT partition_date), count(*) FROM daily_cases").fetchone()
        summary_days = conn.execute("SELECT count(DISTINCT partition_date) FROM daily_regional_summary").fetchone()[0]
    assert days == summary_days == BACKFILL_DAYS, (days, summary_days)
    return [BenchResult(
        name=f"{BACKFILL_DAYS}-partition backfill as one run", ours=t["seconds"], anchor=None, unit="s",
        anchor_name="target 60 s", target="<= 60 s", target_ok=lambda s: s <= 60,
        notes=f"`dagster asset materialize --partition-range`, process start included; {rows:,} rows, "
              "raw -> cleaned -> 5 checks -> summary",
    )]


def _paired_fresh_processes(code: str, anchor: str, env: dict[str, str], rounds: int = 7) -> list[tuple[float, float]]:
    """(ours, anchor) times of fresh processes, the anchor right after ours; each program ends with os._exit(0)
    so neither side counts the interpreter's teardown (~0.18 s for Dagster's import, less after gc.freeze)."""
    pairs = []
    for _ in range(rounds):
        times = []
        for program in (code, anchor):
            with stopwatch() as t:
                subprocess.run([PYTHON, "-c", f"{program}; import os; os._exit(0)"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
            times.append(t["seconds"])
        pairs.append((times[0], times[1]))
    return pairs


def _costly_project_imports(env: dict[str, str]) -> str:
    result = subprocess.run([PYTHON, "-X", "importtime", "-c", "import dagster\n"
                             "from orchestration_platform.definitions import defs; defs()"],
                            env=env, capture_output=True, text=True, check=True)
    own: dict[str, int] = {}
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            if name.startswith("orchestration_platform.") and name.count(".") >= 2:
                own[name] = int(parts[1])
    top = sorted(own.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in top)


def bench_definitions_load(work: Path) -> list[BenchResult]:
    env = {**os.environ, "DAGSTER_DEPLOYMENT": "local", "PLATFORM_DATA_DIR": str(work / "defs")}
    pairs = _paired_fresh_processes("from orchestration_platform.definitions import defs; defs()", "import dagster",
                                    env)
    return [BenchResult(
        name="load the definitions (fresh process, until loaded)", ours=statistics.median(p[0] for p in pairs),
        anchor=statistics.median(p[1] for p in pairs), unit="s", anchor_name='python -c "import dagster"',
        paired_ratio=statistics.median(o / a for o, a in pairs), target="ratio <= 1.5", target_ok=lambda r: r <= 1.5,
        notes=f"ratio = median over {len(pairs)} rounds of ours / the anchor run right after it, figures are "
              "medians; neither side's teardown counted; costliest project imports (cumulative): "
              + _costly_project_imports(env),
    )]


def bench_landing_zone(work: Path) -> list[BenchResult]:
    sys.path.insert(0, str(REPO_ROOT))
    from orchestration_platform_tests.ui.dagster_dev import running_dagster_dev

    data, zone = work / "landing_data", work / "landing"
    zone.mkdir(parents=True)
    warehouse = data / "warehouse.sqlite"
    env = {"DAGSTER_DEPLOYMENT": "local", "PLATFORM_DATA_DIR": str(data),
           "INGESTION_WAREHOUSE_URL": f"sqlite:///{warehouse}", "INGESTION_LANDING_ZONE": str(zone),
           "POSTGRES_URL": os.environ.get("POSTGRES_URL", "postgresql://unused@127.0.0.1:1/unused")}
    from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv

    def drop_and_wait(day: dt.date, timeout_s: float = 120) -> float:
        part = zone / f"daily_cases_{day}.csv.part"
        part.write_bytes(daily_cases_csv(day))
        started = time.monotonic()
        os.rename(part, zone / f"daily_cases_{day}.csv")  # complete files arrive by rename
        while time.monotonic() - started < timeout_s:
            if warehouse.exists():
                with sqlite3.connect(warehouse) as conn:
                    conn.execute("PRAGMA busy_timeout=5000")
                    found = conn.execute("SELECT name FROM sqlite_master WHERE name='daily_cases'").fetchone() and \
                        conn.execute("SELECT count(*) FROM daily_cases WHERE partition_date=?",
                                     (day.isoformat(),)).fetchone()[0]
                if found:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"landed file for {day} not ingested within {timeout_s}s; see {work}/dagster_dev.log")

    with running_dagster_dev(work, env):
        warmup = drop_and_wait(dt.date(2026, 1, 5))
        samples = [drop_and_wait(dt.date(2026, 1, 6 + i)) for i in range(3)]
    return [BenchResult(
        name="landing-zone drop -> cleaned rows visible (dagster dev)", ours=statistics.median(samples),
        anchor=None, unit="s", anchor_name="target 20 s", target="<= 20 s", target_ok=lambda s: s <= 20,
        notes=f"median of 3 drops after a warm-up ({warmup:.1f} s); sensor every 5 s, queued run, "
              "job daily_cases_ingestion (in-process executor)",
    )]


def run() -> list[BenchResult]:
    results: list[BenchResult] = []
    only = os.environ.get("BENCH_INGESTION_ONLY", "")
    for name, bench in (("clean", bench_clean_and_load), ("backfill", bench_backfill),
                        ("defs", bench_definitions_load), ("landing", bench_landing_zone)):
        if only and name not in only.split(","):
            continue
        work = Path(tempfile.mkdtemp(prefix=f"bench-ingestion-{name}-", dir="/tmp"))
        try:
            results.extend(bench(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"   {name}: {results[-1].ours:.2f} {results[-1].unit}", flush=True)
    return results
