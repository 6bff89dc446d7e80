"""Messy daily CSV files for the ingestion pipeline, deterministic per date.

`GET /csv/daily_cases/{date}.csv` answers the case reports of one day (`date` is `YYYY-MM-DD`)
with the mess real feeds have: a UTF-8 BOM, CRLF line ends, a header with stray spaces, dates in
several formats in one file, nulls in required columns, unparseable dates and numbers, exact
duplicate rows (some differently formatted), quoted newlines and commas, padded values.
The same date always gives the same bytes (the generator is seeded by the date).

- `rows=N` asks for N rows (default: about 200, varying by day); at most `MAX_ROWS`.
- Dates before `FEED_FIRST_DAY` or after today (UTC) answer 404, as a real feed would.

`GET /csv/jh_daily/{MM-DD-YYYY}.csv` is a second shape, like the Johns Hopkins daily reports: the
date in the file name as `MM-DD-YYYY`, one row per province and country, and a schema that changes
on `JH_NEW_SCHEMA_DAY`: `Province/State,Country/Region,Last Update` with `M/D/YY H:MM` (unpadded
hours) before it; `FIPS,Province_State,Country_Region,Last_Update,Lat,Long_,...` with ISO times
(with and without `Z`) from it on.

`GET /csv/private/daily_cases/{date}.csv` is the daily cases feed behind `Authorization: Bearer
demo-feed-token` (401 without it), for datasets that declare an auth header.
"""

from __future__ import annotations

import datetime as dt
import random

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

FEED_FIRST_DAY = dt.date(2025, 1, 1)
MAX_ROWS = 2_000_000
HEADER = ("report_id", " region", "reported_at ", "confirmed_cases", "deaths", "notes")
REGIONS = ("north", "south", "east", "west", "central", "islands")
NOTES = ("", "", "", "routine", "late report, corrected", "first line\nsecond line", "clinic said \"ok\"")


