"""Downloading against the real demo server with every fault it can inject, and from file:// URLs."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import httpx
import pytest

from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv
from orchestration_platform.devstack.sources.faults import FAULT_KINDS
from orchestration_platform.lib.ingestion.download import DownloadError, TransientDownloadError, download_csv

DAY = "2026-04-02"
TRANSIENT = ["500", "502", "503", "429", "timeout", "truncate", "reset"]
PERMANENT = {"404": "not found (HTTP 404)", "bad_json": "did not return CSV"}


@pytest.fixture
def feed_url(sources_url: str) -> str:
    httpx.post(f"{sources_url}/_faults/reset")
    return f"{sources_url}/csv/daily_cases/{DAY}.csv"


def test_every_fault_the_demo_server_injects_is_covered_here() -> None:
    assert set(TRANSIENT) | set(PERMANENT) == set(FAULT_KINDS)


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_faults_are_retried_and_the_file_arrives_intact(fault, feed_url, tmp_path) -> None:
    retries = []
    url = f"{feed_url}?fault={fault}&fault_times=2&fault_key=dl-{fault}&retry_after=0&timeout_s=2"
    got = download_csv(url, tmp_path / "day.csv", backoff_s=0.05, timeout_s=0.5,
                       on_retry=lambda n, error, wait: retries.append(str(error)))
    expected = daily_cases_csv(dt.date.fromisoformat(DAY))
    assert got.attempts == 3 and len(retries) == 2
    assert (tmp_path / "day.csv").read_bytes() == expected
    assert got.sha256 == hashlib.sha256(expected).hexdigest() and got.size_bytes == len(expected)
    assert not (tmp_path / "day.csv.part").exists()


def test_retry_after_is_honoured(feed_url, tmp_path) -> None:
    started = time.monotonic()
    download_csv(f"{feed_url}?fault=429&fault_times=1&fault_key=ra&retry_after=1", tmp_path / "d.csv",
                 backoff_s=0.01)
    assert time.monotonic() - started >= 1.0  # waited as the server asked, not the 10 ms backoff


@pytest.mark.parametrize(("fault", "message"), PERMANENT.items())
def test_permanent_faults_fail_at_once_without_retrying(fault, message, feed_url, tmp_path) -> None:
    retries = []
    with pytest.raises(DownloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        download_csv(f"{feed_url}?fault={fault}", tmp_path / "d.csv", on_retry=lambda *a: retries.append(a))
    assert retries == [] and not (tmp_path / "d.csv").exists()


def test_a_failed_download_never_replaces_the_good_file(feed_url, tmp_path) -> None:
    dest = tmp_path / "d.csv"
    dest.write_bytes(b"report_id,region\n1,good\n")
    with pytest.raises(TransientDownloadError, match="gave up after 2 attempts"):
        download_csv(f"{feed_url}?fault=truncate", dest, attempts=2, backoff_s=0.01)
    assert dest.read_bytes() == b"report_id,region\n1,good\n"


def test_file_urls_are_read_and_missing_files_fail_clearly(tmp_path) -> None:
    source = tmp_path / "in" / "2026-04-02.csv"
    source.parent.mkdir()
    source.write_bytes(b"report_id,region,reported_at,confirmed_cases\n1,n,2026-04-02,3\n")
    got = download_csv(source.as_uri(), tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == source.read_bytes() and got.attempts == 1
    with pytest.raises(DownloadError, match="no such file"):
        download_csv((tmp_path / "nope.csv").as_uri(), tmp_path / "out2.csv")


def test_credentials_in_the_url_never_show_in_errors(feed_url, tmp_path) -> None:
    secret_url = feed_url.replace("http://", "http://reader:s3cret-pass@") + "?fault=404"
    with pytest.raises(DownloadError) as error:
        download_csv(secret_url, tmp_path / "d.csv")
    assert "s3cret-pass" not in str(error.value) and "reader:***@" in str(error.value)


def test_unsupported_schemes_are_refused(tmp_path) -> None:
    with pytest.raises(DownloadError, match="scheme 'ftp' is not supported"):
        download_csv("ftp://example.invalid/x.csv", tmp_path / "d.csv")
