"""Cleaning a corpus of messy CSVs, and clear errors for files that are not usable CSV at all."""

from __future__ import annotations

import datetime as dt

import pytest

from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv, daily_cases_rows
from orchestration_platform.lib.ingestion.cleaning import CsvFormatError, clean_csv

HEADER = "report_id,region,reported_at,confirmed_cases,deaths,notes"
UTC = dt.UTC


def _clean(body: str, header: str = HEADER, *, prefix: bytes = b"", newline: str = "\n"):
    text = newline.join([header, *body.strip("\n").split("\n")]) + newline
    return clean_csv(prefix + text.encode(), source="test.csv")


def _rows(result) -> list[dict]:
    return result.table.to_pylist()


@pytest.mark.parametrize(
    ("written", "instant"),
    [
        ("2026-03-01T04:38:00Z", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("2026-03-01T06:38:00+02:00", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("2026-03-01T00:30:00-05:00", dt.datetime(2026, 3, 1, 5, 30, tzinfo=UTC)),
        ("2026-03-01T04:38:00", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("2026-03-01 04:38:00", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("2026-03-01", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("03/01/2026 04:38", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("03/01/2026", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("01.03.2026 04:38", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
        ("01.03.2026", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("1772339880", dt.datetime(2026, 3, 1, 4, 38, tzinfo=UTC)),
    ],
)
def test_every_accepted_date_format_becomes_the_same_utc_instant(written: str, instant: dt.datetime) -> None:
    result = _clean(f"1,north,{written},3,0,")
    assert _rows(result)[0]["reported_at"] == instant
    assert result.rows_out == 1


@pytest.mark.parametrize("written", ["02/30/2026 10:00", "30.02.2026", "2026-02-29", "2026-13-01", "yesterday",
                                     "31/12/2026", "2026-03-01T25:00:00Z"])
def test_impossible_or_unknown_dates_are_dropped_as_bad_date(written: str) -> None:
    result = _clean(f"1,north,{written},3,0,\n2,south,2026-03-01,4,0,")
    assert [r["report_id"] for r in _rows(result)] == [2]
    assert result.dropped["bad_date"] == 1


def test_the_mess_of_real_feeds_is_cleaned_and_every_drop_counted() -> None:
    body = (
        ' 1 ,  north ,2026-03-01T10:00:00Z, 5 ,1,"note, with comma"\n'
        '2,south,03/01/2026 11:00,7,,"two\nlines"\n'
        "2,south,03/01/2026 11:00,7,,\"two\nlines\"\n"  # exact duplicate
        "3,  east,2026-03-01T12:00:00+01:00,8,0,\n"
        "3,east,2026-03-01 11:00:00,8,0,\n"  # the same row, differently written: a duplicate once cleaned
        "4,,2026-03-01,1,0,\n"  # null region
        "5,west,NA,1,0,\n"  # null date token
        "null,west,2026-03-01,1,0,\n"  # null id token
        "6,west,2026-03-01,twelve,0,\n"  # bad number
        "7,west,not a date,2,0,\n"  # bad date
        "8,west,2026-03-01,3,lots,\n"  # bad optional number: nulled, row kept
        "9,west,2026-03-01,3\n"  # too few fields
    )
    result = _clean(body, header=" Report_ID , region,reported_at ,confirmed_cases,deaths,notes",
                    prefix=b"\xef\xbb\xbf", newline="\r\n")
    rows = _rows(result)
    assert [r["report_id"] for r in rows] == [1, 2, 3, 8]
    assert rows[0]["region"] == "north" and rows[0]["confirmed_cases"] == 5 and rows[0]["notes"] == "note, with comma"
    assert rows[1]["notes"] == "two\r\nlines" or rows[1]["notes"] == "two\nlines"
    assert rows[1]["deaths"] is None and rows[3]["deaths"] is None
    assert result.dropped == {"malformed_row": 1, "missing_required": 3, "bad_number": 1, "bad_date": 1, "bad_boolean": 0,
                              "duplicate": 2}
    assert result.nulled_values == 1
    assert result.rows_in == 12 and result.rows_in == result.rows_out + sum(result.dropped.values())


def test_signed_and_grouped_whole_numbers_are_read_and_words_dropped() -> None:
    body = ("1,north,2026-03-01,+5,+2,\n"  # a plus sign (Arrow alone refuses `+5`)
            "2,north,2026-03-01,\"1,234\",-0,\n"  # a thousands separator
            "3,north,2026-03-01,-7,1.5,\n"  # a negative count is a number; 1.5 deaths is not whole: nulled
            "4,north,2026-03-01,twelve,1,\n")  # a word in a required number: dropped
    result = _clean(body)
    assert [(r["report_id"], r["confirmed_cases"], r["deaths"]) for r in _rows(result)] == [
        (1, 5, 2), (2, 1234, 0), (3, -7, None)]
    assert result.dropped["bad_number"] == 1 and result.nulled_values == 1


@pytest.mark.parametrize("day", ["2025-01-01", "2026-02-28", "2026-07-04"])
def test_demo_feed_days_clean_consistently(day: str) -> None:
    date = dt.date.fromisoformat(day)
    result = clean_csv(daily_cases_csv(date), source=f"{day}.csv")
    assert result.rows_in == len(daily_cases_rows(date))
    assert result.rows_in == result.rows_out + sum(result.dropped.values())
    ids = result.table["report_id"].to_pylist()
    assert len(ids) == len(set(ids))
    assert all(t.date() in (date, date - dt.timedelta(days=1)) for t in result.table["reported_at"].to_pylist())
    assert result.table.column("region").null_count == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"   \r\n", "the file is empty"),
        ((HEADER + "\r\n").encode(), "has a header but no data rows"),
        (b"\xef\xbb\xbf" + HEADER.encode(), "has a header but no data rows"),
        (b"report_id;region;reported_at;confirmed_cases\n1;n;2026-01-01;3\n", "semicolon-delimited"),
        (b"report_id\tregion\treported_at\tconfirmed_cases\n1\tn\t2026-01-01\t3\n", "tab-delimited"),
        ((HEADER + "\n1,Z\xfcrich,2026-01-01,3,0,\n").encode("latin-1"), "not UTF-8 text (byte 0xfc at line 2"),
        (b"<!doctype html><html><body>Not found</body></html>", "looks like HTML/XML, not CSV"),
        (b'{"data": [1, 2]}', "looks like JSON, not CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary content"),
        (b"id,name\n1,a\n", "missing required column(s) report_id, region, reported_at, confirmed_cases"),
    ],
)
def test_unusable_files_fail_with_the_file_the_problem_and_the_fix(raw: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError) as error:
        clean_csv(raw, source="landing/2026-01-01.csv")
    assert message in str(error.value)
    assert "landing/2026-01-01.csv" in str(error.value)


def test_a_file_where_every_row_is_bad_gives_an_empty_table_not_an_error() -> None:
    result = _clean("1,,2026-03-01,1,0,\n2,north,nope,1,0,")
    assert result.rows_out == 0 and result.rows_in == 2


def test_when_sniffing_cannot_decide_the_error_names_the_dialect_field_to_set() -> None:
    from orchestration_platform.lib.ingestion.cleaning import Column, CsvSchema, Dialect

    schema = CsvSchema("spaced", (Column("region", "text"), Column("cases", "integer")))
    with pytest.raises(CsvFormatError, match=r"cannot tell the delimiter .* set the dataset.s dialect\.delimiter"):
        clean_csv(b"region cases\nnorth 5\n", schema, source="spaced.csv")
    strict_utf8 = CsvSchema("strict_utf8", schema.columns, dialect=Dialect(encoding="utf-8"))
    with pytest.raises(CsvFormatError, match=r"not UTF-8 text .* set the dataset.s dialect\.encoding"):
        clean_csv("region,cases\nZ\u00fcrich,5\n".encode("latin-1"), strict_utf8, source="strict_utf8.csv")
