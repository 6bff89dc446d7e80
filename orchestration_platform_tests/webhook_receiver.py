"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Webhook:
    url: str  # base URL; alerts may be posted to any path below it
    received: list[dict] = field(default_factory=list)  # {"path": ..., "body": parsed JSON}, in arrival order


@contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    """A running receiver; stopped on exit. It answers 204 to every POST."""
    hook = Webhook(url="")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