def _reported_at(rng: random.Random, day: dt.date) -> str:
    """The report time in one of the formats real feeds mix (all meaning a UTC instant)."""
    moment = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60), tzinfo=dt.UTC)
    style = rng.randrange(6)
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:  # the same instant written in UTC+02:00
        return (moment + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    if style == 2:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == 3:
        return moment.strftime("%m/%d/%Y %H:%M")
    if style == 4:
        return moment.strftime("%d.%m.%Y %H:%M")
    return str(int(moment.timestamp()))


def _quote(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def daily_cases_rows(day: dt.date, rows: int | None = None) -> list[list[str]]:
    """The day's rows as strings, mess included (deterministic for `day` and `rows`)."""
    rng = random.Random(f"daily_cases/{day.isoformat()}/{rows}")
    count = rows if rows is not None else 150 + rng.randrange(100)
    base_id = int(day.strftime("%Y%m%d")) * 10_000_000
    out: list[list[str]] = []
    while len(out) < count:
        i = len(out)
        roll = rng.random()
        if out and roll < 0.03:  # an exact duplicate of an earlier row
            out.append(list(out[rng.randrange(len(out))]))
            continue
        region = rng.choice(REGIONS)
        row = [
            str(base_id + i),
            region if rng.random() < 0.8 else f"  {region} ",
            _reported_at(rng, day),
            str(rng.randrange(0, 500)) if rng.random() < 0.9 else f" {rng.randrange(0, 500)}",
            str(rng.randrange(0, 20)) if rng.random() < 0.95 else "",
            rng.choice(NOTES),
        ]
        if roll < 0.05:
            row[rng.choice((0, 1, 2, 3))] = rng.choice(("", "NA", "null", "  "))
        elif roll < 0.06:
            row[2] = rng.choice(("yesterday", "2026-13-45", "31/31/2026 25:00"))
        elif roll < 0.07:
            row[3] = rng.choice(("twelve", "1,5", "n/a?"))
        out.append(row)
    return out


def daily_cases_csv(day: dt.date, rows: int | None = None) -> bytes:
    """The day's CSV file as the feed serves it: BOM, CRLF, quoted fields where needed."""
    lines = [",".join(HEADER)]
    lines.extend(",".join(_quote(v) for v in row) for row in daily_cases_rows(day, rows))
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


async def daily_cases(request: Request) -> Response:
    raw_date = request.path_params["date"]
    try:
        day = dt.date.fromisoformat(raw_date)
    except ValueError:
        return PlainTextResponse(f"no daily file for {raw_date!r}: use a date like 2026-01-31", 404)
    today = dt.datetime.now(dt.UTC).date()
    if day < FEED_FIRST_DAY or day > today:
        return PlainTextResponse(
            f"no daily file for {day}: the feed covers {FEED_FIRST_DAY} to {today} (UTC)", 404
        )
    rows_param = request.query_params.get("rows")
    rows = None
    if rows_param is not None:
        if not rows_param.isdigit() or not 0 < int(rows_param) <= MAX_ROWS:
            return PlainTextResponse(f"rows={rows_param!r}: use a whole number from 1 to {MAX_ROWS}", 400)
        rows = int(rows_param)
    return Response(daily_cases_csv(day, rows), media_type="text/csv; charset=utf-8")


JH_NEW_SCHEMA_DAY = dt.date(2026, 3, 1)
JH_PLACES = (("", "Andorra"), ("Ontario", "Canada"), ("Quebec", "Canada"), ("", "Chile"), ("Hubei", "China"),
             ("", "Iceland"), ("Bavaria", "Germany"), ("", "Kenya"), ("New York", "US"), ("Texas", "US"))


def jh_daily_csv(day: dt.date) -> bytes:
    """One day of the Johns-Hopkins-like report (deterministic); the header depends on the day."""
    rng = random.Random(f"jh_daily/{day.isoformat()}")
    old = day < JH_NEW_SCHEMA_DAY
    if old:
        lines = ["Province/State,Country/Region,Last Update,Confirmed,Deaths,Recovered"]
    else:
        lines = ["FIPS,Province_State,Country_Region,Last_Update,Lat,Long_,Confirmed,Deaths,Recovered,Active"]
    for index, (province, country) in enumerate(JH_PLACES):
        moment = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60))
        confirmed = 100 * (index + 1) + (day - FEED_FIRST_DAY).days
        deaths, recovered = confirmed // 50, confirmed // 3
        name = _quote(province) if province else ""
        if old:  # M/D/YY H:MM, unpadded month, day and hour
            stamp = f"{moment.month}/{moment.day}/{moment:%y} {moment.hour}:{moment:%M}"
            lines.append(f"{name},{country},{stamp},{confirmed},{deaths},{recovered}")
        else:
            stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ" if index % 2 else "%Y-%m-%d %H:%M:%S")
            lat, lon = f"{rng.uniform(-60, 60):.4f}", f"{rng.uniform(-150, 150):.4f}"
            lines.append(f"{1000 + index},{name},{country},{stamp},{lat},{lon},{confirmed},{deaths},{recovered},"
                         f"{confirmed - deaths - recovered}")
    return ("\n".join(lines) + "\n").encode("utf-8")


async def jh_daily(request: Request) -> Response:
    raw_date = request.path_params["date"]
    try:
        day = dt.datetime.strptime(raw_date, "%m-%d-%Y").date()
    except ValueError:
        return PlainTextResponse(f"no daily report for {raw_date!r}: use a date like 01-31-2026 (MM-DD-YYYY)", 404)
    today = dt.datetime.now(dt.UTC).date()
    if day < FEED_FIRST_DAY or day > today:
        return PlainTextResponse(f"no daily report for {raw_date}: the feed covers {FEED_FIRST_DAY} to {today}", 404)
    return Response(jh_daily_csv(day), media_type="text/csv; charset=utf-8")


PRIVATE_TOKEN = "Bearer demo-feed-token"  # the demo's private copy of daily_cases wants this Authorization


async def private_daily_cases(request: Request) -> Response:
    """`/csv/private/daily_cases/{date}.csv`: the demo feed behind an `Authorization` header (401 without)."""
    if request.headers.get("authorization") != PRIVATE_TOKEN:
        return PlainTextResponse("missing or wrong Authorization header", 401)
    return await daily_cases(request)


def routes() -> list[Route]:
    return [Route("/csv/daily_cases/{date}.csv", daily_cases), Route("/csv/jh_daily/{date}.csv", jh_daily),
            Route("/csv/private/daily_cases/{date}.csv", private_daily_cases)]
