"""Extraction against the demo sources server: every pagination style, every fault type,
what is retried and what is not, and auth secrets kept out of errors."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from orchestration_platform.lib.api_etl.endpoint_config import EndpointsConfig
from orchestration_platform.lib.api_etl.extract import (
    ExtractError,
    Extractor,
    ExtractResult,
    parse_retry_after,
)
from orchestration_platform_tests.api_etl.conftest import CUSTOMERS, ORDERS, PRODUCTS, make_config, synthetic


def extract(config: EndpointsConfig, base_url: str, environ: dict[str, str] | None = None) -> ExtractResult:
    async def go() -> ExtractResult:
        async with Extractor(config.defaults, base_url, environ=environ or {}) as extractor:
            return await extractor.extract(config.endpoints[0])

    return asyncio.run(go())


def failure(config: EndpointsConfig, base_url: str, environ: dict[str, str] | None = None) -> ExtractError:
    with pytest.raises(ExtractError) as error:
        extract(config, base_url, environ)
    return error.value


def test_cursor_pagination_reads_every_page(sources_url: str):
    result = extract(make_config(CUSTOMERS), sources_url)
    assert [r["id"] for r in result.records] == list(range(1, 301))
    assert result.pages == 3


def test_page_number_pagination_with_total_pages(sources_url: str):
    result = extract(make_config(ORDERS), sources_url)
    assert [r["order_id"] for r in result.records] == list(range(1, 1001))  # pages fetched together, kept in order
    assert result.pages == 10


def test_page_number_pagination_without_total_stops_at_the_short_page(sources_url: str):
    endpoint = {**ORDERS, "pagination": {"type": "page", "page_size": 300}}
    result = extract(make_config(endpoint), sources_url)
    assert len(result.records) == 1000 and result.pages == 4


def test_link_header_pagination_keeps_the_params(sources_url: str):
    endpoint = {**PRODUCTS, "params": {"per_page": 25, "drift": 1}}
    result = extract(make_config(endpoint), sources_url)
    assert [r["sku"] for r in result.records] == [f"SKU-{n:05d}" for n in range(1, 121)]
    assert result.pages == 5
    assert all("cost" in r for r in result.records)  # every page got drift=1, not only the first


def test_records_path_missing_names_the_keys_that_exist(sources_url: str):
    error = failure(make_config({**ORDERS, "records_path": "data.items"}), sources_url)
    assert "records_path 'data.items'" in str(error) and "keys there: orders, page, per_page, total_pages" in str(error)


@pytest.mark.parametrize("kind", ["500", "502", "503", "timeout", "truncate", "reset"])
def test_transient_faults_are_retried_until_success(sources_url: str, fault_key: str, kind: str):
    endpoint = synthetic("flaky", records=10, fault=kind, fault_times=2, fault_key=fault_key, timeout_s=5)
    result = extract(make_config(endpoint, timeout_s=0.5), sources_url)
    assert len(result.records) == 10
    assert result.retries == 2 and result.requests == 3


def test_429_waits_for_retry_after(sources_url: str, fault_key: str):
    config = make_config(synthetic("limited", fault="429", fault_times=1, fault_key=fault_key, retry_after=1))
    started = time.perf_counter()
    result = extract(config, sources_url)
    assert time.perf_counter() - started >= 0.95  # backoff alone would be <= 0.2 s here
    assert result.retries == 1 and "429" in result.retry_reasons[0]


def test_retry_after_is_capped(sources_url: str, fault_key: str):
    config = make_config(synthetic("capped", fault="429", fault_times=1, fault_key=fault_key, retry_after=3600),
                         retry_after_max_s=0.1)
    started = time.perf_counter()
    assert len(extract(config, sources_url).records) == 50
    assert time.perf_counter() - started < 30


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("kind, expected", [("404", "HTTP 404"), ("bad_json", "is not JSON")])
def test_permanent_faults_fail_at_once(sources_url: str, fault_key: str, kind: str, expected: str):
    config = make_config(synthetic("broken", fault=kind, fault_key=fault_key))
    started = time.perf_counter()
    error = failure(config, sources_url)
    assert expected in str(error) and "endpoint 'broken'" in str(error)
    assert "attempts" not in str(error)  # one request, no retries
    assert time.perf_counter() - started < 1.5


def test_retries_give_up_after_max_attempts_with_the_last_reason(sources_url: str, fault_key: str):
    error = failure(make_config(synthetic("down", fault="503", fault_key=fault_key), max_attempts=3), sources_url)
    assert str(error) == "endpoint 'down': gave up after 3 attempts: HTTP 503 Service Unavailable"
    assert error.kind == "http_503"


def test_bearer_auth_from_the_named_env_var(sources_url: str):
    endpoint = {"name": "partners", "url": "/api/partners", "records_path": "data", "primary_key": ["partner_id"],
                "auth": {"env": "TEST_PARTNER_TOKEN"}, "columns": {"partner_id": "integer", "name": "text"}}
    result = extract(make_config(endpoint), sources_url, {"TEST_PARTNER_TOKEN": "demo-token"})
    assert len(result.records) == 20
    error = failure(make_config(endpoint), sources_url, {"TEST_PARTNER_TOKEN": "wrong-secret-123"})
    assert "HTTP 401" in str(error) and "fix: check the token in env var TEST_PARTNER_TOKEN" in str(error)
    assert "wrong-secret-123" not in str(error) and "wrong-secret-123" not in repr(error.__dict__)
    error = failure(make_config(endpoint), sources_url, {})
    assert "auth env var 'TEST_PARTNER_TOKEN' is not set; fix: export TEST_PARTNER_TOKEN=<token>" in str(error)


def test_concurrency_is_bounded_and_requests_overlap(sources_url: str):
    endpoints = [synthetic(f"slow_{i}", records=5, latency_ms=400) for i in range(12)]
    config = make_config(*endpoints, concurrency=6)

    async def go() -> float:
        async with Extractor(config.defaults, sources_url, environ={}) as extractor:
            started = time.perf_counter()
            await asyncio.gather(*(extractor.extract(e) for e in config.endpoints))
            return time.perf_counter() - started

    elapsed = asyncio.run(go())
    # 12 requests of 0.4 s, 6 at a time: two waves (~0.8 s), far from 4.8 s sequential, never one wave.
    assert 0.75 <= elapsed < 2.5


def test_per_host_rate_limit_spaces_requests(sources_url: str):
    config = make_config(*[synthetic(f"r_{i}", records=1) for i in range(6)], requests_per_second_per_host=4)

    async def go() -> float:
        async with Extractor(config.defaults, sources_url, environ={}) as extractor:
            started = time.perf_counter()
            await asyncio.gather(*(extractor.extract(e) for e in config.endpoints))
            return time.perf_counter() - started

    # 4 per second: the first 4 pass at once, the other 2 wait for the bucket to refill.
    assert asyncio.run(go()) >= 0.4


def test_demo_server_serves_100_slow_requests_together(sources_url: str):
    async def go() -> float:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(*(client.get(f"{sources_url}/api/synthetic/s{i}",
                                                        params={"records": 5, "latency_ms": 1000})
                                             for i in range(100)))
            assert all(a.status_code == 200 for a in answers)
            return time.perf_counter() - started

    # A generous bound (ideal 1 s; one after another they would take 100 s): on a busy 2-core machine 5 s missed.
    assert asyncio.run(go()) < 25.0



def test_read_limits_are_set_per_endpoint_over_the_defaults(sources_url: str):
    """One endpoint's own cap fails only that endpoint, by name, without retrying; the others keep the defaults."""
    config = make_config({**synthetic("small_cap", records=200), "max_response_bytes": 1000}, synthetic("roomy", records=200))
    small, roomy = config.endpoints

    async def go() -> tuple[ExtractError | ExtractResult, ExtractResult]:
        async with Extractor(config.defaults, sources_url, environ={}) as extractor:
            assert extractor.limits(small).max_response_bytes == 1000
            assert extractor.limits(roomy).max_response_bytes == config.defaults.max_response_bytes == 256 * 2**20
            try:
                failed = await extractor.extract(small)
            except ExtractError as error:
                failed = error
            return failed, await extractor.extract(roomy)

    failed, result = asyncio.run(go())
    assert isinstance(failed, ExtractError) and failed.kind == "too_large"
    assert str(failed).startswith("endpoint 'small_cap': response exceeded max_response_bytes=1000 ")
    assert "fix: paginate the endpoint or raise max_response_bytes" in str(failed) and "attempts" not in str(failed)
    assert len(result.records) == 200


def test_a_deadline_shorter_than_the_answer_fails_the_endpoint_after_its_attempts(sources_url: str):
    config = make_config({**synthetic("slowpoke", records=5, latency_ms=1500), "deadline_s": 0.3}, max_attempts=2)
    started = time.perf_counter()
    error = failure(config, sources_url)
    assert error.kind == "deadline"
    assert str(error).startswith("endpoint 'slowpoke': gave up after 2 attempts: no complete answer within "
                                 "deadline_s=0.3s")
    assert time.perf_counter() - started < 5  # 2 x 0.3 s + backoff, never the 1.5 s latency twice


def test_bad_limits_in_the_config_name_the_endpoint_and_the_field():
    from orchestration_platform.lib.api_etl.endpoint_config import EndpointConfigError

    with pytest.raises(EndpointConfigError, match=r"endpoint 'x', field 'deadline_s': value 0: Input should be greater"):
        make_config({**synthetic("x"), "deadline_s": 0})
