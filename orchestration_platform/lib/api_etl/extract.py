"""Extract records from JSON APIs: async httpx, bounded concurrency, per-host rate limits, retries.

Transient failures (timeouts, a missed deadline, connection resets, truncated bodies, 5xx, 429) are
retried with exponential backoff, jitter and a cap; a 429's `Retry-After` is honoured. Other 4xx
answers, bodies that are not JSON, too large or too deep, wrong content types and redirect loops fail
the endpoint at once: retrying cannot fix them. Every request is bounded by lib/http.py (deadline,
byte cap as received and inflated, JSON depth, redirects), per endpoint or from `defaults:`.
Secret header values are never put in messages (and are redacted if a server echoes them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from orchestration_platform.lib.api_etl.endpoint_config import EndpointConfig, ExtractDefaults
from orchestration_platform.lib.http import (
    Answer,
    ReadFailure,
    ReadLimits,
    client_options,
    parse_json,
    read_async,
    refuse_content_type,
    shown_url,
)

# Content types that are certainly not JSON: refused before their body is read.
NOT_JSON_TYPES = ("text/html", "application/xhtml", "text/xml", "application/xml", "text/csv", "image/", "audio/",
                  "video/", "application/pdf", "application/zip")
TOO_LARGE_FIX = "paginate the endpoint or raise max_response_bytes"

RetryLog = Callable[[str, int, str, float], None]  # endpoint, attempt, reason, seconds until the next try


class ExtractError(Exception):
    """An endpoint could not be extracted; the message is safe to show (no secrets)."""

    def __init__(self, endpoint: str, message: str, *, kind: str) -> None:
        super().__init__(f"endpoint {endpoint!r}: {message}")
        self.endpoint = endpoint
        self.kind = kind


class TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's requested pause, if any."""

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class PermanentError(Exception):
    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ExtractResult:
    endpoint: str
    records: list[Any]
    pages: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    retry_reasons: list[str] = field(default_factory=list)


