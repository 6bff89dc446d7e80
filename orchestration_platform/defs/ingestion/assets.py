"""Daily CSV ingestion: raw file -> cleaned warehouse table -> daily regional summary.

Every asset is daily-partitioned (`INGESTION_START_DATE` on) and backfills run as ONE run
(`BackfillPolicy.single_run()`): each asset then handles the whole partition range at once
(concurrent downloads, one warehouse transaction), so 365 days cost seconds, not 365 runs.
Heavy libraries (pyarrow, httpx) are imported inside the assets to keep loading the code light.
"""


import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ingestion.partitions import daily_partitions
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.settings import get_settings

GROUP = "ingestion"
RAW_KEY = dg.AssetKey(["ingestion", "raw_daily_cases"])
CLEANED_KEY = dg.AssetKey(["ingestion", "cleaned_daily_cases"])
SUMMARY_KEY = dg.AssetKey(["ingestion", "daily_regional_summary"])
DOWNLOAD_THREADS = 8
PROGRESS_EVERY = 50  # days between progress lines in a long backfill


def raw_file_path(partition: str) -> Path:
    """Where the raw bytes of one day are kept (under PLATFORM_DATA_DIR)."""
    return get_settings().data_dir / "ingestion" / "raw" / "daily_cases" / f"{partition}.csv"


class RawDailyCasesConfig(dg.Config):
    """How the raw file is fetched. The landing-zone sensor sets `landed_file`."""

    landed_file: str | None = Field(
        default=None,
        description="Ingest this file from the landing zone instead of downloading from the URL template",
    )
    attempts: int = Field(default=4, description="Download attempts per file (transient errors are retried)")
    backoff_s: float = Field(default=0.5, description="First wait between attempts; doubles each time")
    timeout_s: float = Field(default=30.0, description="HTTP timeout per request, seconds")
    step_retries: int = Field(default=2, description="Whole-step retries after the attempts run out (transient only)")
    step_retry_wait_s: float = Field(default=30.0, description="Wait before a whole-step retry, seconds")


def _landed_file_url(landed_file: str) -> str:
    from orchestration_platform.lib.ingestion.landing_zone import inspect_landed_file

    zone = get_settings().landing_zone
    verdict = inspect_landed_file(zone, Path(landed_file))
    if verdict.reason is not None:
        raise dg.Failure(f"landed file {landed_file}: {verdict.reason}")
    return verdict.path.resolve().as_uri()


@dg.asset(
    key=RAW_KEY,
    group_name=GROUP,
    kinds={"csv"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def raw_daily_cases(context: dg.AssetExecutionContext, config: RawDailyCasesConfig) -> dg.MaterializeResult:
    """The day's case-report CSV exactly as published, kept as a file under PLATFORM_DATA_DIR.

    Source: `INGESTION_CSV_URL_TEMPLATE` with `{date}` = the partition (http(s):// or file://),
    or, for runs started by the landing-zone sensor, the dropped file (named after its day).
    Transient failures (timeouts, resets, 5xx, 429 + Retry-After) are retried with backoff, then
    the step is retried; 404 and content that is not CSV fail at once with the reason.
    Metadata: SHA-256 and size of each file, so a re-download that changed is visible.
    """
    from orchestration_platform.lib.ingestion.download import (
        DownloadError,
        TransientDownloadError,
        download_csv,
    )

    partitions = context.partition_keys
    template = get_settings().csv_url_template
    if config.landed_file and len(partitions) != 1:
        raise dg.Failure(f"a landed file fills exactly one partition; this run targets {len(partitions)}")
    if "{date}" not in template and not config.landed_file:
        raise dg.Failure(f"INGESTION_CSV_URL_TEMPLATE={template!r} has no {{date}} placeholder for the day")

    def on_retry(attempt: int, error: BaseException | None, wait_s: float | None) -> None:
        context.log.warning(f"download attempt {attempt} failed ({error}); retrying in {wait_s or 0:.1f}s")

    import httpx

    # one client for every download: connections are reused and its TLS context is built once
    client = httpx.Client(timeout=config.timeout_s, follow_redirects=True)

    def fetch(partition: str):
        url = _landed_file_url(config.landed_file) if config.landed_file else template.format(date=partition)
        return download_csv(url, raw_file_path(partition), attempts=config.attempts, backoff_s=config.backoff_s,
                            timeout_s=config.timeout_s, on_retry=on_retry, client=client)

    files, failures = {}, {}
    with client, ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(partitions))) as pool:
        futures = {partition: pool.submit(fetch, partition) for partition in partitions}
        for done, (partition, future) in enumerate(futures.items(), start=1):
            try:
                files[partition] = future.result()
            except (DownloadError, TransientDownloadError, httpx.HTTPError) as error:
                failures[partition] = error
            if done % PROGRESS_EVERY == 0:
                context.log.info(f"downloaded {done} of {len(partitions)} day(s)")
    if failures:
        summary = "; ".join(f"{p}: {e}" for p, e in sorted(failures.items())[:5])
        message = f"{len(failures)} of {len(partitions)} file(s) could not be downloaded: {summary}"
        transient = all(isinstance(e, TransientDownloadError) for e in failures.values())
        if transient and context.retry_number < config.step_retries:
            context.log.warning(f"{message}; retrying the step in {config.step_retry_wait_s:.0f}s")
            raise dg.RetryRequested(max_retries=config.step_retries, seconds_to_wait=config.step_retry_wait_s)
        raise dg.Failure(message)
    total = sum(f.size_bytes for f in files.values())
    context.log.info(f"kept {len(files)} raw file(s), {total} bytes")
    if len(files) == 1:
        (only,) = files.values()
        return dg.MaterializeResult(metadata={
            "size_bytes": dg.MetadataValue.int(only.size_bytes),
            "sha256": only.sha256,
            "source": dg.MetadataValue.url(only.url) if only.url.startswith("http") else only.url,
            "path": dg.MetadataValue.path(str(only.path)),
            "attempts": only.attempts,
        })
    # a range run records its metadata once per day: the checksums go to one manifest file instead
    manifest = raw_file_path(partitions[0]).parent / f"manifest_{partitions[0]}_{partitions[-1]}.json"
    manifest.write_text(json.dumps({p: {"sha256": f.sha256, "size_bytes": f.size_bytes}
                                    for p, f in sorted(files.items())}, indent=1))
    return dg.MaterializeResult(metadata={
        "size_bytes": dg.MetadataValue.int(total),
        "files": len(files),
        "checksums": dg.MetadataValue.path(str(manifest)),
    })


