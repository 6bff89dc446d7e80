"""The one bounded way to read bytes from another system over HTTP(S).

Every read made through here has
- a total deadline (`deadline_s`): connect, headers and the whole body, not only each socket read,
  so a server that trickles a byte every few seconds cannot hold a run;
- a byte cap (`max_response_bytes`) on the body as received and as inflated: gzip/deflate are inflated
  here in bounded steps (never by httpx in one go), and an announced Content-Length above the cap fails
  before the body is read, so memory stays bounded whatever the server sends;
- a redirect limit (`max_redirects`), redirects only to http(s);
- for JSON, a nesting-depth limit (`max_json_depth`) checked on the bytes before parsing.

Each failure is a `ReadFailure` whose message names the limit, the value and the fix, and which says
whether retrying may help (`transient`): a deadline, a reset or a body cut short may; a body too large,
too deep, of the wrong type or a redirect loop will not. Messages never carry passwords or URL tokens.
The API extractor (async), the CSV download, the model-serving checks and the alerts webhook (sync, via
`read_sync`) share this one implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from orchestration_platform.lib.url_redaction import redact_url

MiB = 1 << 20
# httpx logs every request's full URL at INFO, query tokens and webhook secrets included; callers here log
# what they read with `shown_url` instead.
logging.getLogger("httpx").setLevel(logging.WARNING)
INFLATE_STEP = 1 * MiB  # largest piece inflated at once: a compression bomb never lands in memory whole
ERROR_BODY_BYTES = 4096  # of an error answer (4xx/5xx), only this much is read, for the message
SECRET_QUERY_KEY = re.compile(r"token|key|secret|sig|pass|auth|credential|session", re.IGNORECASE)


class ReadFailure(Exception):
    """A read failed; the message is safe to show; `transient` says whether a retry may succeed."""

    def __init__(self, message: str, *, kind: str, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of one request. Defaults suit a JSON API page; a whole CSV file gets a longer deadline."""

    deadline_s: float = 120.0  # connect + headers + whole body
    read_timeout_s: float = 15.0  # longest silence between two reads (and the connect timeout)
    max_response_bytes: int = 256 * MiB  # body as received and as inflated
    max_json_depth: int = 100
    max_redirects: int = 5

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"read limit {item.name}={value!r} must be a positive number; "
                                 f"fix: set {item.name} above 0 (default {item.default})")

    def merged(self, **overrides: Any) -> ReadLimits:
        """These limits with every override that is not None (per endpoint / per dataset settings)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def shown_url(url: str | httpx.URL) -> str:
    """The URL safe for messages: no password, and query values that look like secrets masked."""
    text = redact_url(str(url))
    parts = urlsplit(text)
    if not parts.query:
        return text
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(SECRET_QUERY_KEY.search(key) for key, _ in pairs):
        return text
    query = [(k, "***" if SECRET_QUERY_KEY.search(k) else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def format_bytes(count: int) -> str:
    return f"{count / 1e6:.0f} MB" if count >= 10_000_000 else f"{count} bytes"


def _too_large(limits: ReadLimits, count: int, what: str, fix: str) -> ReadFailure:
    return ReadFailure(f"response exceeded max_response_bytes={limits.max_response_bytes} {what} {format_bytes(count)}; "
                       f"fix: {fix}", kind="too_large", transient=False)


class BodyGuard:
    """Counts a body's bytes as received and as inflated, inflating gzip/deflate itself in bounded steps."""

    def __init__(self, limits: ReadLimits, headers: httpx.Headers, *, too_large_fix: str,
                 whole_body: bool = True) -> None:
        self.limits, self.fix = limits, too_large_fix
        self.received = self.inflated = 0
        announced = headers.get("content-length", "")
        if whole_body and announced.isdigit() and int(announced) > limits.max_response_bytes:
            raise _too_large(limits, int(announced), "announced (Content-Length)", too_large_fix)
        encodings = [e.strip().lower() for e in headers.get("content-encoding", "").split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        unsupported = len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate"))
        if unsupported and not whole_body:  # an error answer's start is shown as it came
            encodings = []
        elif unsupported:
            raise ReadFailure(f"the server sent Content-Encoding {', '.join(encodings)!r}, which is not supported "
                              "(gzip or deflate only); fix: ask the source for an uncompressed or gzip answer",
                              kind="content_encoding", transient=False)
        self.encoding = encodings[0] if encodings else None
        self._inflater = self._new_inflater()

    def _new_inflater(self) -> Any:
        if self.encoding is None:
            return None
        # gzip: header auto-detected (gzip or zlib); deflate: zlib-wrapped, raw deflate as fallback (as httpx does).
        return zlib.decompressobj(zlib.MAX_WBITS | 32 if self.encoding != "deflate" else zlib.MAX_WBITS)

    def _count(self, chunk: bytes) -> bytes:
        self.inflated += len(chunk)
        if self.inflated > self.limits.max_response_bytes:
            raise _too_large(self.limits, self.inflated, "after" if self.encoding is None else "inflated, after",
                             self.fix)
        return chunk

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The inflated pieces of `raw` (each at most INFLATE_STEP); raises ReadFailure over the cap."""
        self.received += len(raw)
        if self.received > self.limits.max_response_bytes:
            raise _too_large(self.limits, self.received, "as received, after", self.fix)
        if self._inflater is None:
            if raw:
                yield self._count(raw)
            return
        data = raw
        while data:
            try:
                piece = self._inflater.decompress(data, INFLATE_STEP)
            except zlib.error:
                if self.encoding == "deflate" and self.inflated == 0 and self.received == len(raw):
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    piece = self._inflater.decompress(data, INFLATE_STEP)
                else:
                    raise ReadFailure(f"the {self.encoding} body is corrupt; fix: check the source serves valid "
                                      f"{self.encoding}", kind="bad_encoding", transient=False) from None
            if piece:
                yield self._count(piece)
            data = self._inflater.unconsumed_tail
            if not data and self._inflater.eof and self._inflater.unused_data:  # another gzip member follows
                data = self._inflater.unused_data
                self._inflater = self._new_inflater()

    def finish(self) -> Iterator[bytes]:
        """What is left in the inflater; a compressed stream that stops early is a truncated body."""
        if self._inflater is None:
            return
        while True:
            piece = self._inflater.decompress(b"", INFLATE_STEP) if not self._inflater.eof else b""
            if not piece:
                break
            yield self._count(piece)
        if not self._inflater.eof and self.received:
            raise ReadFailure(f"the {self.encoding} body ended early after {format_bytes(self.received)}",
                              kind="truncated", transient=True)


@dataclass
class Answer:
    """A finished read: `response` has status, headers, final url and links; `content` the (inflated) body."""

    response: httpx.Response
    content: bytes
    received_bytes: int
    body_bytes: int
    seconds: float


def _classify(error: httpx.HTTPError, limits: ReadLimits, url: str) -> ReadFailure:
    """A named, safe ReadFailure for an httpx exception (never the raw library exception)."""
    if isinstance(error, httpx.TooManyRedirects):
        return ReadFailure(f"more than max_redirects={limits.max_redirects} redirects from {shown_url(url)} "
                           "(a redirect loop?); fix: point the URL at its final location or raise max_redirects",
                           kind="redirects", transient=False)
    target = ""
    with contextlib.suppress(RuntimeError):  # RuntimeError: no request attached
        target = shown_url(error.request.url)
    if isinstance(error, httpx.UnsupportedProtocol):
        return ReadFailure(f"redirected to {target or 'a URL'}, which is not http(s); only http(s) is followed; "
                           "fix: point the URL at the data's http(s) location", kind="redirect_scheme", transient=False)
    if isinstance(error, httpx.TimeoutException):
        return ReadFailure(f"no data for read_timeout_s={limits.read_timeout_s:g}s ({type(error).__name__})",
                           kind="timeout", transient=True)
    if isinstance(error, httpx.TransportError):
        # Refused, reset, or a body shorter than its Content-Length: the next attempt may well succeed.
        return ReadFailure(f"connection failed ({type(error).__name__}: {redact_url(str(error))[:200]})",
                           kind="connection", transient=True)
    return ReadFailure(f"request to {target or shown_url(url)} failed ({type(error).__name__})",
                       kind="request", transient=False)


def refuse_content_type(response: httpx.Response, refused: tuple[str, ...], expected: str) -> None:
    """A permanent ReadFailure when a 2xx answer's content type is one of `refused` (checked before the body)."""
    content_type = response.headers.get("content-type", "").lower()
    if content_type and any(content_type.startswith(kind) for kind in refused):
        raise ReadFailure(f"the answer has content-type {content_type!r}, not {expected}; fix: point the URL at "
                          "the data itself (not a web page or a download page)",
                          kind="content_type", transient=False)


async def read_async(client: httpx.AsyncClient, url: str, limits: ReadLimits, *,
                     params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                     check: Callable[[httpx.Response], None] | None = None,
                     sink: Callable[[bytes], None] | None = None,
                     too_large_fix: str = "raise max_response_bytes if the source really is that large",
                     method: str = "GET", json_body: Any = None) -> Answer:
    """GET (or `method`, with `json_body`) `url` within `limits`; the body goes to `sink` piece by piece, or is
    returned in `content`.

    `check(response)` runs on a 2xx answer before its body is read (content type, first checks) and may
    raise. Answers of 300 and above are returned with at most ERROR_BODY_BYTES of body, for the message.
    Raises ReadFailure; whatever `check` or `sink` raise passes through unchanged.
    """
    started = time.monotonic()
    guard: BodyGuard | None = None
    try:
        async with asyncio.timeout(limits.deadline_s):
            # Only what BodyGuard inflates (httpx would also offer br/zstd when their packages are installed).
            _CALLER_HEADERS.set((_origin(httpx.URL(url)), tuple(headers or ())))
            headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
            async with client.stream(method, url, params=params, headers=headers, json=json_body,
                                     timeout=httpx.Timeout(limits.read_timeout_s, pool=None)) as response:
                ok = response.status_code < 300
                buffer = bytearray()
                if ok and check is not None:
                    check(response)
                guard = BodyGuard(limits, response.headers, too_large_fix=too_large_fix, whole_body=ok)
                async for raw in response.aiter_raw():
                    for piece in guard.feed(raw):
                        if ok:
                            sink(piece) if sink is not None else buffer.extend(piece)
                        else:  # an error answer: keep its start for the message, drop the rest
                            buffer += piece[: ERROR_BODY_BYTES - len(buffer)]
                    if not ok and len(buffer) >= ERROR_BODY_BYTES:
                        break
                if ok:
                    for piece in guard.finish():
                        sink(piece) if sink is not None else buffer.extend(piece)
    except TimeoutError:
        received = format_bytes(guard.received) if guard else "0 bytes"
        raise ReadFailure(f"no complete answer within deadline_s={limits.deadline_s:g}s (received {received}); fix: "
                          "raise deadline_s if the source is just slow", kind="deadline", transient=True) from None
    except httpx.HTTPError as error:
        raise _classify(error, limits, url) from None
    except RecursionError:
        raise ReadFailure("the answer is nested too deeply to read", kind="too_deep", transient=False) from None
    assert guard is not None
    return Answer(response, bytes(buffer), guard.received, guard.inflated, time.monotonic() - started)


# The caller's own headers (an API key, a bearer token) and the origin they were meant for, per read: httpx
# drops only `Authorization` when a redirect leaves the origin, so a custom `X-Api-Key` would follow it.
_CALLER_HEADERS: contextvars.ContextVar[tuple[tuple[str, str, int | None], tuple[str, ...]] | None] = (
    contextvars.ContextVar("caller_headers", default=None))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


async def _keep_caller_headers_on_origin(request: httpx.Request) -> None:
    """Request hook: on a redirect to another origin, the caller's headers are not sent along."""
    caller = _CALLER_HEADERS.get()
    if caller is not None and _origin(request.url) != caller[0]:
        for name in caller[1]:
            request.headers.pop(name, None)


_SSL_CONTEXT: ssl.SSLContext | None = None
_SSL_LOCK = threading.Lock()


def client_options(limits: ReadLimits, *, max_connections: int = 10) -> dict[str, Any]:
    """Keyword arguments for an httpx client that reads within `limits` (with `read_async`)."""
    global _SSL_CONTEXT
    with _SSL_LOCK:  # built once per process: loading the CA bundle costs tens of milliseconds
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = httpx.create_ssl_context()
    return {
        "timeout": httpx.Timeout(limits.read_timeout_s, pool=None),
        "follow_redirects": True,
        "max_redirects": limits.max_redirects,
        "limits": httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        "verify": _SSL_CONTEXT,
        "event_hooks": {"request": [_keep_caller_headers_on_origin]},
    }


class _SharedLoop:
    """One event loop in a daemon thread per process, and its clients: synchronous callers (the CSV
    download's threads) share connections, and every read keeps the hard asyncio deadline."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.clients: dict[int, httpx.AsyncClient] = {}  # by max_redirects, a client-wide httpx setting
        threading.Thread(target=self.loop.run_forever, name="bounded-http", daemon=True).start()

    def client(self, limits: ReadLimits) -> httpx.AsyncClient:  # on the loop's thread only
        if limits.max_redirects not in self.clients:
            self.clients[limits.max_redirects] = httpx.AsyncClient(**client_options(limits, max_connections=32))
        return self.clients[limits.max_redirects]


_SHARED: _SharedLoop | None = None
_SHARED_LOCK = threading.Lock()


def _shared_loop() -> _SharedLoop:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED.pid != os.getpid():  # a forked child has the object, not the thread
            _SHARED = _SharedLoop()
        return _SHARED


def read_sync(url: str, limits: ReadLimits, **kwargs: Any) -> Answer:
    """`read_async` from synchronous code, on the process's shared loop (so the deadline is a hard one).

    `check` and `sink` run on that loop's thread; each call's own, so they need no locking.
    """
    shared = _shared_loop()

    async def run() -> Answer:
        return await read_async(shared.client(limits), url, limits, **kwargs)

    future = asyncio.run_coroutine_threadsafe(run(), shared.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # interrupted (KeyboardInterrupt, a cancelled step): stop the read too
        raise


# --- JSON with a depth limit -------------------------------------------------------------------------
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"')
_STRING = re.compile(rb'"[^"]*"')
_DEPTH_BLOCK = 1 << 20


def json_depth_exceeds(content: bytes, max_depth: int) -> bool:
    """True when `content`'s nesting is deeper than `max_depth`; a few C-speed passes, never recursion.

    Escapes are removed, then everything but brackets and quotes, then strings; the running depth is a
    cumulative sum over the brackets left (numpy, in blocks).
    """
    if b"\\" in content:  # escaped backslashes and quotes are not string ends
        content = content.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = content.translate(None, _NOT_STRUCTURAL)
    if len(brackets) <= max_depth:
        return False
    import numpy as np  # only for bodies with many brackets

    # Dropping two adjacent quotes never changes which side of a string anything else is on: empty
    # strings go at C speed, and the (rare) strings holding brackets are left for the regex.
    brackets = brackets.replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    level = 0
    for start in range(0, len(brackets), _DEPTH_BLOCK):
        block = np.frombuffer(brackets[start:start + _DEPTH_BLOCK], dtype=np.uint8)
        steps = ((block == ord("[")) | (block == ord("{"))).astype(np.int32)
        steps -= (block == ord("]")) | (block == ord("}"))
        depths = np.cumsum(steps) + level
        if int(depths.max()) > max_depth:
            return True
        level = int(depths[-1])
    return False


def parse_json(content: bytes, limits: ReadLimits, *, content_type: str = "") -> Any:
    """`content` parsed as JSON within `max_json_depth`; permanent ReadFailure when it is not JSON or too deep."""
    too_deep = ReadFailure(f"the JSON answer is nested deeper than max_json_depth={limits.max_json_depth}; fix: check "
                           "the source, or raise max_json_depth if the data really is that deep",
                           kind="too_deep", transient=False)
    if json_depth_exceeds(content, limits.max_json_depth):
        raise too_deep
    try:
        return json.loads(content)
    except RecursionError:
        raise too_deep from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        start = content[:60].decode("utf-8", "replace")
        raise ReadFailure(f"the answer is not JSON ({content_type or 'no content-type'}, starts with {start!r})",
                          kind="bad_json", transient=False) from None