def get_path(body: Any, path: str) -> Any:
    """`body` at a dotted path (`meta.next_cursor`); KeyError names the keys that do exist."""
    current = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            keys = ", ".join(sorted(current)) if isinstance(current, dict) else type(current).__name__
            raise KeyError(f"{part!r} not found (keys there: {keys})")
    return current


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Redactor:
    """Removes secret values from any text before it leaves this module."""

    def __init__(self, secrets: set[str]) -> None:
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def auth_headers(endpoint: EndpointConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The endpoint's auth header, its value read from the environment variable the config names."""
    if endpoint.auth is None:
        return {}
    secret = environ.get(endpoint.auth.env, "")
    if not secret:
        raise PermanentError(
            f"auth env var {endpoint.auth.env!r} is not set; fix: export {endpoint.auth.env}=<token> "
            "in the environment of the code location and run workers",
            kind="auth_not_configured",
        )
    value = f"{endpoint.auth.scheme} {secret}" if endpoint.auth.scheme else secret
    return {endpoint.auth.header: value}


def _auth_hint(endpoint: EndpointConfig, kind: str) -> str:
    if kind not in ("http_401", "http_403"):
        return ""
    if endpoint.auth is None:
        return "; fix: the API wants credentials: add auth {header, env, scheme} to the endpoint"
    return f"; fix: check the token in env var {endpoint.auth.env} (auth.env) and its scheme {endpoint.auth.scheme!r}"


class Extractor:
    """One shared HTTP client, one concurrency bound and one rate limiter per host for a whole run."""

    def __init__(self, defaults: ExtractDefaults, base_url: str, *, environ: Mapping[str, str] | None = None,
                 on_retry: RetryLog | None = None) -> None:
        self.defaults = defaults
        self.base_url = base_url
        self.environ = os.environ if environ is None else environ
        self.on_retry = on_retry
        self._semaphore = asyncio.Semaphore(defaults.concurrency)
        self._limiters: dict[str, AsyncLimiter] = {}
        self._read_limits = ReadLimits(deadline_s=defaults.deadline_s, read_timeout_s=defaults.timeout_s,
                                       max_response_bytes=defaults.max_response_bytes,
                                       max_json_depth=defaults.max_json_depth, max_redirects=defaults.max_redirects)
        self._client = httpx.AsyncClient(
            **client_options(self._read_limits, max_connections=defaults.concurrency),
            headers={"Accept": "application/json", "User-Agent": "orchestration-platform-api-etl"},
        )

    async def __aenter__(self) -> Extractor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def _limiter(self, url: str) -> AsyncLimiter:
        host = urlsplit(url).netloc
        if host not in self._limiters:
            rate = self.defaults.requests_per_second_per_host
            # Bucket of one second's worth of requests: bursts up to the rate, never above it on average.
            self._limiters[host] = AsyncLimiter(max_rate=max(1.0, rate), time_period=max(1.0, rate) / rate)
        return self._limiters[host]

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            return min(error.retry_after, self.defaults.retry_after_max_s)
        backoff = wait_exponential_jitter(
            initial=self.defaults.backoff_initial_s, max=self.defaults.backoff_max_s,
            jitter=self.defaults.backoff_initial_s,
        )
        return backoff(state)

    def limits(self, endpoint: EndpointConfig) -> ReadLimits:
        """The read limits of `endpoint`: its own values where set, else the `defaults:` ones."""
        return self._read_limits.merged(deadline_s=endpoint.deadline_s, max_response_bytes=endpoint.max_response_bytes,
                                        max_json_depth=endpoint.max_json_depth)

    async def _get_once(self, url: str, params: dict[str, Any] | None, headers: dict[str, str],
                        limits: ReadLimits) -> Answer:
        async with self._semaphore, self._limiter(url):
            try:
                answer = await read_async(self._client, url, limits, params=params, headers=headers,
                                          check=_refuse_not_json, too_large_fix=TOO_LARGE_FIX)
            except ReadFailure as failure:
                if failure.transient:
                    raise TransientError(str(failure), kind=failure.kind, retry_after=failure.retry_after) from None
                raise PermanentError(str(failure), kind=failure.kind) from None
        response = answer.response
        status = response.status_code
        if status == 429:
            raise TransientError("HTTP 429 Too Many Requests", kind="http_429",
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"HTTP {status} {response.reason_phrase}", kind=f"http_{status}")
        if status >= 300:
            text = answer.content[:200].decode(response.encoding or "utf-8", "replace")
            raise PermanentError(f"HTTP {status} {response.reason_phrase}: {text!r}", kind=f"http_{status}")
        return answer

    async def _get_json(self, endpoint: EndpointConfig, result: ExtractResult, url: str,
                        params: dict[str, Any] | None, headers: dict[str, str]) -> tuple[Any, httpx.Response]:
        limits = self.limits(endpoint)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.defaults.max_attempts),
            retry=retry_if_exception_type(TransientError),
            wait=self._wait,
            reraise=True,
            before_sleep=lambda state: self._note_retry(endpoint.name, result, state),
        )
        async for attempt in retrying:
            with attempt:
                result.requests += 1
                answer = await self._get_once(url, params, headers, limits)
        content_type = answer.response.headers.get("content-type", "no content-type")
        try:
            body = parse_json(answer.content, limits, content_type=content_type)
        except ReadFailure as failure:
            raise PermanentError(f"response from {shown_url(url)}: {failure}", kind=failure.kind) from None
        return body, answer.response

    def _note_retry(self, name: str, result: ExtractResult, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = str(error)
        wait = state.next_action.sleep if state.next_action else 0.0
        result.retries += 1
        result.retry_reasons.append(reason)
        if self.on_retry:
            self.on_retry(name, state.attempt_number, reason, wait)

    def _records(self, endpoint: EndpointConfig, body: Any, url: str) -> list[Any]:
        try:
            records = get_path(body, endpoint.records_path)
        except KeyError as error:
            raise PermanentError(f"records_path {endpoint.records_path!r} not in the response from {shown_url(url)}: {error.args[0]}",
                                 kind="records_path") from None
        if not isinstance(records, list):
            raise PermanentError(f"records_path {endpoint.records_path or '(body)'!r} is a {type(records).__name__}, "
                                 "not a list of records; fix: point records_path at the list", kind="records_path")
        return records

    async def extract(self, endpoint: EndpointConfig, *, since: str | None = None) -> ExtractResult:
        """Every record of `endpoint` across its pages; raises ExtractError with a safe message."""
        result = ExtractResult(endpoint.name, [])
        started = time.perf_counter()
        redact = Redactor(set())
        try:
            headers = auth_headers(endpoint, self.environ)
            redact = Redactor(set(headers.values()) | {v.split(" ", 1)[-1] for v in headers.values()})
            await self._paginate(endpoint, result, headers, since)
        except (TransientError, PermanentError) as error:
            prefix = f"gave up after {result.requests} attempts: " if isinstance(error, TransientError) else ""
            raise ExtractError(endpoint.name, redact(prefix + str(error) + _auth_hint(endpoint, error.kind)),
                               kind=error.kind) from None
        result.seconds = time.perf_counter() - started
        return result

    async def _paginate(self, endpoint: EndpointConfig, result: ExtractResult, headers: dict[str, str],
                        since: str | None) -> None:
        url = endpoint.resolved_url(self.base_url)
        params: dict[str, Any] = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in endpoint.params.items()}
        if endpoint.incremental and since is not None:
            params[endpoint.incremental.param] = since
        pagination = endpoint.pagination
        if pagination.type == "none":
            body, _ = await self._get_json(endpoint, result, url, params, headers)
            result.records.extend(self._records(endpoint, body, url))
            result.pages = 1
        elif pagination.type == "cursor":
            await self._cursor_pages(endpoint, result, url, params, headers)
        elif pagination.type == "page":
            await self._numbered_pages(endpoint, result, url, params, headers)
        else:
            await self._link_pages(endpoint, result, url, params, headers)

    def _check_page_budget(self, endpoint: EndpointConfig, pages: int) -> None:
        if pages > endpoint.max_pages:
            raise PermanentError(f"more than max_pages={endpoint.max_pages} pages; fix: raise max_pages if the "
                                 "source really is that large", kind="too_many_pages")

    async def _cursor_pages(self, endpoint, result, url, params, headers) -> None:
        pagination = endpoint.pagination
        cursor: Any = None
        seen: set[str] = set()
        while True:
            page_params = params if cursor is None else {**params, pagination.cursor_param: cursor}
            body, _ = await self._get_json(endpoint, result, url, page_params, headers)
            result.records.extend(self._records(endpoint, body, url))
            result.pages += 1
            try:
                cursor = get_path(body, pagination.next_cursor_path)
            except KeyError:
                cursor = None  # no cursor field on the last page is how many APIs say "done"
            if cursor in (None, ""):
                return
            if str(cursor) in seen:
                raise PermanentError(f"cursor {cursor!r} repeated: the API is looping", kind="pagination")
            seen.add(str(cursor))
            self._check_page_budget(endpoint, result.pages + 1)

    async def _numbered_pages(self, endpoint, result, url, params, headers) -> None:
        pagination = endpoint.pagination

        def page_params(number: int) -> dict[str, Any]:
            extra = {pagination.page_param: number}
            if pagination.page_size_param:
                extra[pagination.page_size_param] = pagination.page_size
            return {**params, **extra}

        first = pagination.first_page
        body, _ = await self._get_json(endpoint, result, url, page_params(first), headers)
        records = self._records(endpoint, body, url)
        result.records.extend(records)
        result.pages = 1
        if pagination.total_pages_path:
            try:
                total = int(get_path(body, pagination.total_pages_path))
            except (KeyError, TypeError, ValueError) as error:
                raise PermanentError(f"pagination.total_pages_path {pagination.total_pages_path!r} has no page "
                                     f"count in the response ({error})", kind="pagination") from None
            self._check_page_budget(endpoint, total)
            # The page count is known: fetch the rest together, keeping page order.
            numbers = range(first + 1, first + total)
            try:
                async with asyncio.TaskGroup() as group:  # one failed page cancels the others
                    tasks = [group.create_task(self._get_json(endpoint, result, url, page_params(n), headers))
                             for n in numbers]
            except ExceptionGroup as failures:
                raise failures.exceptions[0] from None
            for page_body, _ in (task.result() for task in tasks):
                result.records.extend(self._records(endpoint, page_body, url))
            result.pages += len(numbers)
            return
        number = first
        while records and (not pagination.page_size_param or len(records) >= pagination.page_size):
            number += 1
            self._check_page_budget(endpoint, result.pages + 1)
            body, _ = await self._get_json(endpoint, result, url, page_params(number), headers)
            records = self._records(endpoint, body, url)
            result.records.extend(records)
            result.pages += 1

    async def _link_pages(self, endpoint, result, url, params, headers) -> None:
        next_url: str | None = url
        page_params: dict[str, Any] | None = params
        seen: set[str] = set()
        while next_url:
            body, response = await self._get_json(endpoint, result, next_url, page_params, headers)
            result.records.extend(self._records(endpoint, body, next_url))
            result.pages += 1
            link = response.links.get("next", {}).get("url")
            # The next link carries every query param already.
            next_url, page_params = (urljoin(str(response.url), link), None) if link else (None, None)
            if next_url in seen:
                raise PermanentError(f"Link rel=next {shown_url(next_url)} repeated: the API is looping", kind="pagination")
            if next_url:
                seen.add(next_url)
                self._check_page_budget(endpoint, result.pages + 1)


def _refuse_not_json(response: httpx.Response) -> None:
    refuse_content_type(response, NOT_JSON_TYPES, "JSON")


async def extract_all(endpoints: list[EndpointConfig], defaults: ExtractDefaults, base_url: str, *,
                      since: Mapping[str, str | None] | None = None,
                      environ: Mapping[str, str] | None = None) -> dict[str, ExtractResult | ExtractError]:
    """Extract every endpoint concurrently; each gets its result or its own ExtractError."""
    since = since or {}
    async with Extractor(defaults, base_url, environ=environ) as extractor:

        async def one(endpoint: EndpointConfig) -> ExtractResult | ExtractError:
            try:
                return await extractor.extract(endpoint, since=since.get(endpoint.name))
            except ExtractError as error:
                return error

        outcomes = await asyncio.gather(*(one(e) for e in endpoints))
    return {e.name: outcome for e, outcome in zip(endpoints, outcomes, strict=True)}
