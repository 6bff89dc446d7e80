"""Parse and clean a messy CSV file into a typed Arrow table, counting every row it drops.

Cleaning (in this order, each dropped row counted once under the first reason that applies):
- `malformed_row`: a row with the wrong number of fields.
- `missing_required`: a required column is empty, blank or a null token (`NA`, `null`, ...).
- `bad_number`: a required numeric column holds something that is not a number.
- `bad_date`: a required date/timestamp column matches none of the accepted formats (or names a day
  that does not exist, such as 02/30).
- `bad_boolean`: a required boolean column holds something other than true/false/yes/no/1/0.
- `duplicate`: by the dataset's policy: `drop_exact` drops a row equal to an earlier one once
  cleaned (so `" north"` equals `"north"`); `keep_last` keeps one row per key (the last by a column).
Values are trimmed; every timestamp becomes a UTC instant; an optional column with a bad value
becomes null (counted in `nulled_values`). Files that cannot be read as CSV at all raise
`CsvFormatError` with the file, the problem and the fix. Column order does not matter; declared
columns are found by name or alias; undeclared columns are ignored and listed in `extra_columns`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from orchestration_platform.lib.ingestion.csv_layout import CsvFormatError, Dialect, Layout, find_layout
from orchestration_platform.lib.ingestion.schema import (
    DAILY_CASES,
    DROP_REASONS,
    NULL_TOKENS,
    Column,
    CsvSchema,
)
from orchestration_platform.lib.ingestion.typed_values import (
    parse_boolean,
    parse_date,
    parse_decimal_text,
    parse_float,
    parse_integer,
    parse_timestamp,
)

__all__ = ["DAILY_CASES", "CleanedCsv", "Column", "CsvFormatError", "CsvSchema", "Dialect", "clean_csv",
           "clean_csv_slices"]

BAD_REASON = {"integer": "bad_number", "float": "bad_number", "numeric": "bad_number", "date": "bad_date",
              "timestamp": "bad_date", "boolean": "bad_boolean"}
ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "numeric": pa.string(), "text": pa.string(),
               "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("s", tz="UTC")}


def _null_set(tokens: tuple[str, ...]) -> pa.Array:
    return pa.array(sorted({v for t in tokens for v in (t, t.upper(), t.lower(), t.title())}))


DEFAULT_NULLS = _null_set(NULL_TOKENS)


@dataclass
class CleanedCsv:
    """The cleaned rows and what cleaning did (counts per drop reason, columns found and not declared)."""

    rows_in: int
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    nulled_values: int = 0
    table: pa.Table | None = None  # typed Arrow table in schema column order
    extra_columns: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","


def _as_nullable_text(column: pa.ChunkedArray, nulls: pa.Array) -> pa.ChunkedArray:
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.is_in(trimmed, value_set=nulls), pa.scalar(None, pa.string()), trimmed)


BLOCK_BYTES = 4 << 20  # the reader parses 4 MiB at a time: a row may be up to this long
FIRST_SLICE_ROWS = 65_536  # small, so the loader starts writing while the rest is still being read


def _csv_error(error: pa.ArrowInvalid, data: bytes, source: str) -> CsvFormatError:
    if "UTF8" in str(error):  # Arrow validates UTF-8 while converting; find the byte for the message
        from orchestration_platform.lib.ingestion.csv_layout import utf8_error

        return utf8_error(data, source) or CsvFormatError(f"{source}: {error}")
    if "straddl" in str(error):
        return CsvFormatError(f"{source}: a row is longer than {BLOCK_BYTES >> 20} MiB, or a quote is never "
                              "closed; check the quoting of the file (or split the long values)")
    return CsvFormatError(f"{source}: cannot parse as CSV: {error}")


def _read_pieces(layout: Layout, schema: CsvSchema, source: str, malformed: list[int],
                 sizes: Iterator[int]) -> Iterator[pa.Table]:
    """The file's rows (declared columns only, as text) read as a stream, in tables of the next of `sizes`
    rows each (the last one shorter). A ragged row is skipped and counted in `malformed`."""

    def skip_malformed(row) -> str:  # a ragged row is dropped and counted, not fatal
        malformed.append(1)
        return "skip"

    names = [f"c{i}" for i in range(len(layout.header))]
    wanted = list(layout.matched)
    try:
        reader = pacsv.open_csv(
            pa.BufferReader(pa.py_buffer(layout.data)[layout.start:]),  # a view: the file's bytes are not copied
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 + schema.dialect.skip_rows,
                                           block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=layout.delimiter, quote_char=schema.dialect.quote,
                                             newlines_in_values=True, invalid_row_handler=skip_malformed),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, null_values=[],
                include_columns=[f"c{i}" for i in layout.matched.values()],
            ),
        )
    except pa.ArrowInvalid as error:
        raise _csv_error(error, layout.data, source) from None
    pending: list[pa.RecordBatch] = []
    have, want = 0, next(sizes)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as error:
            raise _csv_error(error, layout.data, source) from None
        pending.append(batch)
        have += batch.num_rows
        while have >= want:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, want).rename_columns(wanted)
            rest = table.slice(want)
            pending, have, want = rest.to_batches(), rest.num_rows, next(sizes)
    if have:
        yield pa.Table.from_batches(pending).rename_columns(wanted)


def _read_ahead(pieces: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`pieces`, the next one read in a helper thread while this one is cleaned (Arrow parses without the GIL)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-read") as reader:
        ahead = reader.submit(next, pieces, None)
        while (piece := ahead.result()) is not None:
            ahead = reader.submit(next, pieces, None)
            yield piece


def _typed(text: pa.ChunkedArray, column: Column, decimal_comma: bool):
    kind = column.type
    if kind == "integer":
        return parse_integer(text, decimal_comma)
    if kind == "float":
        return parse_float(text, decimal_comma)
    if kind == "numeric":
        return parse_decimal_text(text, decimal_comma)
    if kind == "boolean":
        return parse_boolean(text)
    if kind == "date":
        return parse_date(text, column.dates)
    if kind == "timestamp":
        return parse_timestamp(text, column.dates)
    return text


def _clean_column(table: pa.Table, column: Column, decimal_comma: bool):
    """One column typed; for a required column its missing and unparsed rows, else how many values were nulled."""
    nulls = DEFAULT_NULLS if column.null_tokens is None else _null_set(column.null_tokens)
    text_values = _as_nullable_text(table[column.name], nulls)
    typed = _typed(text_values, column, decimal_comma)
    unparsed = pc.and_(pc.is_valid(text_values), pc.is_null(typed))
    if not column.required:
        return typed, None, None, pc.sum(pc.cast(unparsed, pa.int64())).as_py() or 0
    missing = pc.is_null(text_values).to_numpy(zero_copy_only=False)
    return typed, missing, None if column.type == "text" else unparsed.to_numpy(zero_copy_only=False), 0


def _clean_slice(table: pa.Table, schema: CsvSchema, decimal_comma: bool):
    """Typed columns of `table`; per drop reason the rows it drops first; the rows kept; values nulled."""
    rows = table.num_rows
    missing = np.zeros(rows, dtype=bool)
    bad = {reason: np.zeros(rows, dtype=bool) for reason in ("bad_number", "bad_date", "bad_boolean")}
    # Arrow kernels release the GIL: columns are cleaned side by side, the costly dates first
    present = sorted((c for c in schema.columns if c.name in table.column_names),
                     key=lambda c: c.type not in ("timestamp", "date"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.name: pool.submit(_clean_column, table, c, decimal_comma) for c in present}
        done = {name: future.result() for name, future in futures.items()}
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    nulled = 0
    for column in schema.columns:
        if column.name not in done:
            columns[column.name] = pa.nulls(rows, ARROW_TYPES[column.type])
            continue
        typed, column_missing, unparsed, column_nulled = done[column.name]
        columns[column.name] = typed
        nulled += column_nulled
        if column_missing is not None:
            missing |= column_missing
        if unparsed is not None:
            bad[BAD_REASON[column.type]] |= unparsed
    hits = {"missing_required": missing}
    taken = missing.copy()
    for reason, mask in bad.items():
        hits[reason] = mask & ~taken
        taken |= mask
    return pa.table(columns), hits, ~taken, nulled


def _repeated_key_rows(table: pa.Table, key: tuple[str, ...]) -> pa.Array:
    """Indices (ascending) of the rows whose key value occurs more than once."""
    first = table[key[0]]
    if len(key) == 1 and pa.types.is_integer(first.type) and first.null_count == 0:  # stable sort, no hashing
        values = first.to_numpy()
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        same = ordered[1:] == ordered[:-1]
        repeated = np.zeros(len(values), dtype=bool)
        repeated[1:] |= same
        repeated[:-1] |= same
        return pa.array(np.sort(order[repeated]))
    if len(key) == 1:
        counts = pc.value_counts(first)
        repeated_values = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        return pc.indices_nonzero(pc.is_in(first, value_set=repeated_values))
    numbered = table.select(list(key)).append_column("__row", pa.array(np.arange(table.num_rows)))
    groups = numbered.group_by(list(key), use_threads=False).aggregate([("__row", "list")])
    lists = groups["__row_list"].combine_chunks()
    repeated = pc.filter(lists, pc.greater(pc.list_value_length(lists), 1))
    return pa.array(np.sort(pc.list_flatten(repeated).to_numpy()) if len(repeated) else np.zeros(0, np.int64))


def _duplicate_mask(table: pa.Table, schema: CsvSchema) -> np.ndarray:
    """True for rows the duplicate policy drops. Only rows whose key repeats are compared in full."""
    mask = np.zeros(table.num_rows, dtype=bool)
    key = schema.key_columns
    candidates = _repeated_key_rows(table, key) if key else pa.array(np.arange(table.num_rows))
    if len(candidates) == 0:
        return mask
    subset = table.combine_chunks().take(candidates).append_column("__row", candidates)
    if schema.duplicates == "keep_last" and key:
        order = [(schema.keep_last_by, "ascending")] if schema.keep_last_by else []
        ordered = subset.sort_by([*order, ("__row", "ascending")])
        last = ordered.group_by(list(key), use_threads=False).aggregate([("__row", "last")])
        mask[candidates.to_numpy()] = True
        mask[last["__row_last"].to_numpy()] = False
        return mask
    first = subset.group_by(table.column_names, use_threads=False).aggregate([("__row", "min")])
    mask[candidates.to_numpy()] = True
    mask[first["__row_min"].to_numpy()] = False
    return mask


def _fail_on_repeated_keys(table: pa.Table, schema: CsvSchema, source: str) -> None:
    rows = _repeated_key_rows(table, schema.key_columns)
    if len(rows):
        shown = table.take(rows[:5]).select(list(schema.key_columns)).to_pylist()
        raise CsvFormatError(
            f"{source}: dataset {schema.name!r} has {len(rows)} rows with a repeated key "
            f"{', '.join(schema.key_columns)} (e.g. {shown}); its duplicates policy is `fail`: fix the file, or set "
            "duplicates to drop_exact or keep_last"
        )


def clean_csv(raw: bytes, schema: CsvSchema = DAILY_CASES, *, source: str = "the CSV file") -> CleanedCsv:
    """Parse `raw` (bytes of one CSV file) and clean it as the module docstring says."""
    result, slices = clean_csv_slices(raw, schema, source=source, slice_rows=None)
    tables = list(slices)
    result.table = tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()
    return result


def clean_csv_slices(raw: bytes, schema: CsvSchema = DAILY_CASES, *, source: str = "the CSV file",
                     slice_rows: int | None = 250_000) -> tuple[CleanedCsv, Iterator[pa.Table]]:
    """`clean_csv` as a stream: the cleaned rows in order, slice by slice, so a loader can write one slice
    while the file is still being read and the next slice cleaned. The same rows as `clean_csv`.

    Slices are used when duplicates are `drop_exact` with a one-column key (a row's fate then depends on
    earlier rows only); else the file is cleaned whole by this call. This call reads the header and the first
    slice, so a file that is not CSV at all, lacks a required column or has no rows raises `CsvFormatError`
    here; a fault further into a streamed file (bad bytes, a runaway quote) raises it while iterating, so a
    loader's transaction rolls back. The counts in the returned `CleanedCsv` (`rows_in`, `rows_out`,
    `dropped`) are complete once the iterator is exhausted; `table` stays None."""
    declared = [(c.name, c.aliases, c.required) for c in schema.columns]
    layout = find_layout(raw, schema.dialect, declared, schema.name, source)
    body = layout.data.find(b"\n", layout.start) + 1
    empty = body == 0 or (not layout.data[body:body + 4096].strip() and not layout.data[body:].strip())
    streamed = slice_rows is not None and schema.duplicates == "drop_exact" and len(schema.key_columns) == 1
    sizes = (itertools.chain([min(FIRST_SLICE_ROWS, slice_rows)], itertools.repeat(slice_rows)) if streamed
             else itertools.repeat(2**62))
    malformed: list[int] = []
    pieces = iter(()) if empty else _read_pieces(layout, schema, source, malformed, sizes)
    first = next(pieces, None)
    result = CleanedCsv(rows_in=0, extra_columns=layout.extra, header=layout.header, encoding=layout.encoding,
                        delimiter=layout.delimiter)
    if first is None and not malformed:
        if not schema.allow_header_only:
            raise CsvFormatError(f"{source}: has a header but no data rows (set allow_header_only: true for "
                                 "datasets where an empty day is normal)")
        streamed = False
    if first is None:
        first = pa.table({name: pa.array([], pa.string()) for name in layout.matched})
    if streamed:
        pieces = _read_ahead(itertools.chain([first], pieces))
        return result, _stream(pieces, schema, layout.decimal_comma, result, malformed)
    result.rows_in = first.num_rows + len(malformed)  # cleaned now, so every error is raised by this call
    result.dropped["malformed_row"] = len(malformed)
    cleaned = _clean_rows(first, schema, layout.decimal_comma, result)
    if schema.duplicates == "fail":
        _fail_on_repeated_keys(cleaned, schema, source)
    duplicates = _duplicate_mask(cleaned, schema)
    result.dropped["duplicate"] = int(duplicates.sum())
    if result.dropped["duplicate"]:
        cleaned = cleaned.filter(pa.array(~duplicates))
    cleaned = cleaned.combine_chunks()
    result.rows_out = cleaned.num_rows
    return result, iter([cleaned])


def _clean_rows(table: pa.Table, schema: CsvSchema, decimal_comma: bool, result: CleanedCsv) -> pa.Table:
    """The rows of `table` that are not dropped for a missing or bad value; their counts added to `result`."""
    typed, hits, keep, nulled = _clean_slice(table, schema, decimal_comma)
    result.nulled_values += nulled
    for reason, hit in hits.items():
        result.dropped[reason] += int(hit.sum())
    return typed.filter(pa.array(keep))


def _stream(pieces: Iterator[pa.Table], schema: CsvSchema, decimal_comma: bool, result: CleanedCsv,
            malformed: list[int]) -> Iterator[pa.Table]:
    """Slices of cleaned rows; a row equal to an earlier one (in this or an earlier slice) is dropped."""
    (key,) = schema.key_columns
    earlier: list[pa.Table] = []  # the rows kept so far, slice by slice
    seen = _SeenKeys()
    rows_read = 0
    for piece in pieces:
        rows_read += piece.num_rows
        result.rows_in = rows_read + len(malformed)  # ragged rows are counted as the reader meets them
        result.dropped["malformed_row"] = len(malformed)
        cleaned = _clean_rows(piece, schema, decimal_comma, result)
        duplicates = _duplicate_mask(cleaned, schema)  # within the slice: the first of equal rows stays
        if earlier:  # rows whose key was seen before are compared in full with those earlier rows
            again = seen.seen_before(cleaned[key].combine_chunks()) & ~duplicates
            if again.any():
                duplicates |= _equal_to_earlier(cleaned, again, earlier, key)
        result.dropped["duplicate"] += int(duplicates.sum())
        kept = (cleaned.filter(pa.array(~duplicates)) if duplicates.any() else cleaned).combine_chunks()
        earlier.append(kept)
        seen.add(kept[key].combine_chunks())
        result.rows_out += kept.num_rows
        yield kept
    result.rows_in = rows_read + len(malformed)  # ragged rows at the very end have no slice of their own
    result.dropped["malformed_row"] = len(malformed)


class _SeenKeys:
    """The keys of the rows kept so far, to ask which keys of a new slice were seen before. Integer keys
    (ids, the usual case) are kept sorted and searched; other keys are hashed from the new slice's side."""

    def __init__(self) -> None:
        self.ordered: np.ndarray | None = np.zeros(0, dtype=np.int64)  # None once a key is not an integer
        self.arrays: list[pa.Array] = []

    def add(self, keys: pa.Array) -> None:
        self.arrays.append(keys)
        if self.ordered is not None and pa.types.is_integer(keys.type) and keys.null_count == 0:
            self.ordered = np.sort(np.concatenate([self.ordered, keys.to_numpy()]), kind="stable")
        else:
            self.ordered = None

    def seen_before(self, keys: pa.Array) -> np.ndarray:
        """True for each of `keys` (nulls equal nulls) that was added before."""
        if self.ordered is not None and pa.types.is_integer(keys.type) and keys.null_count == 0:
            values = keys.to_numpy()
            at = np.minimum(np.searchsorted(self.ordered, values), max(len(self.ordered) - 1, 0))
            return self.ordered[at] == values if len(self.ordered) else np.zeros(len(values), dtype=bool)
        earlier = pa.concat_arrays(self.arrays)
        # hash the new slice (the smaller side), then only the earlier keys it holds
        shared = earlier.filter(pc.is_in(earlier, value_set=keys, skip_nulls=False))
        return pc.is_in(keys, value_set=shared, skip_nulls=False).to_numpy(zero_copy_only=False)


def _equal_to_earlier(cleaned: pa.Table, again: np.ndarray, earlier: list[pa.Table], key: str) -> np.ndarray:
    """True for the rows flagged in `again` that equal, in every column, a row of an earlier slice."""
    rows = pa.array(np.flatnonzero(again))
    candidates = cleaned.take(rows)
    keys = candidates[key].combine_chunks()
    before = pa.concat_tables([t.filter(pc.is_in(t[key], value_set=keys, skip_nulls=False)) for t in earlier])
    numbered = candidates.append_column("__row", pa.array(np.arange(len(rows), dtype=np.int64)))
    numbered_before = before.select(cleaned.column_names).append_column(
        "__row", pa.array(np.full(before.num_rows, -1, dtype=np.int64)))
    groups = pa.concat_tables([numbered, numbered_before]).group_by(
        cleaned.column_names, use_threads=False).aggregate([("__row", "min"), ("__row", "list")])
    equal = pc.list_flatten(groups.filter(pc.less(groups["__row_min"], 0))["__row_list"]).to_numpy()
    mask = np.zeros(cleaned.num_rows, dtype=bool)
    mask[rows.to_numpy()[equal[equal >= 0]]] = True
    return mask
