"""Cleaning a file slice by slice while the previous slice is written gives exactly what cleaning it whole gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator

import pyarrow as pa
import pytest

from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv
from orchestration_platform.lib.ingestion.cleaning import CsvFormatError, clean_csv, clean_csv_slices
from orchestration_platform.lib.ingestion.daily_cases import CLEANED_TABLE
from orchestration_platform.lib.ingestion.schema import DAILY_CASES, Column
from orchestration_platform.lib.ingestion.warehouse import Warehouse

# the demo dataset with its key read as text (codes, not numbers): the other way slices find earlier keys
TEXT_KEYED = dataclasses.replace(DAILY_CASES, columns=(Column("report_id", "text"), *DAILY_CASES.columns[1:]))


def _messy_file_with_far_duplicates(rows: int = 20_000) -> bytes:
    """The demo feed plus exact copies of earlier rows placed far away (in later slices), some padded."""
    header, *body = [line for line in daily_cases_csv(dt.date(2026, 3, 1), rows=rows).split(b"\n") if line]
    body = [line for line in body if line.count(b'"') == 0]  # one line per row, so lines can be moved
    picked = random.Random(7).sample(body[: len(body) // 3], 600)
    body += picked[:400] + [b" " + line for line in picked[400:]]  # " 12" cleans to 12: still a duplicate
    return b"\n".join([header, *body]) + b"\n"


@pytest.mark.parametrize("schema", [DAILY_CASES, TEXT_KEYED], ids=["integer key", "text key"])
@pytest.mark.parametrize("slice_rows", [997, 4096])
def test_sliced_cleaning_keeps_the_same_rows_and_counts(slice_rows: int, schema) -> None:
    raw = _messy_file_with_far_duplicates()
    whole = clean_csv(raw, schema, source="feed.csv")
    result, slices = clean_csv_slices(raw, schema, source="feed.csv", slice_rows=slice_rows)
    tables = list(slices)
    assert len(tables) >= 3
    assert pa.concat_tables(tables).combine_chunks().equals(whole.table)
    assert result.dropped == whole.dropped and whole.dropped["duplicate"] >= 600
    assert (result.rows_in, result.rows_out, result.nulled_values) == (
        whole.rows_in, whole.rows_out, whole.nulled_values)


def test_a_stream_of_slices_loads_the_same_table_as_one_table(tmp_path) -> None:
    raw = _messy_file_with_far_duplicates()
    one = Warehouse(f"sqlite:///{tmp_path / 'one.sqlite'}")
    sliced = Warehouse(f"sqlite:///{tmp_path / 'sliced.sqlite'}")
    written_one = one.replace_partitions(CLEANED_TABLE, {"2026-03-01": clean_csv(raw).table})
    result, slices = clean_csv_slices(raw, slice_rows=2000)
    written_sliced = sliced.replace_partitions(CLEANED_TABLE, {"2026-03-01": slices})
    assert written_one == written_sliced == {"2026-03-01": result.rows_out}
    query = "SELECT * FROM daily_cases ORDER BY row_key"
    assert one.query(query) == sliced.query(query)


def test_a_failure_while_slices_stream_in_keeps_the_previous_rows(tmp_path) -> None:
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    raw = _messy_file_with_far_duplicates()
    store.replace_partitions(CLEANED_TABLE, {"2026-03-01": clean_csv(raw).table})
    before = store.query("SELECT count(*), sum(report_id) FROM daily_cases")

    def failing() -> Iterator[pa.Table]:
        _, slices = clean_csv_slices(raw, slice_rows=2000)
        yield next(slices)
        yield next(slices)
        raise OSError("disk went away while cleaning")

    with pytest.raises(OSError, match="disk went away"):
        store.replace_partitions(CLEANED_TABLE, {"2026-03-01": failing()})
    assert store.query("SELECT count(*), sum(report_id) FROM daily_cases") == before


def test_ragged_rows_at_the_very_end_of_a_streamed_file_are_counted() -> None:
    raw = _messy_file_with_far_duplicates() + b"1,north\n2,south\n"  # two rows with too few fields, last
    whole = clean_csv(raw)
    result, slices = clean_csv_slices(raw, slice_rows=997)
    rows_out = sum(t.num_rows for t in slices)
    assert result.dropped["malformed_row"] == whole.dropped["malformed_row"] >= 2
    assert result.rows_in == whole.rows_in == rows_out + sum(result.dropped.values())


def test_a_bad_byte_deep_in_a_streamed_file_fails_the_write_and_keeps_the_previous_rows(tmp_path) -> None:
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    raw = daily_cases_csv(dt.date(2026, 3, 1), rows=200_000)  # 12 MB: the reader takes 4 MiB at a time
    store.replace_partitions(CLEANED_TABLE, {"2026-03-01": clean_csv(raw).table})
    before = store.query("SELECT count(*), min(report_id), max(report_id) FROM daily_cases")
    cut = raw.index(b"\n", len(raw) * 9 // 10) + 1  # 90% into the file: long after the first slice was written
    broken = raw[:cut] + b"99,caf\xe9,2026-03-01,1,0,\n" + raw[cut:]  # latin-1 in a file declared UTF-8
    _, slices = clean_csv_slices(broken, source="feed.csv")  # the start reads fine
    with pytest.raises(CsvFormatError, match=r"feed.csv: not UTF-8 text \(byte 0xe9 at line \d+.*dialect.encoding"):
        store.replace_partitions(CLEANED_TABLE, {"2026-03-01": slices})
    assert store.query("SELECT count(*), min(report_id), max(report_id) FROM daily_cases") == before
