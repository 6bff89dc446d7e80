"""Parse and clean a messy CSV file into a typed Arrow table, counting every row it drops.

Cleaning (in this order, each dropped row counted once under the first reason that applies):
- `malformed_row`: a row with the wrong number of fields.
- `missing_required`: a required column is empty, blank or a null token (`NA`, `null`, ...).
- `bad_number`: a required integer column holds something that is not a whole number.
- `bad_date`: a required timestamp column matches none of the accepted formats (or names a day
  that does not exist, such as 02/30).
- `duplicate`: the row equals an earlier row once cleaned (so `" north"` equals `"north"`).
Values are trimmed; every timestamp becomes a UTC instant; an optional column with a bad value
becomes null (counted in `nulled_values`). Files that cannot be read as CSV at all raise
`CsvFormatError` with the file, the problem and the fix.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ColumnKind = Literal["int", "text", "timestamp"]
DROP_REASONS = ("malformed_row", "missing_required", "bad_number", "bad_date", "duplicate")
NULL_TOKENS = ("", "na", "n/a", "null", "none", "nan", "-")
NULL_VALUE_SET = pa.array(sorted({v for t in NULL_TOKENS for v in (t, t.upper(), t.title())}))
BOM = b"\xef\xbb\xbf"

# Accepted timestamp formats by family, told apart by one character (`2026-...`, `03/...`, `31....`),
# so each value meets only its family's formats: (format, where the day of month is, naive format
# of the leading part). strptime rolls impossible days over (02/30 -> 03/02): comparing the written
# day with the parsed one catches that.
TimestampFormat = tuple[str, tuple[int, int], str | None]
TIMESTAMP_FAMILIES: tuple[tuple[int, str, tuple[TimestampFormat, ...]], ...] = (
    (4, "-", (("%Y-%m-%dT%H:%M:%S%z", (8, 10), "%Y-%m-%dT%H:%M:%S"), ("%Y-%m-%d %H:%M:%S", (8, 10), None),
              ("%Y-%m-%dT%H:%M:%S", (8, 10), None), ("%Y-%m-%d", (8, 10), None))),
    (2, "/", (("%m/%d/%Y %H:%M", (3, 5), None), ("%m/%d/%Y", (3, 5), None))),
    (2, ".", (("%d.%m.%Y %H:%M", (0, 2), None), ("%d.%m.%Y", (0, 2), None))),
)
EPOCH_SECONDS = r"^\d{9,11}$"
WHOLE_NUMBER = r"^[+-]?\d{1,18}$"


class CsvFormatError(ValueError):
    """The file cannot be read as the expected CSV; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = True


@dataclass(frozen=True)
class CsvSchema:
    """The columns a feed must carry; `key` identifies a row (unique per partition)."""

    name: str
    columns: tuple[Column, ...]
    key: str | None = None

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


DAILY_CASES = CsvSchema(
    name="daily_cases",
    columns=(
        Column("report_id", "int"),
        Column("region", "text"),
        Column("reported_at", "timestamp"),
        Column("confirmed_cases", "int"),
        Column("deaths", "int", required=False),
        Column("notes", "text", required=False),
    ),
    key="report_id",
)


@dataclass
class CleanedCsv:
    """The cleaned rows and what cleaning did (counts per drop reason)."""

    rows_in: int
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    nulled_values: int = 0
    table: pa.Table | None = None  # typed Arrow table in schema column order


def _normalise_name(name: str) -> str:
    return name.strip().strip("\ufeff").lower().replace(" ", "_")


def _utf8_error(raw: bytes, source: str) -> CsvFormatError | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return CsvFormatError(
            f"{source}: not UTF-8 text (byte 0x{raw[error.start]:02x} at line {line}, offset {error.start}); "
            "re-save the file as UTF-8"
        )
    return None


def _check_text(raw: bytes, source: str) -> int:
    """Reject what is not CSV text at all; return where the header starts (after a BOM). No copies."""
    if not raw[:4096].strip() and not raw.strip():
        raise CsvFormatError(f"{source}: the file is empty ({len(raw)} bytes); expected a CSV with a header row")
    if b"\x00" in raw[:65536]:
        raise CsvFormatError(f"{source}: binary content (NUL bytes), not a CSV text file")
    return len(BOM) if raw.startswith(BOM) else 0


def _read_header(raw: bytes, start: int, schema: CsvSchema, source: str) -> list[str]:
    end = raw.find(b"\n", start)
    try:
        first_line = raw[start:end if end >= 0 else len(raw)].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise _utf8_error(raw, source) from None
    start = first_line.lstrip()[:1]
    if start in ("<", "{", "["):
        kind = "HTML/XML" if start == "<" else "JSON"
        raise CsvFormatError(f"{source}: looks like {kind}, not CSV (starts with {first_line[:40]!r})")
    header = [_normalise_name(n) for n in next(csv.reader([first_line]))]
    missing = [name for name in schema.required if name not in header]
    if missing:
        if len(header) == 1:
            for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
                if delimiter in first_line:
                    raise CsvFormatError(
                        f"{source}: the header {first_line[:80]!r} is {label}-delimited; "
                        "the pipeline reads comma-separated files: re-export it with ',' as the delimiter"
                    )
        raise CsvFormatError(
            f"{source}: missing required column(s) {', '.join(missing)}; found columns: "
            f"{', '.join(header) or '(none)'}; the {schema.name} feed needs {', '.join(schema.required)}"
        )
    if len(set(header)) != len(header):
        raise CsvFormatError(f"{source}: duplicate column names in the header {header}")
    return header


