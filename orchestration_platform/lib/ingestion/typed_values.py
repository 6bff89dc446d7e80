"""Text columns (Arrow) to typed columns, vectorised: integers, floats, exact numerics, booleans,
dates and timestamps. Anything that does not parse becomes null; the caller counts it.

Timestamps: every value becomes a UTC instant. Values with an offset (`Z`, `+02:00`) keep their
instant; naive values are read in the column's timezone. `auto` accepts ISO-8601 (with or without
`T`, seconds, fraction, `Z`/offset), `M/D/YYYY H:MM` and `M/D/YY H:MM` (unpadded too, AM/PM),
`D.M.YYYY H:MM`, `M-D-YYYY` and epoch seconds; `day_first` reads `03/01` as 3 January.
A day that does not exist (02/30) is rejected, never rolled over into March.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration_platform.lib.ingestion.schema import DateRules

EPOCH_SECONDS = r"^\d{9,11}$"
WHOLE_NUMBER = r"^[+-]?\d{1,18}$"
DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)$"
FLOAT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
TRUE_TOKENS = pa.array(["true", "t", "yes", "y", "1", "on"])
FALSE_TOKENS = pa.array(["false", "f", "no", "n", "0", "off"])
TIME = r"(?:[ T]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d+)?)?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
ZONE = r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
# (regex, order of the first two numbers: "ymd" ISO, "md"/"dm" slashes or dashes, "dm" dots)
AUTO_PATTERNS = (
    (r"^(?P<y>\d{4})-(?P<a>\d{1,2})-(?P<b>\d{1,2})" + TIME + ZONE, "ymd"),
    (r"^(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})" + TIME + ZONE, "auto"),
    (r"^(?P<a>\d{1,2})-(?P<b>\d{1,2})-(?P<y>\d{4})" + TIME + ZONE, "auto"),
    (r"^(?P<a>\d{1,2})\.(?P<b>\d{1,2})\.(?P<y>\d{4}|\d{2})" + TIME + ZONE, "dm"),
)
# Fast path for the padded formats most files use, told apart by one byte: (position, byte, formats)
# with (format, where the day of month is written, naive format of the leading part if aware)
FAMILIES_MONTH_FIRST = (
    (4, "-", (("%Y-%m-%dT%H:%M:%S%z", (8, 10), "%Y-%m-%dT%H:%M:%S"), ("%Y-%m-%d %H:%M:%S", (8, 10), None),
              ("%Y-%m-%dT%H:%M:%S", (8, 10), None), ("%Y-%m-%d", (8, 10), None))),
    (2, "/", (("%m/%d/%Y %H:%M", (3, 5), None), ("%m/%d/%Y", (3, 5), None))),
    (2, ".", (("%d.%m.%Y %H:%M", (0, 2), None), ("%d.%m.%Y", (0, 2), None))),
)
FAMILIES_DAY_FIRST = (
    FAMILIES_MONTH_FIRST[0],
    (2, "/", (("%d/%m/%Y %H:%M", (0, 2), None), ("%d/%m/%Y", (0, 2), None))),
    FAMILIES_MONTH_FIRST[2],
)


def _null_text() -> pa.Scalar:
    return pa.scalar(None, pa.string())


def _strip_thousands(text: pa.Array, decimal_comma: bool) -> pa.Array:
    """`1,234,567.5` -> `1234567.5` (or `1.234.567,5` -> `1234567.5` with a decimal comma)."""
    if decimal_comma:
        grouped = pc.match_substring_regex(text, r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")
        text = pc.if_else(grouped, pc.replace_substring(text, ".", ""), text)
        return pc.replace_substring(text, ",", ".")
    grouped = pc.match_substring_regex(text, r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
    return pc.if_else(grouped, pc.replace_substring(text, ",", ""), text)


def parse_integer(text: pa.ChunkedArray, decimal_comma: bool = False) -> pa.ChunkedArray:
    """Whole numbers (optional sign, thousands separators) as int64; anything else becomes null."""
    plain = pc.and_(pc.utf8_is_digit(text), pc.less_equal(pc.utf8_length(text), 18))
    odd = pc.invert(pc.fill_null(plain, True))
    if not pc.any(odd).as_py():  # the usual case: no regex needed
        return pc.cast(text, pa.int64())
    # only the few other values (signs, thousands separators, words) go through the regexes
    if isinstance(text, pa.ChunkedArray):
        text, odd, plain = text.combine_chunks(), odd.combine_chunks(), plain.combine_chunks()
    others = _strip_thousands(text.filter(odd), decimal_comma)
    whole = pc.match_substring_regex(others, WHOLE_NUMBER)
    others = pc.cast(pc.if_else(whole, pc.utf8_ltrim(others, "+"), _null_text()), pa.int64())  # Arrow refuses `+5`
    return pc.replace_with_mask(pc.cast(pc.if_else(plain, text, _null_text()), pa.int64()), odd, others)


def parse_decimal_text(text: pa.ChunkedArray, decimal_comma: bool = False, pattern: str = DECIMAL) -> pa.Array:
    """Numbers in plain notation (`-1234.50`), separators removed; null where it is not a number."""
    text = _strip_thousands(text, decimal_comma)
    return pc.if_else(pc.match_substring_regex(text, pattern), pc.utf8_ltrim(text, "+"), _null_text())


def parse_float(text: pa.ChunkedArray, decimal_comma: bool = False) -> pa.Array:
    return pc.cast(parse_decimal_text(text, decimal_comma, FLOAT), pa.float64())


def parse_boolean(text: pa.ChunkedArray) -> pa.Array:
    lowered = pc.utf8_lower(text)
    is_true, is_false = pc.is_in(lowered, value_set=TRUE_TOKENS), pc.is_in(lowered, value_set=FALSE_TOKENS)
    return pc.if_else(is_true, True, pc.if_else(is_false, pa.scalar(False), pa.scalar(None, pa.bool_())))


def _byte_at(text: pa.StringArray, position: int) -> np.ndarray:
    """Each value's byte at `position` (0 where the value is shorter or null), read from the Arrow buffers."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    if data is None or len(data) == 0:
        return np.zeros(len(text), dtype=np.uint8)
    data = np.frombuffer(data, dtype=np.uint8)
    starts = offsets[:-1] + position
    return np.where(offsets[1:] > starts, data[np.minimum(starts, len(data) - 1)], 0).astype(np.uint8)


