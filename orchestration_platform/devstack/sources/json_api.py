"""Deterministic demo JSON APIs for the API ETL pipeline, one per pagination style.

| route | pagination | records path | notes |
|---|---|---|---|
| `/api/customers` | cursor (`cursor`, `limit`) | `data`, next at `meta.next_cursor` | incremental `updated_since`; `version=N` changes rows |
| `/api/orders` | page number (`page`, `per_page`) | `orders`, `total_pages` | a few bad records (kept deterministic) |
| `/api/products` | `Link: <...>; rel="next"` (`page`, `per_page`) | the body is the list | |
| `/api/partners` | none | `data` | needs `Authorization: Bearer $DEMO_API_TOKEN` (default `demo-token`) |
| `/api/synthetic/{name}` | page number | `data` | `records=N`, `bad_every=K`, `dup_every=K` |

Every route accepts `drift=1` (the source renames `email`/`amount` and adds a field, as an
upstream release would) and the fault-injection params of `faults`. Handlers never block the
event loop: 100 slow requests are served together.
"""

from __future__ import annotations

import base64
import hmac
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
CUSTOMERS = 300
ORDERS = 1_000
PRODUCTS = 120
REGIONS = ("north", "south", "east", "west")
DEFAULT_TOKEN = "demo-token"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _int_param(request: Request, name: str, default: int, low: int = 0, high: int = 10_000_000) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"query param {name}={raw!r} must be an integer from {low} to {high}")
    return int(raw)


def _drifted(request: Request) -> bool:
    return request.query_params.get("drift") in ("1", "true")


def _bad_request(error: ValueError) -> Response:
    return JSONResponse({"error": str(error)}, 400)


def customer(number: int, version: int) -> dict[str, Any]:
    """Customer `number`; from `version` 2 on, every 10th customer changed (newer updated_at, new tier)."""
    changed = version >= 2 and number % 10 == 0
    updated = BASE_TIME + timedelta(hours=number) + (timedelta(days=30 * (version - 1)) if changed else timedelta())
    return {
        "id": number,
        "name": f"Customer {number}",
        "email": f"customer{number}@example.com",
        "region": REGIONS[number % len(REGIONS)],
        "tier": f"gold-v{version}" if changed else "standard",
        "created_at": _iso(BASE_TIME + timedelta(hours=number)),
        "updated_at": _iso(updated),
    }


def _customers_for(version: int) -> list[dict[str, Any]]:
    # Version N adds 20 * (N - 1) new customers to the base set.
    return [customer(n, version) for n in range(1, CUSTOMERS + 20 * (version - 1) + 1)]


