"""The demo CSV feed over real HTTP: deterministic, messy on purpose, 404 outside its days."""

from __future__ import annotations

import datetime as dt

import httpx

from orchestration_platform.devstack.sources.csv_feed import FEED_FIRST_DAY


def test_a_day_is_the_same_bytes_every_time_and_differs_from_other_days(sources_url: str) -> None:
    first = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-01.csv")
    again = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-01.csv")
    other = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-02.csv")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/csv")
    assert first.content == again.content != other.content


def test_the_file_carries_the_mess_the_cleaner_must_handle(sources_url: str) -> None:
    body = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-01.csv").content
    assert body.startswith(b"\xef\xbb\xbf") and b"\r\n" in body
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0] == "report_id, region,reported_at ,confirmed_cases,deaths,notes"
    assert '"first line\nsecond line"' in text  # a quoted newline
    for date_style in ("T", "+02:00", "/2026 ", ".2026 "):
        assert date_style in text


def test_rows_parameter_sizes_the_file(sources_url: str) -> None:
    body = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-01.csv", params={"rows": 5000}).content
    assert body.count(b"\r\n") >= 5001
    bad = httpx.get(f"{sources_url}/csv/daily_cases/2026-02-01.csv", params={"rows": "lots"})
    assert bad.status_code == 400 and "rows='lots'" in bad.text


def test_days_before_the_feed_or_in_the_future_are_404(sources_url: str) -> None:
    before = FEED_FIRST_DAY - dt.timedelta(days=1)
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    for day in (before, tomorrow):
        response = httpx.get(f"{sources_url}/csv/daily_cases/{day}.csv")
        assert response.status_code == 404 and str(day) in response.text
    assert httpx.get(f"{sources_url}/csv/daily_cases/not-a-day.csv").status_code == 404
