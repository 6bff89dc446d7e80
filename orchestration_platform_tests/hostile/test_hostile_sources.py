"""Every way a source's server can misbehave, through the REAL read paths: the API ETL pipeline
(`run_endpoints`: extract, transform, publish) and the CSV download (`download_csv`).

Each case runs in a fresh subprocess (run_case.py) so that its wall time and its peak memory growth
are its own. Every case must end with a named error of that endpoint / file, classified transient or
permanent, within the deadline (+ slack) and without memory growing with what the server sends.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestration_platform.lib.api_etl.extract import Extractor
from orchestration_platform.lib.http import ReadLimits, json_depth_exceeds, parse_json, shown_url
from orchestration_platform.lib.ingestion.download import DownloadError, download_csv
from orchestration_platform_tests.api_etl.conftest import make_config
from orchestration_platform_tests.hostile.server import HostileServer

DEADLINE_S = 2.0
CAP = 32 * 1024 * 1024  # bytes; the servers below send GBs or never stop
LIMITS = {"deadline_s": DEADLINE_S, "max_response_bytes": CAP}
WALL_BOUND_S = 2 * DEADLINE_S + 6  # two attempts of a transient failure, the backoff, a loaded machine
# Peak RSS growth of the process during the read. The API path keeps one answer to parse it (up to the cap);
# the CSV download streams to disk. Measured: API 7-42 MiB, CSV 5-9 MiB, while the servers send GBs.
SLACK = 64 * 1024 * 1024
API_MEMORY_BOUND = CAP + SLACK
CSV_MEMORY_BOUND = SLACK

TOO_LARGE = f"response exceeded max_response_bytes={CAP}"
DEADLINE = f"no complete answer within deadline_s={DEADLINE_S:g}s"
RETRIED = "gave up after 2 attempts"

# case -> (kind, fragments of the message, transient)
API_CASES = {
    "trickle": ("deadline", [DEADLINE, RETRIED, "fix: raise deadline_s"], True),
    "trickle_headers": ("deadline", [DEADLINE, RETRIED], True),
    "endless": ("too_large", [TOO_LARGE, "fix: paginate the endpoint or raise max_response_bytes"], False),
    "bomb": ("too_large", [TOO_LARGE, "inflated"], False),
    "deep": ("too_deep", ["nested deeper than max_json_depth=100", "fix:"], False),
    "huge_string": ("too_large", [TOO_LARGE, "announced (Content-Length)"], False),
    "huge_length": ("too_large", [TOO_LARGE, "announced (Content-Length)"], False),
    "lying_length": ("connection", ["connection failed", RETRIED], True),
    "drop": ("connection", ["connection failed", RETRIED], True),
    "wrong_type": ("content_type", ["content-type 'text/html; charset=utf-8', not JSON", "fix:"], False),
    "redirect_loop": ("redirects", ["more than max_redirects=5 redirects", "fix:"], False),
    "redirect_file": ("redirect_scheme", ["redirected to file://", "/etc/passwd, which is not http(s)"], False),
    "redirect_ftp": ("redirect_scheme", ["redirected to ftp://127.0.0.1/data.csv, which is not http(s)"], False),
}
CSV_CASES = {
    "trickle": ("TransientDownloadError", [DEADLINE, RETRIED]),
    "trickle_headers": ("TransientDownloadError", [DEADLINE, RETRIED]),
    "endless": ("DownloadError", [TOO_LARGE, "fix: raise max_response_bytes for this dataset"]),
    "bomb": ("DownloadError", [TOO_LARGE, "inflated"]),
    "huge_length": ("DownloadError", [TOO_LARGE, "announced (Content-Length)"]),
    "lying_length": ("TransientDownloadError", ["connection failed", RETRIED]),
    "drop": ("TransientDownloadError", ["connection failed", RETRIED]),
    "wrong_type": ("DownloadError", ["did not return CSV", "text/html"]),
    "redirect_loop": ("DownloadError", ["more than max_redirects=5 redirects"]),
    "redirect_file": ("DownloadError", ["redirected to file://", "/etc/passwd, which is not http(s)"]),
    "redirect_ftp": ("DownloadError", ["redirected to ftp://127.0.0.1/data.csv, which is not http(s)"]),
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = HostileServer().start()
    yield server.url
    server.stop()


def run_case(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "orchestration_platform_tests.hostile.run_case", *args],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_harness_publishes_a_well_behaved_answer(hostile: str, fresh_database: str, tmp_path: Path) -> None:
    outcome = run_case("api", f"{hostile}/ok", fresh_database, json.dumps(LIMITS))
    assert outcome["error"] is None and outcome["published"]
    outcome = run_case("csv", f"{hostile}/ok?as=csv", str(tmp_path / "ok.csv"), json.dumps(LIMITS))
    assert outcome["error"] is None and outcome["dest_exists"]


@pytest.mark.parametrize("case", API_CASES)
def test_api_endpoint_fails_with_a_named_error_in_bounded_time_and_memory(case: str, hostile: str,
                                                                         fresh_database: str) -> None:
    kind, fragments, transient = API_CASES[case]
    outcome = run_case("api", f"{hostile}/{case}", fresh_database, json.dumps(LIMITS))
    assert outcome["kind"] == kind, outcome
    assert outcome["error"].startswith("endpoint 'hostile': "), outcome
    for fragment in fragments:
        assert fragment in outcome["error"], outcome
    assert (RETRIED in outcome["error"]) == transient  # permanent failures are not retried
    assert outcome["seconds"] < WALL_BOUND_S, outcome
    assert outcome["rss_growth"] < API_MEMORY_BOUND, outcome


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_download_fails_with_a_named_error_in_bounded_time_and_memory(case: str, hostile: str,
                                                                          tmp_path: Path) -> None:
    kind, fragments = CSV_CASES[case]
    dest = tmp_path / "2026-04-02.csv"
    outcome = run_case("csv", f"{hostile}/{case}?as=csv", str(dest), json.dumps(LIMITS))
    assert outcome["kind"] == kind, outcome
    assert outcome["error"].startswith(f"{hostile}/{case}?as=csv"), outcome  # names the file
    for fragment in fragments:
        assert fragment in outcome["error"], outcome
    assert not outcome["dest_exists"] and not outcome["part_left"]  # nothing half-written is left behind
    assert outcome["seconds"] < WALL_BOUND_S, outcome
    assert outcome["rss_growth"] < CSV_MEMORY_BOUND, outcome


def test_without_settings_the_default_cap_stops_a_bomb(hostile: str, fresh_database: str) -> None:
    """No limits set: the default 256 MiB cap stops an 8 GiB gzip bomb; memory stays near the cap (the
    API path keeps the body to parse it), far below what the server would inflate to."""
    outcome = run_case("api", f"{hostile}/bomb", fresh_database, json.dumps({}))
    assert outcome["kind"] == "too_large"
    assert ("endpoint 'hostile': response exceeded max_response_bytes=268435456 inflated, after 269 MB; "
            "fix: paginate the endpoint or raise max_response_bytes") in outcome["error"]
    assert outcome["rss_growth"] < 268435456 + SLACK, outcome


def test_secrets_never_reach_the_message(hostile: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as error:
        download_csv(f"http://reader:pa55word@127.0.0.1:{hostile.rsplit(':', 1)[1]}/redirect_loop?as=csv"
                     "&api_token=t0ken-value", tmp_path / "d.csv", headers={"Authorization": "Bearer hdr-secret"})
    message = str(error.value)
    assert "pa55word" not in message and "t0ken-value" not in message and "hdr-secret" not in message
    assert "reader:***@" in message and "api_token=***" in message


def test_bad_limits_are_refused_naming_the_value_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"read limit deadline_s=0 must be a positive number; fix: set deadline_s"):
        download_csv("http://127.0.0.1:9/x.csv", tmp_path / "d.csv", deadline_s=0)


def test_json_depth_is_checked_before_parsing_and_never_raises_recursion_error() -> None:
    limits = ReadLimits(max_json_depth=5)
    assert parse_json(b'{"a": [{"b": [1, {"c": "[[[[[[[[ \\" {{{{{{"}]}]}', limits)["a"][0]["b"][1]["c"]
    assert json_depth_exceeds(b"[" * 6 + b"]" * 6, 5) and not json_depth_exceeds(b"[" * 5 + b"]" * 5, 5)
    assert not json_depth_exceeds(b"[" + b"{}," * 1000 + b"{}]", 5)  # many objects, shallow
    for body in (b"[" * 1_000_000, b"[" * 1_000_000 + b"]" * 1_000_000):  # malformed and deep
        with pytest.raises(Exception) as error:
            parse_json(body, ReadLimits(max_json_depth=5000))
        assert error.type.__name__ == "ReadFailure" and error.value.kind in ("too_deep", "bad_json")


def test_urls_in_messages_hide_passwords_and_token_params() -> None:
    shown = shown_url("https://u:pw@api.example.com/x?page=2&access_token=abc&sig=zz")
    assert shown == "https://u:***@api.example.com/x?page=2&access_token=***&sig=***"
    assert shown_url("http://h/x?page=2&b=a%20b") == "http://h/x?page=2&b=a%20b"  # untouched when nothing to hide


def test_the_hostile_server_really_misbehaves(hostile: str) -> None:
    """The cases are real: a plain httpx client (per-read timeout only) is still reading after the deadline."""
    with httpx.Client(timeout=DEADLINE_S) as client, client.stream("GET", f"{hostile}/trickle") as response:
        started = time.monotonic()
        for _ in response.iter_raw(1):
            if time.monotonic() - started > DEADLINE_S + 1:
                break
        assert time.monotonic() - started > DEADLINE_S + 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw_deflate"])
def test_compressed_answers_are_inflated_intact(encoding: str, hostile: str, tmp_path: Path) -> None:
    """The bounded inflater is a faithful one: multi-member gzip, zlib-wrapped and raw deflate."""
    download_csv(f"{hostile}/compressed?as=csv&enc={encoding}", tmp_path / "d.csv")
    lines = (tmp_path / "d.csv").read_bytes().splitlines()
    assert len(lines) == 5001 and lines[-1] == b"4999,north,2026-04-02,4999"

    config = make_config({"name": "packed", "url": f"{hostile}/compressed?enc={encoding}", "records_path": "data",
                          "primary_key": ["id"], "columns": {"id": "integer", "name": "text"}})

    async def go():
        async with Extractor(config.defaults, hostile, environ={}) as extractor:
            return await extractor.extract(config.endpoints[0])

    records = asyncio.run(go()).records
    assert [r["id"] for r in records] == list(range(5000))


def test_csv_download_sends_the_given_headers(hostile: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 401"):
        download_csv(f"{hostile}/needs_auth?as=csv", tmp_path / "d.csv")
    got = download_csv(f"{hostile}/needs_auth?as=csv", tmp_path / "d.csv",
                       headers={"Authorization": "Bearer hdr-secret"})
    assert got.size_bytes > 0 and (tmp_path / "d.csv").read_bytes().startswith(b"report_id,")
