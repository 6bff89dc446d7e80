"""JSON APIs for the API ETL pipeline (placeholder, replaced by the API ETL work)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def customers(request: Request) -> Response:
    return JSONResponse({"data": [{"id": 1, "name": "Ada"}], "meta": {"page": 1, "pages": 1}})


def routes() -> list[Route]:
    return [Route("/api/customers", customers)]