class _Parsed:
    """Seconds since the epoch per row: UTC for aware rows, wall-clock for naive ones."""

    def __init__(self, rows: int) -> None:
        self.seconds = np.zeros(rows, dtype=np.int64)
        self.ok = np.zeros(rows, dtype=bool)
        self.aware = np.zeros(rows, dtype=bool)

    def set(self, rows: np.ndarray, seconds: np.ndarray, aware: bool | np.ndarray) -> None:
        self.seconds[rows], self.ok[rows], self.aware[rows] = seconds, True, aware


def _families(text: pa.StringArray, parsed: _Parsed, day_first: bool) -> np.ndarray:
    """The padded formats, each value tried with its family's formats only. Returns the unclaimed rows."""
    unclaimed = pc.is_valid(text).to_numpy(zero_copy_only=False) & ~parsed.ok
    for position, marker, formats in FAMILIES_DAY_FIRST if day_first else FAMILIES_MONTH_FIRST:
        member = unclaimed & (_byte_at(text, position) == ord(marker))
        unclaimed &= ~member
        todo = pa.array(np.flatnonzero(member))
        values = text.take(todo)
        for fmt, (day_start, day_stop), local_fmt in formats:
            if len(todo) == 0:
                break
            got = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
            hit = pc.is_valid(got)
            hit_values, hit_parsed = values.filter(hit), got.filter(hit)
            local = hit_parsed if local_fmt is None else pc.strptime(
                pc.utf8_slice_codeunits(hit_values, 0, 19), format=local_fmt, unit="s")
            written_day = pc.utf8_slice_codeunits(hit_values, day_start, day_stop)
            exists = pc.and_(pc.equal(written_day, pc.utf8_lpad(pc.cast(pc.day(local), pa.string()), 2, "0")),
                             pc.greater_equal(pc.year(local), 1000))  # `%Y` also takes `26`: not a year here
            good_rows = todo.filter(hit).filter(exists).to_numpy()
            seconds = pc.cast(pc.cast(hit_parsed.filter(exists), pa.timestamp("s")), pa.int64()).to_numpy()
            parsed.set(good_rows, seconds, local_fmt is not None)
            todo, values = todo.filter(pc.invert(hit)), values.filter(pc.invert(hit))
    return unclaimed