def _as_nullable_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    trimmed = pc.utf8_trim_whitespace(column)
    is_null_token = pc.is_in(trimmed, value_set=NULL_VALUE_SET)
    return pc.if_else(is_null_token, pa.scalar(None, pa.string()), trimmed)


def _parse_int(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole numbers (optional sign, up to 18 digits) as int64; anything else becomes null."""
    plain = pc.and_(pc.utf8_is_digit(text), pc.less_equal(pc.utf8_length(text), 18))
    if pc.all(pc.or_(plain, pc.is_null(text))).as_py():  # the usual case: no regex needed
        return pc.cast(text, pa.int64())
    valid = pc.or_(plain, pc.match_substring_regex(text, WHOLE_NUMBER))
    return pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.string())), pa.int64())


def _byte_at(text: pa.StringArray, position: int) -> np.ndarray:
    """Each value's byte at `position` (0 where the value is shorter or null), read from the Arrow buffers."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    if data is None or len(data) == 0:
        return np.zeros(len(text), dtype=np.uint8)
    data = np.frombuffer(data, dtype=np.uint8)
    starts = offsets[:-1] + position
    return np.where(offsets[1:] > starts, data[np.minimum(starts, len(data) - 1)], 0).astype(np.uint8)


def _parse_timestamp(text: pa.ChunkedArray) -> pa.Array:
    """Each value tried with its family's formats only (then epoch seconds); UTC instants out."""
    if isinstance(text, pa.ChunkedArray):  # one contiguous array: cheaper takes and filters below
        text = text.combine_chunks() if text.num_chunks else pa.array([], pa.string())
    seconds = np.zeros(len(text), dtype=np.int64)
    parsed_mask = np.zeros(len(text), dtype=bool)
    unclaimed = pc.is_valid(text).to_numpy(zero_copy_only=False)
    for position, marker, formats in TIMESTAMP_FAMILIES:
        member = unclaimed & (_byte_at(text, position) == ord(marker))
        unclaimed &= ~member
        todo = pa.array(np.flatnonzero(member))
        values = text.take(todo)
        for fmt, (day_start, day_stop), local_fmt in formats:
            if len(todo) == 0:
                break
            parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
            hit = pc.is_valid(parsed)
            hit_values, hit_parsed = values.filter(hit), parsed.filter(hit)
            local = hit_parsed if local_fmt is None else pc.strptime(
                pc.utf8_slice_codeunits(hit_values, 0, 19), format=local_fmt, unit="s")
            written_day = pc.utf8_slice_codeunits(hit_values, day_start, day_stop)
            exists = pc.equal(written_day, pc.utf8_lpad(pc.cast(pc.day(local), pa.string()), 2, "0"))
            good_rows = todo.filter(hit).filter(exists).to_numpy()
            seconds[good_rows] = pc.cast(pc.cast(hit_parsed.filter(exists), pa.timestamp("s")),
                                         pa.int64()).to_numpy()
            parsed_mask[good_rows] = True
            # a value that matched the format but names an impossible day is not retried with the others
            todo, values = todo.filter(pc.invert(hit)), values.filter(pc.invert(hit))
    rest = pa.array(np.flatnonzero(unclaimed))
    values = text.take(rest)
    epoch = pc.match_substring_regex(values, EPOCH_SECONDS)
    epoch_rows = rest.filter(epoch).to_numpy()
    seconds[epoch_rows] = pc.cast(values.filter(epoch), pa.int64()).to_numpy()
    parsed_mask[epoch_rows] = True
    return pa.array(seconds, pa.timestamp("s", tz="UTC"), mask=~parsed_mask)


def _read_table(raw: bytes, start: int, header: list[str], source: str) -> tuple[pa.Table, int]:
    malformed: list[int] = []

    def skip_malformed(row) -> str:  # a ragged row is dropped and counted, not fatal
        malformed.append(1)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(raw)[start:]),  # a view: the file's bytes are not copied
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip_malformed),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False, null_values=[]
            ),
        )
    except pa.ArrowInvalid as error:
        if "UTF8" in str(error):  # Arrow validates UTF-8 while converting; find the byte for the message
            raise (_utf8_error(raw, source) or CsvFormatError(f"{source}: {error}")) from None
        raise CsvFormatError(f"{source}: cannot parse as CSV: {error}") from None
    return table, len(malformed)


