"""Fault injection for the demo sources server, driven by query parameters.

Any URL accepts:
- `latency_ms=N`: answer after N milliseconds (asynchronously: 100 slow requests wait together).
- `fault=KIND`: one of `500`, `502`, `503`, `429`, `timeout`, `truncate`, `reset`, `bad_json`, `404`.
- `fault_times=N`: only the first N requests for this `fault_key` (default: the path) fail, then
  the real answer comes back. Without it, every request fails. This is how retries are tested.
- `retry_after=S`: the `Retry-After` header of a 429 (seconds, default 1).
- `timeout_s=S`: how long a `timeout` fault hangs before answering (default 30).

Faults are only honoured when the server was started with faults enabled (tests and `make dev`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

FAULT_KINDS = ("500", "502", "503", "429", "404", "timeout", "truncate", "reset", "bad_json")


class FaultCounter:
    """Counts requests per fault key so that `fault_times=N` fails exactly the first N."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: defaultdict[str, int] = defaultdict(int)

    def next_count(self, key: str) -> int:
        with self._lock:
            self._seen[key] += 1
            return self._seen[key]

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


class ResetConnection(Exception):
    """Raised to make the server drop the connection without an answer."""


async def apply_latency(request: Request) -> None:
    latency = request.query_params.get("latency_ms")
    if latency:
        await asyncio.sleep(int(latency) / 1000)


async def injected_fault(request: Request, counter: FaultCounter) -> Response | None:
    """The faulty response this request should get, or None to answer normally."""
    kind = request.query_params.get("fault")
    if not kind:
        return None
    if kind not in FAULT_KINDS:
        return PlainTextResponse(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}", 400)
    times = request.query_params.get("fault_times")
    if times is not None:
        key = request.query_params.get("fault_key") or f"{request.url.path}?{kind}"
        if counter.next_count(key) > int(times):
            return None
    if kind in ("500", "502", "503", "404"):
        return PlainTextResponse(f"injected {kind}", int(kind))
    if kind == "429":
        retry_after = request.query_params.get("retry_after", "1")
        return PlainTextResponse("slow down", 429, headers={"Retry-After": retry_after})
    if kind == "timeout":
        await asyncio.sleep(float(request.query_params.get("timeout_s", "30")))
        return PlainTextResponse("too late", 504)
    if kind == "truncate":
        # Promise more bytes than are sent: the client sees an incomplete body.
        return Response(b'{"data": [{"id": 1, "na', 200, headers={"Content-Length": "4096"},
                        media_type="application/json")
    if kind == "bad_json":
        return Response(b"<html>not json</html>", 200, media_type="application/json")
    return _reset_mid_body()


def _reset_mid_body() -> Response:
    """Start a 200 answer, then drop the connection in the middle of the body."""

    async def body():
        yield b'{"data": ['
        raise ResetConnection("injected connection reset")

    return StreamingResponse(body(), 200, media_type="application/json")


def fault_json(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
