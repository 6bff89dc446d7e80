"""Download one CSV file (http(s) or file://) to a local path, retrying transient failures.

Every attempt reads through the bounded layer (lib/http.py): a total deadline per file, a cap
on its size as received and as inflated, at most 5 redirects and only to http(s).
Transient (retried with exponential backoff, honouring `Retry-After`): timeouts, a missed deadline,
connection errors and resets, bodies cut short (a lying Content-Length), HTTP 408/429/500/502/503/504.
Permanent (fails at once with a clear `DownloadError`): 404 and other 4xx, a missing local file,
content that is not CSV (HTML, JSON, binary), a file over `max_response_bytes`, a redirect loop or
a redirect to another scheme. The file lands atomically (written to `*.part`, then renamed) with its
SHA-256 and size, so a failed download never replaces a good raw file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from orchestration_platform.lib.http import ReadFailure, ReadLimits, read_sync, shown_url

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
NOT_CSV_TYPES = ("text/html", "application/json", "application/xml", "text/xml", "image/", "application/pdf")
MAX_RETRY_AFTER_S = 60.0
# One day's file: a longer deadline than an API page; the cap is on disk use (the body streams to a file).
CSV_LIMITS = ReadLimits(deadline_s=600.0, read_timeout_s=30.0, max_response_bytes=1 << 30)


class DownloadError(RuntimeError):
    """The file cannot be downloaded and retrying will not help; the message says why and what to do."""


class TransientDownloadError(RuntimeError):
    """A failure worth retrying (the server or the network may recover)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class DownloadedFile:
    url: str  # redacted: safe to show
    path: Path
    sha256: str
    size_bytes: int
    attempts: int


def _sniff_not_csv(first_bytes: bytes, content_type: str, url: str) -> None:
    head = first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if any(content_type.startswith(t) for t in NOT_CSV_TYPES) or head in (b"<", b"{", b"["):
        raise DownloadError(
            f"{url} did not return CSV (content-type {content_type or 'unset'!r}, starts with "
            f"{first_bytes[:40]!r}); check INGESTION_CSV_URL_TEMPLATE points at the CSV file itself"
        )


def _fetch_http(url: str, dest: Path, shown: str, limits: ReadLimits, headers: Mapping[str, str] | None) -> tuple[str, int]:
    part = dest.with_name(dest.name + ".part")
    digest, first, content_type = hashlib.sha256(), bytearray(), [""]

    def check(response: httpx.Response) -> None:
        content_type[0] = response.headers.get("content-type", "")

    try:
        with open(part, "wb") as out:

            def sink(piece: bytes) -> None:
                # Judged on the first 64 bytes (an HTML page is refused without reading it), or at the end.
                if len(first) < 64:
                    first.extend(piece[: 64 - len(first)])
                    if len(first) == 64:
                        _sniff_not_csv(bytes(first), content_type[0], shown)
                digest.update(piece)
                out.write(piece)

            answer = read_sync(url, limits, headers=headers, check=check, sink=sink,
                               too_large_fix="raise max_response_bytes for this dataset if its files really are "
                                             "that large")
        response = answer.response
        if response.status_code < 300 and len(first) < 64:
            _sniff_not_csv(bytes(first), content_type[0], shown)
        if response.status_code in TRANSIENT_STATUS:
            retry_after = response.headers.get("retry-after")
            raise TransientDownloadError(
                f"{shown}: HTTP {response.status_code}",
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if response.status_code == 404:
            raise DownloadError(
                f"{shown}: not found (HTTP 404); the source has no file for this date (yet), "
                "or the URL template is wrong"
            )
        if response.status_code >= 300:
            raise DownloadError(f"{shown}: HTTP {response.status_code} {response.reason_phrase}: "
                                f"{answer.content[:200]!r}")
    except ReadFailure as failure:
        part.unlink(missing_ok=True)
        if failure.transient:
            raise TransientDownloadError(f"{shown}: {failure}", failure.retry_after) from None
        raise DownloadError(f"{shown}: {failure}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digest.hexdigest(), answer.body_bytes


def _fetch_file(url: str, dest: Path, shown: str, limits: ReadLimits) -> tuple[str, int]:
    source = Path(unquote(urlsplit(url).path))
    if not source.is_file():
        raise DownloadError(f"{shown}: no such file {source}; check INGESTION_CSV_URL_TEMPLATE")
    if source.stat().st_size > limits.max_response_bytes:
        raise DownloadError(f"{shown}: the file has {source.stat().st_size} bytes, more than max_response_bytes="
                            f"{limits.max_response_bytes}; fix: raise max_response_bytes for this dataset")
    data = source.read_bytes()
    if data:
        _sniff_not_csv(data[:64], "", shown)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(data)
    os.replace(part, dest)
    return hashlib.sha256(data).hexdigest(), len(data)


def _wait(backoff_s: float):
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientDownloadError) and error.retry_after_s is not None:
            return min(error.retry_after_s, MAX_RETRY_AFTER_S)
        return min(backoff_s * 2 ** (state.attempt_number - 1), 30.0)

    return wait


def download_csv(
    url: str,
    dest: Path,
    *,
    attempts: int = 4,
    backoff_s: float = 0.5,
    timeout_s: float | None = None,
    client: httpx.Client | None = None,
    on_retry=None,
    headers: Mapping[str, str] | None = None,
    deadline_s: float | None = None,
    max_response_bytes: int | None = None,
    limits: ReadLimits | None = None,
) -> DownloadedFile:
    """Download `url` to `dest`; raise `DownloadError` (permanent) or the last transient error.

    Each attempt is bounded (lib/http.py): `deadline_s` for the whole file (default 600 s), `timeout_s`
    of silence between reads (default 30 s), `max_response_bytes` as received and inflated (default
    1 GiB); `limits` sets all of them at once, the single arguments override it. `headers` are sent
    with the request (e.g. an auth header; never shown in errors). `client` is accepted for older
    callers and not used: each download reads through the bounded layer's own connection.
    """
    del client
    shown = shown_url(url)  # no password, no token in the query
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{shown}: scheme {scheme!r} is not supported; use http(s):// or file://")
    if attempts < 1:
        raise DownloadError(f"attempts={attempts}: use 1 or more")
    try:
        bounds = (limits or CSV_LIMITS).merged(deadline_s=deadline_s, read_timeout_s=timeout_s,
                                               max_response_bytes=max_response_bytes)
    except ValueError as error:
        raise DownloadError(f"{shown}: {error}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.upcoming_sleep)

    try:
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=_wait(backoff_s),
            retry=retry_if_exception_type(TransientDownloadError),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if scheme == "file":
                    sha256, size = _fetch_file(url, dest, shown, bounds)
                else:
                    sha256, size = _fetch_http(url, dest, shown, bounds, headers)
        return DownloadedFile(shown, dest, sha256, size, retrying.statistics.get("attempt_number", 1))
    except TransientDownloadError as error:
        raise TransientDownloadError(f"{error} (gave up after {attempts} attempts)", error.retry_after_s) from None