# Fixed-width layouts read straight from the Arrow bytes: (length, {position: separator byte}, field slices
# as (start, stop) for year, month, day, hour, minute, second; offset sign position or None; aware)
_ISO = {4: "-", 7: "-"}
_TIME = {13: ":", 16: ":"}
FIXED_LAYOUTS = (
    (20, {**_ISO, 10: "T", **_TIME, 19: "Z"}, ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)), None, True),
    (25, {**_ISO, 10: "T", **_TIME, 22: ":"}, ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)), 19, True),
    (19, {**_ISO, 10: " ", **_TIME}, ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)), None, False),
    (19, {**_ISO, 10: "T", **_TIME}, ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)), None, False),
    (10, _ISO, ((0, 4), (5, 7), (8, 10), None, None, None), None, False),
    (16, {2: "/", 5: "/", 10: " ", 13: ":"}, ((6, 10), (0, 2), (3, 5), (11, 13), (14, 16), None), None, False),
    (10, {2: "/", 5: "/"}, ((6, 10), (0, 2), (3, 5), None, None, None), None, False),
    (16, {2: ".", 5: ".", 10: " ", 13: ":"}, ((6, 10), (3, 5), (0, 2), (11, 13), (14, 16), None), None, False),
    (10, {2: ".", 5: "."}, ((6, 10), (3, 5), (0, 2), None, None, None), None, False),
)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of valid calendar dates (H. Hinnant's algorithm), vectorised."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    yoe = year - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _fixed_width(text: pa.StringArray, parsed: _Parsed, day_first: bool) -> None:
    """Parse the padded ISO, `MM/DD/YYYY HH:MM`, `DD.MM.YYYY HH:MM` and epoch values from the raw bytes."""
    if len(text) == 0 or text.buffers()[2] is None:
        return
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    valid = pc.is_valid(text).to_numpy(zero_copy_only=False)
    for length in dict.fromkeys(layout[0] for layout in FIXED_LAYOUTS):
        rows = np.flatnonzero(valid & (lengths == length) & ~parsed.ok)
        if len(rows) == 0:
            continue
        grid = data[starts[rows, None] + np.arange(length)]  # the values of this length, one row of bytes each
        todo = np.ones(len(rows), dtype=bool)
        for _, separators, fields, sign_at, aware in (layout for layout in FIXED_LAYOUTS if layout[0] == length):
            ok = todo.copy()
            for position, byte in separators.items():
                ok &= grid[:, position] == ord(byte)
            if not ok.any():
                continue

            def number(span, grid=grid, count=len(rows)):
                nonlocal ok
                if span is None:
                    return np.zeros(count, dtype=np.int64)
                value = np.zeros(count, dtype=np.int64)
                for i in range(*span):
                    digit = grid[:, i].astype(np.int64) - ord("0")
                    ok &= (digit >= 0) & (digit <= 9)
                    value = value * 10 + digit
                return value

            year, month, day, hour, minute, second = (number(f) for f in fields)
            if separators.get(2) == "/" and day_first:
                month, day = day, month
            offset = np.zeros(len(rows), dtype=np.int64)
            if sign_at is not None:
                sign = np.where(grid[:, sign_at] == ord("+"), 1, np.where(grid[:, sign_at] == ord("-"), -1, 0))
                ok &= sign != 0
                offset = sign * (number((sign_at + 1, sign_at + 3)) * 3600 + number((sign_at + 4, sign_at + 6)) * 60)
            month_ok = (month >= 1) & (month <= 12)
            safe_month = np.where(month_ok, month, 1)
            leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
            last_day = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[safe_month - 1] + (
                leap & (safe_month == 2))
            ok &= month_ok & (day >= 1) & (day <= last_day) & (hour < 24) & (minute < 60) & (second < 60)
            ok &= year >= 1000
            seconds = _days_from_civil(year, safe_month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
            parsed.set(rows[ok], seconds[ok], aware)
            todo &= ~ok
    # epoch seconds: 9 to 11 digits
    rows = np.flatnonzero(valid & (lengths >= 9) & (lengths <= 11) & ~parsed.ok)
    if len(rows):
        values = text.take(pa.array(rows))
        epoch = pc.utf8_is_digit(values).to_numpy(zero_copy_only=False)
        parsed.set(rows[epoch], pc.cast(values.filter(pa.array(epoch)), pa.int64()).to_numpy(), True)


def _ints(struct: pa.StructArray, name: str, default: int = 0) -> np.ndarray:
    values = struct.field(name)
    values = pc.if_else(pc.equal(values, ""), pa.scalar(str(default)), values)
    return pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)


def _by_components(values: pa.StringArray, pattern: str, order: str, rules: DateRules
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `values` matching `pattern`: (matched mask, valid mask, seconds, aware mask)."""
    matched = pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(matched)
    if len(rows) == 0:
        return matched, np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, bool)
    parts = pc.extract_regex(values.take(pa.array(rows)), pattern)
    year, a, b = _ints(parts, "y"), _ints(parts, "a"), _ints(parts, "b")
    if order == "auto":
        order = "dm" if rules.day_first else "md"
    month, day = (a, b) if order in ("ymd", "md") else (b, a)
    year = np.where(year < 100, np.where(year < rules.year_pivot, 2000 + year, 1900 + year), year)
    hour, minute, second = _ints(parts, "H"), _ints(parts, "M"), _ints(parts, "S")
    ampm = pc.utf8_lower(pc.utf8_slice_codeunits(parts.field("ampm"), 0, 1)).to_numpy(zero_copy_only=False)
    pm, am = ampm == "p", ampm == "a"
    valid = (month >= 1) & (month <= 12) & (day >= 1) & (hour < 24) & (minute < 60) & (second < 60)
    valid &= ~((pm | am) & ((hour < 1) | (hour > 12)))
    hour = np.where(pm & (hour < 12), hour + 12, np.where(am & (hour == 12), 0, hour))
    months = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    last_day = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    valid &= day <= last_day
    days = months.astype("datetime64[D]").astype(np.int64) + day - 1
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    zone = parts.field("tz").to_numpy(zero_copy_only=False)
    aware = zone != ""
    offsets = np.zeros(len(rows), dtype=np.int64)
    for i in np.flatnonzero(aware & (zone != "Z")):
        digits = zone[i].replace(":", "")
        offsets[i] = (1 if digits[0] == "+" else -1) * (int(digits[1:3]) * 3600 + int(digits[3:5]) * 60)
    return matched, valid, seconds - offsets, aware


def _explicit(text: pa.StringArray, parsed: _Parsed, formats: tuple[str, ...]) -> None:
    """Each value tried with the declared strftime formats in order; days that do not exist are rejected."""
    todo = pa.array(np.flatnonzero(pc.is_valid(text).to_numpy(zero_copy_only=False)))
    values = text.take(todo)
    for fmt in formats:
        if len(todo) == 0:
            break
        got = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        hit = pc.is_valid(got)
        hit_values, hit_parsed = values.filter(hit), got.filter(hit)
        naive = pc.cast(hit_parsed, pa.timestamp("s")) if "%z" in fmt else hit_parsed
        again = pc.strftime(naive, format=fmt.replace("%z", ""), locale="C") if "%z" not in fmt else None
        same = pc.greater_equal(pc.year(naive), 1000) if "%Y" in fmt else pc.is_valid(naive)
        if again is not None:  # written == re-formatted, ignoring zero padding: 02/30 became 03/02 otherwise
            unpad = r"(^|[^0-9])0+([0-9])"
            same = pc.and_(same, pc.equal(pc.replace_substring_regex(hit_values, unpad, r"\1\2"),
                                          pc.replace_substring_regex(again, unpad, r"\1\2")))
        good = todo.filter(hit).filter(same).to_numpy()
        seconds = pc.cast(pc.cast(hit_parsed.filter(same), pa.timestamp("s")), pa.int64()).to_numpy()
        parsed.set(good, seconds, "%z" in fmt)
        todo, values = todo.filter(pc.invert(hit)), values.filter(pc.invert(hit))


def _parse(text: pa.ChunkedArray, rules: DateRules) -> tuple[_Parsed, pa.StringArray]:
    if isinstance(text, pa.ChunkedArray):  # one contiguous array: cheaper takes and filters below
        text = text.combine_chunks() if text.num_chunks else pa.array([], pa.string())
    parsed = _Parsed(len(text))
    if rules.formats:
        _explicit(text, parsed, rules.formats)
        return parsed, text
    _fixed_width(text, parsed, rules.day_first)
    if not parsed.ok.all():  # what the fixed layouts did not take: the strptime families, then the patterns
        _families(text, parsed, rules.day_first)
    rest = np.flatnonzero(pc.is_valid(text).to_numpy(zero_copy_only=False) & ~parsed.ok)
    for pattern, order in AUTO_PATTERNS:
        if len(rest) == 0:
            break
        values = text.take(pa.array(rest))
        matched, valid, seconds, aware = _by_components(values, pattern, order, rules)
        hit_rows = rest[matched]
        parsed.set(hit_rows[valid], seconds[valid], aware[valid])
        rest = rest[~matched]
    if len(rest):
        values = text.take(pa.array(rest))
        epoch = pc.match_substring_regex(values, EPOCH_SECONDS).to_numpy(zero_copy_only=False)
        parsed.set(rest[epoch], pc.cast(values.filter(pa.array(epoch)), pa.int64()).to_numpy(), True)
    return parsed, text


def parse_timestamp(text: pa.ChunkedArray, rules: DateRules = DateRules()) -> pa.Array:
    """UTC instants (`timestamp[s, UTC]`); null where the value is not a date/time the rules accept."""
    parsed, _ = _parse(text, rules)
    if rules.timezone not in ("UTC", "Etc/UTC") and (naive := parsed.ok & ~parsed.aware).any():
        rows = np.flatnonzero(naive)
        local = pa.array(parsed.seconds[rows], pa.timestamp("s"))
        utc = pc.assume_timezone(local, rules.timezone, ambiguous="earliest", nonexistent="earliest")
        parsed.seconds[rows] = pc.cast(pc.cast(utc, pa.timestamp("s")), pa.int64()).to_numpy()
    return pa.array(parsed.seconds, pa.timestamp("s", tz="UTC"), mask=~parsed.ok)


def parse_date(text: pa.ChunkedArray, rules: DateRules = DateRules()) -> pa.Array:
    """Calendar dates as written (a time part, if any, is ignored; offsets do not move the day)."""
    parsed, text = _parse(text, DateRules(rules.formats, rules.day_first, rules.year_pivot, "UTC"))
    aware = np.flatnonzero(parsed.aware & parsed.ok)
    if len(aware):  # the written day, not the UTC one: re-read without the offset
        naive, _ = _parse(pc.utf8_slice_codeunits(text.take(pa.array(aware)), 0, 10),
                          DateRules(None, rules.day_first, rules.year_pivot))
        parsed.seconds[aware] = naive.seconds
        parsed.ok[aware] = naive.ok
    return pa.array(parsed.seconds // 86400, pa.int64(), mask=~parsed.ok).cast(pa.int32()).cast(pa.date32())
