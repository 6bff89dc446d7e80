"""Download one CSV file (http(s) or file://) to a local path, retrying transient failures.

Transient (retried with exponential backoff, honouring `Retry-After`): timeouts, connection
errors and resets, bodies cut short, HTTP 408/429/500/502/503/504. Permanent (fails at once with
a clear `DownloadError`): 404 and other 4xx, a missing local file, content that is not CSV
(HTML, JSON, binary). The file lands atomically (written to `*.part`, then renamed) with its
SHA-256 and size, so a failed download never replaces a good raw file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from orchestration_platform.lib.url_redaction import redact_url

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
NOT_CSV_TYPES = ("text/html", "application/json", "application/xml", "text/xml", "image/", "application/pdf")
MAX_RETRY_AFTER_S = 60.0


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


def _fetch_http(client: httpx.Client, url: str, dest: Path, shown: str) -> tuple[str, int]:
    part = dest.with_name(dest.name + ".part")
    try:
        with client.stream("GET", url) as response:
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
            if response.status_code >= 400:
                raise DownloadError(f"{shown}: HTTP {response.status_code} {response.reason_phrase}: "
                                    f"{response.read()[:200]!r}")
            digest, size, first = hashlib.sha256(), 0, b""
            with open(part, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    if not first:
                        first = chunk[:64]
                        _sniff_not_csv(first, response.headers.get("content-type", ""), shown)
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    except (httpx.TimeoutException, httpx.TransportError) as error:  # includes bodies cut short
        part.unlink(missing_ok=True)
        raise TransientDownloadError(f"{shown}: {type(error).__name__}: {error}") from error
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digest.hexdigest(), size


def _fetch_file(url: str, dest: Path, shown: str) -> tuple[str, int]:
    source = Path(unquote(urlsplit(url).path))
    if not source.is_file():
        raise DownloadError(f"{shown}: no such file {source}; check INGESTION_CSV_URL_TEMPLATE")
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
    timeout_s: float = 30.0,
    client: httpx.Client | None = None,
    on_retry=None,
) -> DownloadedFile:
    """Download `url` to `dest`; raise `DownloadError` (permanent) or the last transient error."""
    shown = redact_url(url)
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{shown}: scheme {scheme!r} is not supported; use http(s):// or file://")
    if attempts < 1:
        raise DownloadError(f"attempts={attempts}: use 1 or more")
    dest.parent.mkdir(parents=True, exist_ok=True)
    own_client = client is None and scheme != "file"
    http = client or (httpx.Client(timeout=timeout_s, follow_redirects=True) if own_client else None)

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
                    sha256, size = _fetch_file(url, dest, shown)
                else:
                    sha256, size = _fetch_http(http, url, dest, shown)  # type: ignore[arg-type]
        return DownloadedFile(shown, dest, sha256, size, retrying.statistics.get("attempt_number", 1))
    except TransientDownloadError as error:
        raise TransientDownloadError(f"{error} (gave up after {attempts} attempts)", error.retry_after_s) from None
    finally:
        if own_client and http is not None:
            http.close()
