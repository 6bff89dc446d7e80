"""The assets of one declared CSV dataset: the raw file as published, and the cleaned warehouse table.

Built by the CSV datasets component (`components/csv_datasets.py`) from a validated `DatasetSpec`.
Every asset is time-partitioned by the dataset's cadence and backfills run as ONE run
(`BackfillPolicy.single_run()`): a range is downloaded concurrently and written in one transaction.
Heavy libraries (pyarrow, httpx) are imported inside the assets to keep loading the code light.
"""

# No `from __future__ import annotations`: Dagster inspects the `context`/`config` annotations at runtime.

import datetime as dt
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ingestion.files import IngestionFilesResource
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.defs.shared.retries import STEP_RETRY
from orchestration_platform.lib.ingestion.dataset import DatasetSpec

GROUP = "ingestion"
DOWNLOAD_THREADS = 8
PROGRESS_EVERY = 50  # partitions between progress lines in a long backfill
CHECK_SCHEMA = "schema_unchanged"
CHECK_DROP_RATE = "drop_rate_within_limit"


def raw_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["ingestion", dataset, "raw"])


def cleaned_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["ingestion", dataset, "cleaned"])


def raw_op_name(dataset: str) -> str:
    return "__".join(raw_key(dataset).path)


def warehouse_kind() -> str:
    """The warehouse's kind as deployed (read at load: INGESTION_WAREHOUSE_URL's scheme, default SQLite)."""
    scheme = urlsplit(os.environ.get("INGESTION_WAREHOUSE_URL", "sqlite:///")).scheme
    return "postgres" if scheme.startswith("postgres") else "sqlite"


def partitions_for(spec: DatasetSpec) -> dg.TimeWindowPartitionsDefinition:
    part = spec.partitions
    end = part.end
    if part.cadence == "hourly":
        start = dt.datetime.fromisoformat(part.start).strftime("%Y-%m-%d-%H:%M")
        end = dt.datetime.fromisoformat(end).strftime("%Y-%m-%d-%H:%M") if end else None
        return dg.HourlyPartitionsDefinition(start_date=start, end_date=end, timezone=part.timezone)
    start = dt.datetime.fromisoformat(part.start).date().isoformat()
    end = dt.datetime.fromisoformat(end).date().isoformat() if end else None
    kind = {"daily": dg.DailyPartitionsDefinition, "weekly": dg.WeeklyPartitionsDefinition,
            "monthly": dg.MonthlyPartitionsDefinition}[part.cadence]
    return kind(start_date=start, end_date=end, timezone=part.timezone)


class RawFileConfig(dg.Config):
    """How the raw file is fetched. The landing-zone sensor sets `landed_file`."""

    landed_file: str | None = Field(
        default=None,
        description="Ingest this file from the landing zone instead of downloading from the URL template",
    )
    attempts: int = Field(default=4, description="Download attempts per file (transient errors are retried)")
    backoff_s: float = Field(default=0.5, description="First wait between attempts; doubles each time")
    timeout_s: float = Field(default=30.0, description="Longest silence between reads, seconds")
    deadline_s: float = Field(default=600.0, description="Longest time for one whole file (connect to last byte), seconds")
    max_response_bytes: int = Field(default=1 << 30, description="Largest file, as received and as inflated, bytes")
    step_retries: int = Field(default=2, description="Whole-step retries after the attempts run out (transient only)")
    step_retry_wait_s: float = Field(default=30.0, description="Wait before a whole-step retry, seconds")


@functools.cache
def raw_file_config_schema():
    """RawFileConfig's config schema, inferred once: Dagster infers it again for every asset that takes the
    class as its `config` argument (~1 ms per dataset at every load)."""
    return RawFileConfig.to_config_schema()


def _landed_file_url(files: IngestionFilesResource, landed_file: str) -> str:
    from pathlib import Path

    from orchestration_platform.lib.ingestion.landing_zone import inspect_landed_file

    verdict = inspect_landed_file(files.landing_path(), Path(landed_file))
    if verdict.reason is not None:
        raise dg.Failure(f"landed file {landed_file}: {verdict.reason}", allow_retries=False)
    return verdict.path.resolve().as_uri()


def _raw_metadata(files: dict, partitions: list[str], manifest_path) -> dict:
    if len(files) == 1:
        (only,) = files.values()
        return {
            "size_bytes": dg.MetadataValue.int(only.size_bytes),
            "sha256": only.sha256,
            "source": dg.MetadataValue.url(only.url) if only.url.startswith("http") else only.url,
            "path": dg.MetadataValue.path(str(only.path)),
            "attempts": only.attempts,
        }
    # a range run records its metadata once per partition: the checksums go to one manifest file instead
    manifest_path.write_text(json.dumps({p: {"sha256": f.sha256, "size_bytes": f.size_bytes}
                                         for p, f in sorted(files.items())}, indent=1))
    return {
        "size_bytes": dg.MetadataValue.int(sum(f.size_bytes for f in files.values())),
        "files": len(files),
        "checksums": dg.MetadataValue.path(str(manifest_path)),
    }


