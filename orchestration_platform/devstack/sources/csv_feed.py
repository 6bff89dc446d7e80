"""Messy daily CSV files for the ingestion pipeline (placeholder, replaced by the ingestion work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def daily_cases(request: Request) -> Response:
    date = request.path_params["date"]
    body = f"report_id,region,reported_at,confirmed_cases\r\n1,north,{date},3\r\n"
    return Response(body.encode(), media_type="text/csv")


def routes() -> list[Route]:
    return [Route("/csv/daily_cases/{date}.csv", daily_cases)]
