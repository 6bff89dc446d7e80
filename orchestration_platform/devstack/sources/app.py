"""The demo sources app: one Starlette application that serves every demo source.

Routes:
- `/csv/daily_cases/{date}.csv`: a messy daily CSV for that date (see `csv_feed`).
- `/api/...`: JSON APIs for the API ETL pipeline (see `json_api`).
- `/healthz`: liveness.
- `POST /_faults/reset`: forget the `fault_times` counters (tests call it between cases).
Every route honours the fault-injection parameters of `faults`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from orchestration_platform.devstack.sources import csv_feed, json_api
from orchestration_platform.devstack.sources.faults import FaultCounter, apply_latency, injected_fault


def build_sources_app(*, faults_enabled: bool = True) -> Starlette:
    counter = FaultCounter()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def reset_faults(request: Request) -> Response:
        counter.reset()
        return PlainTextResponse("reset")

    class FaultMiddleware(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next):
            await apply_latency(request)
            if faults_enabled:
                fault = await injected_fault(request, counter)
                if fault is not None:
                    return fault
            return await call_next(request)

    routes = [
        Route("/healthz", healthz),
        Route("/_faults/reset", reset_faults, methods=["POST"]),
        *csv_feed.routes(),
        *json_api.routes(),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(FaultMiddleware)
    return app
