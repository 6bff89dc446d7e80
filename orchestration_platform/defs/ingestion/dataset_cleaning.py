"""The body of a dataset's cleaned asset: clean each partition's raw file, replace the partitions in the
warehouse in one transaction, and report drops, schema drift and the drop rate."""

import dagster as dg

from orchestration_platform.defs.ingestion.files import IngestionFilesResource
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.lib.ingestion.dataset import DatasetSpec

PROGRESS_EVERY = 50


def cleaning_description(spec: DatasetSpec) -> str:
    schema = spec.schema
    required = ", ".join(schema.required) or "none"
    key = ", ".join(schema.key_columns) or "no key"
    dupes = {"drop_exact": "exact duplicates (once cleaned) are dropped",
             "keep_last": f"one row per key is kept (the last by {schema.keep_last_by or 'file order'})",
             "fail": "a repeated key fails the partition"}[schema.duplicates]
    return (
        f"{spec.description}\n\nCleaned into the warehouse table `{spec.table}` (one row per {key}). Values are "
        f"trimmed; rows with a null in a required column ({required}), an unparseable number, date or "
        f"boolean, or a malformed line are dropped and counted; dates and times become ISO-8601 UTC; {dupes}. "
        "Columns are found by name or alias in any order; undeclared columns are ignored and reported. "
        "Writing replaces exactly the partitions' rows in one transaction, so re-running gives the same table. "
        "Metadata `rows_in`, `rows_out` and `dropped_*` plot per partition."
    )


def clean_partitions(context: dg.AssetExecutionContext, spec: DatasetSpec, warehouse: WarehouseResource,
                     files: IngestionFilesResource) -> dg.MaterializeResult:
    from orchestration_platform.defs.ingestion.dataset_assets import CHECK_DROP_RATE, CHECK_SCHEMA
    from orchestration_platform.lib.ingestion.cleaning import DROP_REASONS, CsvFormatError, clean_csv_slices
    from orchestration_platform.lib.ingestion.dataset_tables import table_spec

    partitions = context.partition_keys
    batches, rows_in, nulled, extra, errors = {}, 0, 0, {}, {}
    dropped = dict.fromkeys(DROP_REASONS, 0)
    encodings, results = set(), []
    for done, partition in enumerate(partitions, start=1):
        if done % PROGRESS_EVERY == 0:
            context.log.info(f"cleaned {done} of {len(partitions)} partition(s)")
        path = files.raw_file(spec.name, partition)
        if not path.is_file():
            raise dg.Failure(f"dataset {spec.name!r}: no raw file for {partition} at {path}: materialize "
                             f"{'/'.join(['ingestion', spec.name, 'raw'])} for it first", allow_retries=False)
        try:
            # slices: the warehouse writes one while the next is cleaned; counts are complete once written
            cleaned, batches[partition] = clean_csv_slices(path.read_bytes(), spec.schema,
                                                           source=f"raw file {path.name}")
        except CsvFormatError as error:
            errors[partition] = str(error)
            continue
        results.append(cleaned)
        encodings.add(cleaned.encoding)
        for column in cleaned.extra_columns:
            extra.setdefault(column, partition)
    if errors:  # nothing is written: the partitions of a run land together or not at all
        shown = "\n".join(f"{p}: {e}" for p, e in sorted(errors.items())[:5])
        raise dg.Failure(f"dataset {spec.name!r}: {len(errors)} of {len(partitions)} partition(s) cannot be "
                         f"cleaned:\n{shown}", allow_retries=False)
    table = table_spec(spec.schema, spec.partitions.cadence)
    store = warehouse.get_warehouse()
    try:
        written = store.replace_partitions(table, batches)
    except CsvFormatError as error:  # a fault deep in a streamed file: the transaction rolled back
        raise dg.Failure(f"dataset {spec.name!r}: a partition cannot be cleaned, nothing was written: {error}",
                         allow_retries=False) from None
    for cleaned in results:  # the counts are complete once the slices are written
        rows_in += cleaned.rows_in
        nulled += cleaned.nulled_values
        for reason, count in cleaned.dropped.items():
            dropped[reason] += count
    rows_out = sum(written.values())
    # duplicates are not lost data: the rate counts the rows dropped as unusable
    drop_rate = (rows_in - rows_out - dropped["duplicate"]) / rows_in if rows_in else 0.0
    context.log.info(f"replaced {len(written)} partition(s) of {table.name} in {store.display_url}: "
                     f"{rows_in} rows in, {rows_out} out, dropped {dropped}")
    extra_text = ", ".join(f"{c} (first in {p})" for c, p in sorted(extra.items())) or "none"
    checks = [
        dg.AssetCheckResult(check_name=CHECK_SCHEMA, passed=not extra, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"new_columns": extra_text,
                                      "fix": "declare them under `columns` to keep them" if extra else "none"}),
        dg.AssetCheckResult(check_name=CHECK_DROP_RATE, passed=drop_rate <= spec.quality.max_drop_rate,
                            metadata={"drop_rate": dg.MetadataValue.float(round(drop_rate, 4)),
                                      "max_drop_rate": dg.MetadataValue.float(spec.quality.max_drop_rate)}),
    ]
    return dg.MaterializeResult(
        metadata={
            "rows_in": dg.MetadataValue.int(rows_in),
            "rows_out": dg.MetadataValue.int(rows_out),
            **{f"dropped_{reason}": dg.MetadataValue.int(count) for reason, count in dropped.items()},
            "nulled_optional_values": dg.MetadataValue.int(nulled),
            "drop_rate": dg.MetadataValue.float(round(drop_rate, 4)),
            "undeclared_columns": extra_text,
            "encoding": ", ".join(sorted(encodings)) or "n/a",
            "partitions": len(written),
            "table": table.name,
            "warehouse": store.display_url,
            "dagster/row_count": dg.MetadataValue.int(rows_out),
        },
        check_results=checks,
    )
