"""A hostile HTTP server for tests: every way another system's server can misbehave, at the byte level.

Raw asyncio streams (no framework), so it can lie about lengths, trickle bytes, drop connections.
Every path takes `as=json` (default) or `as=csv`, which picks the content type and the body's shape. The
first path segment names the case, so a client that appends its own paths (`/trickle/healthz`) gets it too;
the method (GET, POST) does not matter.

| path                | what it does                                                                    |
|---------------------|---------------------------------------------------------------------------------|
| /ok                 | a small, valid answer                                                           |
| /compressed         | a valid answer, `enc=gzip` (two gzip members), `deflate` or `raw_deflate`       |
| /needs_auth         | 401 unless `Authorization: Bearer hdr-secret`, then a valid answer              |
| /trickle            | headers at once, then one body byte every `interval` s (default 0.5), for ever   |
| /trickle_headers    | the status line, then one header byte every `interval` s, for ever              |
| /endless            | a body that never ends (no Content-Length, 1 MiB writes)                        |
| /bomb               | a small gzip body inflating to `gib` GiB (default 8), generated while sending   |
| /deep               | JSON nested `depth` levels (default 100000)                                     |
| /huge_string        | JSON with one string of `mb` MB (default 100)                                   |
| /huge_length        | announces a Content-Length of 1 TB                                              |
| /lying_length       | announces 100000 bytes, sends 100, closes                                       |
| /drop               | announces 1 MB, sends 64 KiB, then resets the connection (RST)                  |
| /wrong_type         | a 200 text/html page                                                            |
| /redirect_loop      | 302 to itself with a new query, for ever                                        |
| /redirect_file      | 302 to file:///etc/passwd                                                       |
| /redirect_ftp       | 302 to ftp://127.0.0.1/data.csv                                                 |
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import zlib
from urllib.parse import parse_qs, urlsplit

MiB = 1 << 20
MAX_CONNECTION_S = 300  # a misbehaving answer ends after this long even if the client never hangs up
CSV_HEADER = b"report_id,region,reported_at,confirmed_cases\n"
CSV_ROW = b"1,north,2026-04-02,3\n"
JSON_ROW = b'{"id": 1, "name": "x"}, '


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _kind(csv: bool) -> str:
    return "text/csv" if csv else "application/json"


def _stream(csv: bool) -> tuple[bytes, bytes]:
    """(start, repeated unit) of an endless valid-looking body."""
    return (CSV_HEADER, CSV_ROW) if csv else (b'{"data": [', JSON_ROW)


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _compressed(body: bytes, encoding: str) -> tuple[bytes, str]:
    if encoding == "gzip":  # two members, as concatenated gzip files are
        half = len(body) // 2
        return zlib.compress(body[:half], wbits=31) + zlib.compress(body[half:], wbits=31), "gzip"
    return zlib.compress(body, wbits=15 if encoding == "deflate" else -15), "deflate"


async def _respond(path: str, query: dict[str, str], writer: asyncio.StreamWriter,
                   headers: dict[str, str] | None = None) -> None:
    csv = query.get("as") == "csv"
    interval = float(query.get("interval", "0.5"))
    close = {"Connection": "close"}
    if path == "/ok":
        body = CSV_HEADER + CSV_ROW if csv else b'{"data": [{"id": 1, "name": "x"}]}'
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Length": str(len(body))}) + body)
    elif path == "/compressed":
        rows = b"".join(b"%d,north,2026-04-02,%d\n" % (i, i) for i in range(5000))
        json_rows = b", ".join(b'{"id": %d, "name": "n%d"}' % (i, i) for i in range(5000))
        body, encoding = _compressed(CSV_HEADER + rows if csv else b'{"data": [' + json_rows + b"]}",
                                     query.get("enc", "gzip"))
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Encoding": encoding,
                                             "Content-Length": str(len(body))}) + body)
    elif path == "/needs_auth":
        if (headers or {}).get("authorization") != "Bearer hdr-secret":
            await _send(writer, _head("401 Unauthorized", {"Content-Length": "0"}))
        else:
            await _respond("/ok", query, writer)
    elif path == "/trickle":
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Length": "1000000", **close}))
        start, _ = _stream(csv)
        for index in range(1_000_000):
            await _send(writer, start[index % len(start):][:1] or b" ")
            await asyncio.sleep(interval)
    elif path == "/trickle_headers":
        await _send(writer, b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            await _send(writer, b"a")
            await asyncio.sleep(interval)
    elif path == "/endless":
        start, unit = _stream(csv)
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), **close}) + start)
        block = unit * (MiB // len(unit))
        while True:
            await _send(writer, block)
    elif path == "/bomb":
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Encoding": "gzip", **close}))
        start, unit = _stream(csv)
        # After a full flush the compressor forgets its history, so one compressed 1 MiB block can be sent
        # again and again: GiBs inflated for a few KB sent each, never held in memory on either side.
        gzip = zlib.compressobj(9, zlib.DEFLATED, 31)
        first = gzip.compress(start) + gzip.flush(zlib.Z_FULL_FLUSH)
        block = gzip.compress(unit * (MiB // len(unit))) + gzip.flush(zlib.Z_FULL_FLUSH)
        await _send(writer, first)
        for _ in range(int(float(query.get("gib", "8")) * 1024)):
            await _send(writer, block)
    elif path == "/deep":
        depth = int(query.get("depth", "100000"))
        body = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
        await _send(writer, _head("200 OK", {"Content-Type": "application/json", "Content-Length": str(len(body))})
                    + body)
    elif path == "/huge_string":
        size = int(float(query.get("mb", "100")) * 1e6)
        start, end = b'{"data": [{"id": 1, "name": "', b'"}]}'
        await _send(writer, _head("200 OK", {"Content-Type": "application/json",
                                             "Content-Length": str(len(start) + size + len(end))}) + start)
        block = b"x" * MiB
        for offset in range(0, size, MiB):
            await _send(writer, block[: min(MiB, size - offset)])
        await _send(writer, end)
    elif path == "/huge_length":
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Length": str(10**12)}))
        start, unit = _stream(csv)
        await _send(writer, start + unit * 100)
        await asyncio.sleep(MAX_CONNECTION_S)
    elif path == "/lying_length":
        start, unit = _stream(csv)
        body = (start + unit * 10)[:100]
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Length": "100000"}) + body)
        writer.close()  # the connection ends 99900 bytes short of what was announced
    elif path == "/drop":
        start, unit = _stream(csv)
        body = (start + unit * 10000)[: 64 * 1024]
        await _send(writer, _head("200 OK", {"Content-Type": _kind(csv), "Content-Length": str(MiB)}) + body)
        raw = writer.get_extra_info("socket")
        if raw is not None:  # linger 0: close() sends RST, the client sees a reset mid-body
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    elif path == "/wrong_type":
        body = b"<!doctype html><html><body>Please log in</body></html>"
        await _send(writer, _head("200 OK", {"Content-Type": "text/html; charset=utf-8",
                                             "Content-Length": str(len(body))}) + body)
    elif path.startswith("/redirect_"):
        n = int(query.get("n", "0"))
        suffix = f"as={'csv' if csv else 'json'}"
        location = {"/redirect_loop": f"/redirect_loop?n={n + 1}&{suffix}", "/redirect_file": "file:///etc/passwd",
                    "/redirect_ftp": "ftp://127.0.0.1/data.csv"}.get(path, "/ok")
        await _send(writer, _head("302 Found", {"Location": location, "Content-Length": "0"}))
    else:
        await _send(writer, _head("404 Not Found", {"Content-Length": "0"}))


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(MAX_CONNECTION_S):
            while True:  # keep-alive: several requests may come on one connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ", 2)[1]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                parts = urlsplit(target)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                case = "/" + parts.path.split("/")[1]  # `/trickle/version` is the trickle case too (any client path)
                await _respond(case, query, writer, headers)
                if writer.is_closing():
                    return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, IndexError,
            asyncio.CancelledError):  # cancelled: the server is stopping
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class HostileServer:
    """The server on 127.0.0.1 and a free port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-http", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(_handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    def start(self) -> HostileServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile HTTP server did not start within 10 s")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