def build_raw_asset(spec: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    from orchestration_platform.lib.url_redaction import redact_url

    shown_source = redact_url(spec.url_template) + (
        f" (or ${spec.url_template_env} when set)" if spec.url_template_env else "")

    @dg.asset(
        key=raw_key(spec.name),
        group_name=GROUP,
        kinds={"csv"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=STEP_RETRY,  # machinery failures; a source that stays down retries by `step_retries`
        config_schema=raw_file_config_schema(),  # RawFileConfig's fields
        owners=list(spec.owners) or None,
        tags=spec.tags or None,
        description=(
            f"{spec.description}\n\nThe {spec.partitions.cadence} file exactly as published, kept under "
            f"PLATFORM_DATA_DIR/ingestion/raw/{spec.name}/ with its SHA-256 and size. Source: `{shown_source}` "
            f"(`{{date}}` = the partition), or a file dropped into the landing zone named like "
            f"`{spec.landing_pattern}`. Transient failures (timeouts, resets, 5xx, 429) are retried, then the "
            "step is retried; 404 and content that is not CSV fail at once with the reason."
        ),
    )
    def raw_asset(context: dg.AssetExecutionContext, ingestion_files: IngestionFilesResource) -> dg.MaterializeResult:
        from orchestration_platform.lib.ingestion.dataset import DatasetConfigError
        from orchestration_platform.lib.ingestion.download import (
            DownloadError,
            TransientDownloadError,
            download_csv,
        )

        config = RawFileConfig(**context.op_config)
        keys = context.partition_keys
        if config.landed_file and len(keys) != 1:
            raise dg.Failure(f"a landed file fills exactly one partition; this run targets {len(keys)}",
                             allow_retries=False)
        try:
            headers = spec.auth_headers()
        except DatasetConfigError as error:
            raise dg.Failure(str(error), allow_retries=False) from None

        def on_retry(attempt: int, error: BaseException | None, wait_s: float | None) -> None:
            context.log.warning(f"download attempt {attempt} failed ({error}); retrying in {wait_s or 0:.1f}s")

        def fetch(partition: str):
            url = (_landed_file_url(ingestion_files, config.landed_file) if config.landed_file
                   else spec.url_for(partition))
            return download_csv(url, ingestion_files.raw_file(spec.name, partition), attempts=config.attempts,
                                backoff_s=config.backoff_s, timeout_s=config.timeout_s, on_retry=on_retry,
                                headers=headers or None, deadline_s=config.deadline_s,
                                max_response_bytes=config.max_response_bytes)

        files, failures = {}, {}
        with ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(keys))) as pool:
            futures = {partition: pool.submit(fetch, partition) for partition in keys}
            for done, (partition, future) in enumerate(futures.items(), start=1):
                try:
                    files[partition] = future.result()
                except (DownloadError, TransientDownloadError) as error:
                    failures[partition] = error
                if done % PROGRESS_EVERY == 0:
                    context.log.info(f"downloaded {done} of {len(keys)} partition(s)")
        if failures:
            summary = "; ".join(f"{p}: {e}" for p, e in sorted(failures.items())[:5])
            message = f"{len(failures)} of {len(keys)} file(s) could not be downloaded: {summary}"
            transient = all(isinstance(e, TransientDownloadError) for e in failures.values())
            if transient and context.retry_number < config.step_retries:
                context.log.warning(f"{message}; retrying the step in {config.step_retry_wait_s:.0f}s")
                raise dg.RetryRequested(max_retries=config.step_retries, seconds_to_wait=config.step_retry_wait_s)
            raise dg.Failure(message, allow_retries=False)
        context.log.info(f"kept {len(files)} raw file(s), {sum(f.size_bytes for f in files.values())} bytes")
        manifest = ingestion_files.raw_file(spec.name, keys[0]).parent / f"manifest_{keys[0]}_{keys[-1]}.json"
        return dg.MaterializeResult(metadata=_raw_metadata(files, keys, manifest))

    return raw_asset


def build_cleaned_asset(spec: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    from orchestration_platform.defs.ingestion.dataset_cleaning import clean_partitions, cleaning_description

    key = cleaned_key(spec.name)
    freshness = (dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=spec.quality.freshness_hours))
                 if spec.quality.freshness_hours else None)

    @dg.asset(
        key=key,
        group_name=GROUP,
        kinds={"csv", warehouse_kind()},
        deps=[raw_key(spec.name)],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=STEP_RETRY,  # machinery failures (a locked or restarted warehouse); bad files fail at once
        pool="ingestion_warehouse",
        freshness_policy=freshness,
        owners=list(spec.owners) or None,
        tags=spec.tags or None,
        description=cleaning_description(spec),
        check_specs=[
            dg.AssetCheckSpec(CHECK_SCHEMA, asset=key, blocking=False,
                              description="The file has no columns beyond the declared ones (new columns are "
                                          "ignored; this warns so you can declare them)."),
            dg.AssetCheckSpec(CHECK_DROP_RATE, asset=key, blocking=True,
                              description=f"At most {spec.quality.max_drop_rate:.0%} of the rows were dropped as unusable "
                                          "(duplicates not counted)."),
        ],
    )
    def cleaned_asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                      ingestion_files: IngestionFilesResource) -> dg.MaterializeResult:
        return clean_partitions(context, spec, warehouse, ingestion_files)

    return cleaned_asset
