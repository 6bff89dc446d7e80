"""How a CSV file is laid out: its text encoding, delimiter, header line, and which of its columns
are the declared ones (matched by name or alias, ignoring case, spaces, `_` and `/`).

Everything `auto` is sniffed from the file; when sniffing cannot decide, the error says which
dialect field to set. Undeclared columns are reported (schema drift), never an error.
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class CsvFormatError(ValueError):
    """The file cannot be read as the expected CSV; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Dialect:
    """How the file is written; None means `auto` (sniffed)."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str | None = None
    header_row: int = 1  # the line with the column names (lines above it are skipped)
    skip_rows: int = 0  # lines right after the header that are not data (units, notes)
    decimal_comma: bool | None = None  # auto: yes when the delimiter is `;`


@dataclass(frozen=True)
class Layout:
    """What was found in the file."""

    data: bytes  # the file as UTF-8 (the input itself, not copied, when it was UTF-8)
    start: int  # where the header line starts in `data`
    encoding: str
    delimiter: str
    decimal_comma: bool
    header: list[str]  # as written, trimmed
    matched: dict[str, int]  # declared column -> position in the file
    extra: list[str]  # columns in the file that no declared column claims


def match_key(name: str) -> str:
    """`" Region_Name "`, `"region name"` and `"Region/Name"` all become `regionname`."""
    return re.sub(r"[\s_/]+", "", name.strip().strip("\ufeff").lower())


def utf8_error(raw: bytes, source: str) -> CsvFormatError | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return CsvFormatError(
            f"{source}: not UTF-8 text (byte 0x{raw[error.start]:02x} at line {line}, offset {error.start}); "
            "re-save the file as UTF-8, or set the dataset's dialect.encoding (e.g. latin-1, cp1252)"
        )
    return None


def decode_to_utf8(raw: bytes, encoding: str | None, source: str) -> tuple[bytes, int, str]:
    """The file as UTF-8 bytes, where its text starts (after a BOM) and the encoding it was read with.
    UTF-8 input is not copied."""
    if not raw[:4096].strip() and not raw.strip():  # only a blank start costs a scan of the whole file
        raise CsvFormatError(f"{source}: the file is empty ({len(raw)} bytes); expected a CSV with a header row")
    if b"\x00" in raw[:65536]:
        raise CsvFormatError(f"{source}: binary content (NUL bytes), not a CSV text file")
    wanted = (encoding or "auto").lower().replace("_", "-")
    if wanted in ("auto", "utf-8", "utf8", "utf-8-sig"):
        if raw.startswith(BOM):
            return raw, len(BOM), "utf-8-sig"
        if wanted != "auto":
            return raw, 0, "utf-8"
        try:  # auto: UTF-8 if it is valid UTF-8, else Windows-1252 (a superset of latin-1's printable range)
            if not raw.isascii():  # ASCII (most files) is UTF-8: a scan, no decoding
                raw.decode("utf-8")
            return raw, 0, "utf-8"
        except UnicodeDecodeError:
            wanted = "cp1252"
    try:
        return raw.decode(wanted).encode("utf-8"), 0, wanted
    except LookupError:
        raise CsvFormatError(f"{source}: encoding {encoding!r} is unknown; use e.g. utf-8, latin-1, cp1252") from None
    except UnicodeDecodeError as error:
        if encoding is None:
            return raw.decode("latin-1").encode("utf-8"), 0, "latin-1"
        raise CsvFormatError(f"{source}: not {encoding} text ({error.reason} at offset {error.start}); "
                             "set the dataset's dialect.encoding to the file's encoding") from None


def _line_start(text: bytes, start: int, count: int) -> int:
    """Offset of the line `count` lines after the one at `start`."""
    for _ in range(count):
        end = text.find(b"\n", start)
        if end < 0:
            return len(text)
        start = end + 1
    return start


def _sniff_delimiter(first_line: str, declared: int, source: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        if declared <= 1:
            return ","
        raise CsvFormatError(
            f"{source}: cannot tell the delimiter from the header {first_line[:80]!r} (no , ; tab or |); "
            "set the dataset's dialect.delimiter"
        )
    return best


def find_layout(raw: bytes, dialect: Dialect, columns: list[tuple[str, tuple[str, ...], bool]],
                dataset: str, source: str) -> Layout:
    """Encoding, delimiter and header of `raw`; `columns` are (name, aliases, required) as declared."""
    text, start, encoding = decode_to_utf8(raw, dialect.encoding, source)
    start = _line_start(text, start, dialect.header_row - 1)
    end = text.find(b"\n", start)
    try:
        first_line = text[start:end if end >= 0 else len(text)].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise utf8_error(text, source) from None
    if not first_line.strip():
        raise CsvFormatError(f"{source}: line {dialect.header_row} (the header row) is empty; "
                             "set the dataset's dialect.header_row to the line with the column names")
    lead = first_line.lstrip()[:1]
    if lead in ("<", "{", "["):
        kind = "HTML/XML" if lead == "<" else "JSON"
        raise CsvFormatError(f"{source}: looks like {kind}, not CSV (starts with {first_line[:40]!r})")
    delimiter = dialect.delimiter or _sniff_delimiter(first_line, len(columns), source)
    header = [h.strip().strip("\ufeff") for h in next(csv.reader([first_line], delimiter=delimiter,
                                                                  quotechar=dialect.quote))]
    keys = [match_key(h) for h in header]
    matched: dict[str, int] = {}
    for name, aliases, _ in columns:
        wanted = {match_key(n) for n in (name, *aliases)}
        found = [i for i, k in enumerate(keys) if k in wanted]
        if len(found) > 1:
            raise CsvFormatError(
                f"{source}: columns {', '.join(repr(header[i]) for i in found)} all match column {name!r} of "
                f"dataset {dataset!r}; remove the extra spelling from the `aliases` of {name!r}")
        if found:
            matched[name] = found[0]
    claimed = set(matched.values())
    extra = [h for i, h in enumerate(header) if i not in claimed and h]
    missing = [name for name, _, required in columns if required and name not in matched]
    if missing:
        _raise_missing(first_line, header, extra, missing, delimiter, dialect, dataset, source)
    decimal_comma = dialect.decimal_comma if dialect.decimal_comma is not None else delimiter == ";"
    return Layout(text, start, encoding, delimiter, decimal_comma, header, matched, extra)


def _raise_missing(first_line: str, header: list[str], extra: list[str], missing: list[str], delimiter: str,
                   dialect: Dialect, dataset: str, source: str) -> None:
    if len(header) == 1 and dialect.delimiter is not None:
        for other, label in DELIMITERS.items():
            if other != delimiter and other in first_line:
                raise CsvFormatError(
                    f"{source}: the header {first_line[:80]!r} is {label}-delimited; dataset {dataset!r} "
                    f"reads {DELIMITERS[delimiter]}-separated files: re-export it with {delimiter!r} as the "
                    "delimiter or set dialect.delimiter to auto"
                )
    fixes = []
    for name in missing:
        close = difflib.get_close_matches(match_key(name), [match_key(e) for e in extra], n=1, cutoff=0.3)
        guess = next((e for e in extra if close and match_key(e) == close[0]), extra[0] if extra else None)
        fixes.append(f"add `{guess}` to the `aliases` of `{name}`" if guess
                     else f"the file has no column that could be `{name}`")
    raise CsvFormatError(
        f"{source}: dataset {dataset!r} is missing required column(s) {', '.join(missing)}; the header found is "
        f"{', '.join(header) or '(none)'}; fix: {'; '.join(fixes)} (in the dataset's YAML)"
    )