def _clean_column(table: pa.Table, column: Column) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray | None,
                                                          np.ndarray | None, int]:
    """One column typed; for a required column its missing and unparsed rows, else how many values were nulled."""
    text_values = _as_nullable_text(table[column.name])
    if column.kind == "int":
        typed = _parse_int(text_values)
    elif column.kind == "timestamp":
        typed = _parse_timestamp(text_values)
    else:
        typed = text_values
    unparsed = pc.and_(pc.is_valid(text_values), pc.is_null(typed))
    if not column.required:
        return typed, None, None, pc.sum(pc.cast(unparsed, pa.int64())).as_py() or 0
    missing = pc.is_null(text_values).to_numpy(zero_copy_only=False)
    return typed, missing, None if column.kind == "text" else unparsed.to_numpy(zero_copy_only=False), 0


def _clean_slice(table: pa.Table, schema: CsvSchema) -> tuple[pa.Table, dict[str, np.ndarray], np.ndarray, int]:
    """Typed columns of `table`; per drop reason the rows it drops first; the rows kept; values nulled."""
    rows = table.num_rows
    missing = np.zeros(rows, dtype=bool)
    bad = {"bad_number": np.zeros(rows, dtype=bool), "bad_date": np.zeros(rows, dtype=bool)}
    # Arrow kernels release the GIL: columns are cleaned side by side, the costly timestamps first
    present = sorted((c for c in schema.columns if c.name in table.column_names), key=lambda c: c.kind != "timestamp")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.name: pool.submit(_clean_column, table, c) for c in present}
        done = {name: future.result() for name, future in futures.items()}
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    nulled = 0
    for column in schema.columns:
        if column.name not in done:
            columns[column.name] = pa.nulls(rows, _arrow_type(column.kind))
            continue
        typed, column_missing, unparsed, column_nulled = done[column.name]
        columns[column.name] = typed
        nulled += column_nulled
        if column_missing is not None:
            missing |= column_missing
        if unparsed is not None:
            bad["bad_date" if column.kind == "timestamp" else "bad_number"] |= unparsed
    hits = {"missing_required": missing}
    taken = missing.copy()
    for reason, mask in bad.items():
        hits[reason] = mask & ~taken
        taken |= mask
    return pa.table(columns), hits, ~taken, nulled


def _repeated_key_rows(key: pa.ChunkedArray) -> pa.Array:
    """Indices (ascending) of the rows whose key value occurs more than once."""
    if pa.types.is_integer(key.type) and key.null_count == 0:  # the usual case: a stable sort, no hashing
        values = key.to_numpy()
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        same = ordered[1:] == ordered[:-1]
        repeated = np.zeros(len(values), dtype=bool)
        repeated[1:] |= same
        repeated[:-1] |= same
        return pa.array(np.sort(order[repeated]))
    counts = pc.value_counts(key)
    repeated_values = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return pc.indices_nonzero(pc.is_in(key, value_set=repeated_values))


def _duplicate_mask(table: pa.Table, key: str | None) -> np.ndarray:
    """True for rows equal to an earlier row. Only rows whose key repeats are compared in full."""
    mask = np.zeros(table.num_rows, dtype=bool)
    candidates = _repeated_key_rows(table[key]) if key is not None else pa.array(np.arange(table.num_rows))
    if len(candidates) == 0:
        return mask
    subset = table.combine_chunks().take(candidates).append_column("__row", candidates)
    first = subset.group_by(table.column_names, use_threads=False).aggregate([("__row", "min")])
    mask[candidates.to_numpy()] = True
    mask[first["__row_min"].to_numpy()] = False
    return mask


def clean_csv(raw: bytes, schema: CsvSchema = DAILY_CASES, *, source: str = "the CSV file") -> CleanedCsv:
    """Parse `raw` (bytes of one CSV file) and clean it as the module docstring says."""
    start = _check_text(raw, source)
    header = _read_header(raw, start, schema, source)
    body = raw.find(b"\n", start) + 1
    if body == 0 or (not raw[body:body + 4096].strip() and not raw[body:].strip()):
        raise CsvFormatError(f"{source}: has a header but no data rows")
    table, malformed = _read_table(raw, start, header, source)
    if table.num_rows == 0 and malformed == 0:
        raise CsvFormatError(f"{source}: has a header but no data rows")
    result = CleanedCsv(rows_in=table.num_rows + malformed)
    result.dropped["malformed_row"] = malformed
    typed, hits, keep, result.nulled_values = _clean_slice(table, schema)
    for reason, hit in hits.items():
        result.dropped[reason] = int(hit.sum())
    cleaned = typed.filter(pa.array(keep))
    duplicates = _duplicate_mask(cleaned, schema.key)
    result.dropped["duplicate"] = int(duplicates.sum())
    if result.dropped["duplicate"]:
        cleaned = cleaned.filter(pa.array(~duplicates))
    result.table = cleaned.combine_chunks()
    result.rows_out = result.table.num_rows
    return result


def _arrow_type(kind: ColumnKind) -> pa.DataType:
    return {"int": pa.int64(), "text": pa.string(), "timestamp": pa.timestamp("s", tz="UTC")}[kind]
