"""A small real authenticating reverse proxy for the tests (stands in for oauth2-proxy + SSO).

It signs people in with HTTP Basic against a fixed user table, drops any identity or secret header the
client sent, injects the signed-in user's X-Forwarded-User / -Email / -Groups and the shared secret, and
forwards the request to the review app. Run: `python -m orchestration_platform_tests.review.signin_proxy
PORT UPSTREAM` with REVIEW_PROXY_SECRET and SIGNIN_USERS (JSON: user -> [password, email, groups]) in the
environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

STRIPPED = {"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-review-proxy-secret",
            "authorization", "host", "content-length", "connection"}  # fmt: skip


def make_handler(upstream: str, secret: str, users: dict[str, list]) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        def _user(self):
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            entry = users.get(name)
            return (name, entry[1], entry[2]) if entry and entry[0] == password else None

        def _forward(self):
            user = self._user()
            if user is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="sign in"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in STRIPPED}
            headers |= {"X-Forwarded-User": user[0], "X-Forwarded-Email": user[1],
                        "X-Forwarded-Groups": ",".join(user[2]), "X-Review-Proxy-Secret": secret}  # fmt: skip
            # A client per request: a shared one would keep one user's cookies for the next.
            with httpx.Client(base_url=upstream, timeout=30, follow_redirects=False) as client:
                response = client.request(self.command, self.path, headers=headers, content=body)
            self.send_response(response.status_code)
            for key, value in response.headers.multi_items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_POST = _forward

        def log_message(self, *args):
            pass

    return Proxy


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    users = json.loads(os.environ["SIGNIN_USERS"])
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(upstream, os.environ["REVIEW_PROXY_SECRET"], users))
    server.serve_forever()


if __name__ == "__main__":
    main()
