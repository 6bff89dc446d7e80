"""The review page app: `GET /` lists pending model approvals, `POST /decide` records a decision.

Run it with `orchestration-platform review --port 8790` (locally; `make dev` starts it with a development
identity) or `uvicorn orchestration_platform.review.app:app` behind the sign-in proxy (Kubernetes).
The reviewer is whoever the proxy says signed in (see `identity.py`); decisions go through the same
`decide()` as the CLI, into the same tables and audit trail, so the deployment sensor acts on them.

CSRF: a random per-session value in an HttpOnly SameSite=Strict cookie and, in each form, an HMAC of it
and the signed-in user (key REVIEW_SESSION_KEY, a secret; random per process if unset). POST only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from urllib.parse import parse_qs

import psycopg
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from orchestration_platform.lib.ml.approval_policy import ApprovalPolicy, PolicyError, Reviewer
from orchestration_platform.lib.ml.approvals import (
    ApprovalError,
    decide,
    ensure_approval_schema,
    pending,
    votes,
)
from orchestration_platform.review.identity import NotThroughProxy, ProxyTrust
from orchestration_platform.review.page import approval_card, render

log = logging.getLogger("orchestration_platform.review")
SESSION_COOKIE = "review_session"
MAX_FORM_BYTES = 16_384


def _postgres_url() -> str:
    url = os.environ.get("POSTGRES_URL", "").strip()
    if not url:
        raise RuntimeError("POSTGRES_URL is not set: the review page reads ml.model_approvals from it")
    return url


def create_app(trust: ProxyTrust | None = None, session_key: bytes | None = None) -> FastAPI:
    """The app; identity trust and the CSRF key come from the environment unless given."""
    trust = trust or ProxyTrust.from_env()
    key = session_key or os.environ.get("REVIEW_SESSION_KEY", "").encode() or secrets.token_bytes(32)
    ApprovalPolicy.from_env()  # a bad policy fails at start, not at the first click
    app = FastAPI(title="Model approvals", docs_url=None, redoc_url=None, openapi_url=None)

    def token(session: str, reviewer: Reviewer) -> str:
        return hmac.new(key, f"{session}|{reviewer.label}".encode(), hashlib.sha256).hexdigest()

    def who(request: Request) -> Reviewer:
        return trust.identify(request.headers, request.client.host if request.client else None)

    def page(request: Request, reviewer: Reviewer, message: str = "", refused: bool = False, status: int = 200):
        policy = ApprovalPolicy.from_env()
        session = request.cookies.get(SESSION_COOKIE) or secrets.token_urlsafe(32)
        with psycopg.connect(_postgres_url(), connect_timeout=10, autocommit=True) as conn:
            ensure_approval_schema(conn)
            cards = [
                approval_card(a, [v["reviewer"] for v in votes(conn, a.id)], token(session, reviewer))
                for a in pending(conn)
            ]
        response = HTMLResponse(
            render(reviewer=reviewer, cards=cards, policy=policy.describe(), message=message, refused=refused),
            status_code=status,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                     "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"},
        )  # fmt: skip
        secure = request.headers.get("x-forwarded-proto", request.url.scheme) == "https"
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", secure=secure)
        return response

    @app.exception_handler(NotThroughProxy)
    async def refused_identity(request: Request, error: NotThroughProxy):
        log.warning("refused %s %s: %s", request.method, request.url.path, error)
        return PlainTextResponse(str(error), status_code=403)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        """The pending approvals, for the signed-in reviewer."""
        return page(request, who(request))

    @app.post("/decide", response_class=HTMLResponse)
    async def decide_version(request: Request):
        """Approve or reject one version as the signed-in reviewer (CSRF-checked)."""
        reviewer = who(request)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return PlainTextResponse(f"form larger than {MAX_FORM_BYTES} bytes", status_code=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=10).items()}
        model_name, version = form.get("model_name", "")[:200], form.get("version", "")[:50]
        session = request.cookies.get(SESSION_COOKIE, "")
        if not session or not hmac.compare_digest(form.get("csrf_token", ""), token(session, reviewer)):
            log.warning("refused a decision on %s version %s by %s: bad form token", model_name, version, reviewer.name)
            return PlainTextResponse(
                "this form is stale or was not sent from the review page (session check failed): reload the page "
                "and decide again",
                status_code=403,
            )
        return await run_in_threadpool(
            record, request, reviewer, model_name, version, form.get("decision", ""), form.get("comment", "")
        )

    def record(request: Request, reviewer: Reviewer, model_name: str, version: str, decision: str, comment: str):
        try:
            with psycopg.connect(_postgres_url(), connect_timeout=10, autocommit=True) as conn:
                approval = decide(conn, model_name=model_name, version=version, decision=decision,
                                  reviewer=reviewer, comment=comment[:2000], source="review-page")  # fmt: skip
        except (ApprovalError, PolicyError) as error:
            log.info("refused: %s", error)
            return page(request, reviewer, f"Refused: {error}", refused=True, status=409)
        if approval.status == "pending":
            message = f"Your approval of version {approval.version} is recorded; it needs {approval.approvals_required}."
        else:
            message = f"Version {approval.version} is {approval.status} (by {approval.reviewer})."
        log.info("%s version %s: %s by %s", model_name, version, decision, reviewer.label)
        return page(request, reviewer, message)

    return app


def __getattr__(name: str):
    # `uvicorn orchestration_platform.review.app:app`: built on first access, from the environment.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