@dg.asset(
    key=CLEANED_KEY,
    group_name=GROUP,
    kinds={"csv", "sqlite"},
    deps=[RAW_KEY],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="ingestion_warehouse",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=48)),
)
def cleaned_daily_cases(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The day's case reports, cleaned, in the warehouse table `daily_cases` (one row per report).

    Cleaning: values trimmed; rows with a null in a required column (report_id, region,
    reported_at, confirmed_cases), an unparseable number or date, or a malformed line are
    dropped; every date becomes ISO-8601 UTC (`2026-01-31T09:30:00Z`); exact duplicates are
    dropped. Writing replaces exactly the partition's rows in one transaction, so re-running a day
    gives the same table. Metadata `rows_in`, `rows_out` and `dropped_*` plot per partition.
    """
    from orchestration_platform.lib.ingestion.cleaning import DROP_REASONS, CsvFormatError, clean_csv
    from orchestration_platform.lib.ingestion.daily_cases import CLEANED_TABLE

    partitions = context.partition_keys
    batches, rows_in, nulled = {}, 0, 0
    dropped = dict.fromkeys(DROP_REASONS, 0)
    for done, partition in enumerate(partitions, start=1):
        if done % PROGRESS_EVERY == 0:
            context.log.info(f"cleaned {done} of {len(partitions)} day(s)")
        path = raw_file_path(partition)
        if not path.is_file():
            raise dg.Failure(f"no raw file for {partition} at {path}: materialize raw_daily_cases for it first")
        try:
            cleaned = clean_csv(path.read_bytes(), source=f"raw file {path.name}")
        except CsvFormatError as error:
            raise dg.Failure(str(error)) from None
        batches[partition] = cleaned.table
        rows_in += cleaned.rows_in
        nulled += cleaned.nulled_values
        for reason, count in cleaned.dropped.items():
            dropped[reason] += count
    store = warehouse.get_warehouse()
    written = store.replace_partitions(CLEANED_TABLE, batches)
    rows_out = sum(written.values())
    context.log.info(f"replaced {len(written)} partition(s) of {CLEANED_TABLE.name} in {store.display_url}: "
                     f"{rows_in} rows in, {rows_out} out, dropped {dropped}")
    return dg.MaterializeResult(metadata={
        "rows_in": dg.MetadataValue.int(rows_in),
        "rows_out": dg.MetadataValue.int(rows_out),
        **{f"dropped_{reason}": dg.MetadataValue.int(count) for reason, count in dropped.items()},
        "nulled_optional_values": dg.MetadataValue.int(nulled),
        "partitions": len(written),
        "table": CLEANED_TABLE.name,
        "warehouse": store.display_url,
        "dagster/row_count": dg.MetadataValue.int(rows_out),
    })


@dg.asset(
    key=SUMMARY_KEY,
    group_name=GROUP,
    kinds={"sqlite"},
    deps=[CLEANED_KEY],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="ingestion_warehouse",
)
def daily_regional_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per day and region: number of reports, confirmed cases and deaths (table `daily_regional_summary`).

    Built from the cleaned table only after its blocking checks pass, so a day with conflicting
    report ids or unparsed dates never reaches the summary. Replaces its partitions idempotently.
    """
    from orchestration_platform.lib.ingestion.daily_cases import SUMMARY_TABLE, regional_summary

    store = warehouse.get_warehouse()
    batches = regional_summary(store, context.partition_keys)
    written = store.replace_partitions(SUMMARY_TABLE, batches)
    confirmed = sum(sum(t["confirmed_cases"].to_pylist()) for t in batches.values())
    return dg.MaterializeResult(metadata={
        "regions": dg.MetadataValue.int(max((t.num_rows for t in batches.values()), default=0)),
        "confirmed_cases": dg.MetadataValue.int(confirmed),
        "dagster/row_count": dg.MetadataValue.int(sum(written.values())),
        "table": SUMMARY_TABLE.name,
    })