def _drift_customer(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    record["email_address"] = record.pop("email")
    record["marketing_opt_in"] = True
    return record


async def customers(request: Request) -> Response:
    """Cursor pagination: `?cursor=<opaque>&limit=N`; `updated_since=ISO` returns only newer rows."""
    try:
        limit = _int_param(request, "limit", 100, 1, 1000)
        version = _int_param(request, "version", 1, 1, 100)
        offset = int(base64.urlsafe_b64decode(request.query_params.get("cursor", "") + "==") or b"0")
    except ValueError as error:
        return _bad_request(error)
    rows = _customers_for(version)
    since = request.query_params.get("updated_since")
    if since:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            return _bad_request(ValueError(f"updated_since={since!r} is not an ISO-8601 timestamp"))
        rows = [r for r in rows if datetime.fromisoformat(r["updated_at"].replace("Z", "+00:00")) > moment]
    page = rows[offset : offset + limit]
    if _drifted(request):
        page = [_drift_customer(r) for r in page]
    following = offset + limit
    next_cursor = base64.urlsafe_b64encode(str(following).encode()).decode().rstrip("=") if following < len(rows) else None
    return JSONResponse({"data": page, "meta": {"next_cursor": next_cursor, "count": len(page)}})


def order(number: int) -> dict[str, Any]:
    """Order `number`; every 97th is bad (amount 'n/a'), every 331st has no customer_id."""
    record: dict[str, Any] = {
        "order_id": number,
        "customer_id": 1 + (number * 7) % CUSTOMERS,
        "amount": round(5 + (number * 37 % 1000) / 10, 2),
        "currency": "EUR",
        "status": ("placed", "shipped", "delivered")[number % 3],
        "ordered_at": _iso(BASE_TIME + timedelta(minutes=17 * number)),
    }
    if number % 97 == 0:
        record["amount"] = "n/a"
    if number % 331 == 0:
        del record["customer_id"]
    return record


async def orders(request: Request) -> Response:
    """Page-number pagination: `?page=N&per_page=M`; the answer says `total_pages`."""
    try:
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 100, 1, 1000)
    except ValueError as error:
        return _bad_request(error)
    start = (page - 1) * per_page
    rows = [order(n) for n in range(start + 1, min(start + per_page, ORDERS) + 1)]
    if _drifted(request):
        for row in rows:
            row["total"] = row.pop("amount")
    total_pages = -(-ORDERS // per_page)
    return JSONResponse({"orders": rows, "page": page, "per_page": per_page, "total_pages": total_pages})


def product(number: int) -> dict[str, Any]:
    return {
        "sku": f"SKU-{number:05d}",
        "title": f"Product {number}",
        "price": round(1 + number * 0.75, 2),
        "in_stock": number % 4 != 0,
        "attributes": {"weight_g": 100 + number, "colour": ("red", "green", "blue")[number % 3]},
    }


async def products(request: Request) -> Response:
    """Link-header pagination: the body is a bare list; the next page is in `Link: <url>; rel="next"`."""
    try:
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 25, 1, 1000)
    except ValueError as error:
        return _bad_request(error)
    start = (page - 1) * per_page
    rows = [product(n) for n in range(start + 1, min(start + per_page, PRODUCTS) + 1)]
    if _drifted(request):
        for row in rows:
            row["cost"] = row.pop("price")
    headers = {}
    if start + per_page < PRODUCTS:
        params = dict(request.query_params) | {"page": str(page + 1), "per_page": str(per_page)}
        headers["Link"] = f'<{request.url.replace(query=urlencode(params))}>; rel="next"'
    return JSONResponse(rows, headers=headers)


async def partners(request: Request) -> Response:
    """Bearer-token protected: 401 without `Authorization: Bearer <DEMO_API_TOKEN>`."""
    expected = f"Bearer {os.environ.get('DEMO_API_TOKEN') or DEFAULT_TOKEN}"
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return JSONResponse({"error": "missing or wrong bearer token"}, 401, headers={"WWW-Authenticate": "Bearer"})
    rows = [{"partner_id": n, "name": f"Partner {n}", "country": ("DE", "FR", "NL")[n % 3]} for n in range(1, 21)]
    return JSONResponse({"data": rows})


def synthetic_record(name: str, number: int, bad_every: int, dup_every: int) -> dict[str, Any]:
    record_id = number - 1 if dup_every and number % dup_every == 0 and number > 1 else number
    record: dict[str, Any] = {
        "id": record_id,
        "name": f"{name}-{number}",
        "amount": (number * 7919) % 100_000 / 100,
        "active": number % 2 == 0,
        "created_at": _iso(BASE_TIME + timedelta(seconds=number)),
    }
    if bad_every and number % bad_every == 0:
        record["amount"] = "not-a-number"
    return record


async def synthetic(request: Request) -> Response:
    """`/api/synthetic/{name}?records=N&page=P&per_page=M`: N generated records (for benchmarks)."""
    name = request.path_params["name"]
    try:
        total = _int_param(request, "records", 100)
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", 1000, 1, 1_000_000)
        bad_every = _int_param(request, "bad_every", 0)
        dup_every = _int_param(request, "dup_every", 0)
    except ValueError as error:
        return _bad_request(error)
    start = (page - 1) * per_page
    rows = [synthetic_record(name, n, bad_every, dup_every) for n in range(start + 1, min(start + per_page, total) + 1)]
    if _drifted(request):
        for row in rows:
            row["value"] = row.pop("amount")
    return JSONResponse({"data": rows, "total_pages": max(1, -(-total // per_page))})


def routes() -> list[Route]:
    return [
        Route("/api/customers", customers),
        Route("/api/orders", orders),
        Route("/api/products", products),
        Route("/api/partners", partners),
        Route("/api/synthetic/{name}", synthetic),
    ]
