"""A source's credentials go only to the source: a redirect to another origin does not carry them along.

httpx itself drops only `Authorization` on such a redirect; an API key in a custom header (`X-Api-Key`)
would follow the redirect to whatever host the source names. Two real HTTP servers on 127.0.0.1 (different
ports, so different origins) play the source and the other host.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestration_platform.lib.http import ReadLimits, read_sync

SECRET = "s3cret-api-key"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]
    redirect_to: str | None

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        if self.path.startswith("/hop") and self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"a,b\n1,2\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(redirect_to: str | None = None) -> tuple[ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "redirect_to": redirect_to})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[dict[str, str]]]]:
    server, seen = _serve()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_a_redirect_to_another_origin_drops_the_callers_headers(other_host) -> None:
    other_url, other_seen = other_host
    source, source_seen = _serve(redirect_to=f"{other_url}/data.csv")
    try:
        answer = read_sync(f"http://127.0.0.1:{source.server_port}/hop", ReadLimits(deadline_s=10),
                           headers={"X-Api-Key": SECRET, "Authorization": f"Bearer {SECRET}"})
    finally:
        source.shutdown()
    assert answer.content == b"a,b\n1,2\n"
    assert source_seen[0]["x-api-key"] == SECRET, "the source itself gets its key"
    [followed] = other_seen
    assert "x-api-key" not in followed and "authorization" not in followed
    assert SECRET not in repr(followed)


def test_a_redirect_within_the_origin_keeps_the_callers_headers() -> None:
    source, seen = _serve()
    source.RequestHandlerClass.redirect_to = f"http://127.0.0.1:{source.server_port}/data.csv"
    try:
        answer = read_sync(f"http://127.0.0.1:{source.server_port}/hop", ReadLimits(deadline_s=10),
                           headers={"X-Api-Key": SECRET})
    finally:
        source.shutdown()
    assert answer.content == b"a,b\n1,2\n"
    assert [request["path"] for request in seen] == ["/hop", "/data.csv"]
    assert all(request["x-api-key"] == SECRET for request in seen)
