"""The API endpoints config: a YAML file that lists JSON APIs, validated into typed models.

Every error names the endpoint, the field, the value and the fix, e.g.
`endpoint 'users; drop table x', field 'name': 'users; drop table x' is not a safe SQL
identifier; fix: use lowercase letters, digits and _ ...`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Lowercase so tables never need quoting by hand; 40 chars leaves room for suffixes within 63.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")
RESERVED_NAMES = {"loads"}

# Declared column type -> PostgreSQL type of the published column.
COLUMN_TYPES: dict[str, str] = {
    "integer": "bigint",
    "float": "double precision",
    "numeric": "numeric",
    "text": "text",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "date": "date",
    "json": "jsonb",
}


class EndpointConfigError(ValueError):
    """The endpoints config cannot be used; the message lists every problem and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Strict):
    """An auth header whose value is read from an environment variable (never from the file)."""

    header: str = "Authorization"
    env: str = Field(description="name of the environment variable that holds the secret")
    scheme: str | None = Field(default="Bearer", description="prefix such as 'Bearer'; null sends the value as is")

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_VAR.match(value):
            raise ValueError("must be an environment variable NAME; fix: e.g. DEMO_API_TOKEN, never the secret itself")
        return value


class NoPagination(_Strict):
    type: Literal["none"] = "none"


class CursorPagination(_Strict):
    """The response carries the next cursor; the next request sends it back as a query param."""

    type: Literal["cursor"]
    cursor_param: str = "cursor"
    next_cursor_path: str = Field(description="dotted path of the next cursor in the response, e.g. meta.next_cursor")


class PagePagination(_Strict):
    """Numbered pages: stops at the last page (from `total_pages_path`) or at the first empty page."""

    type: Literal["page"]
    page_param: str = "page"
    page_size_param: str | None = "per_page"
    page_size: int = Field(default=100, ge=1, le=100_000)
    first_page: int = 1
    total_pages_path: str | None = None


class LinkPagination(_Strict):
    """RFC 8288 `Link: <url>; rel="next"` headers, as GitHub's API sends them."""

    type: Literal["link"]


Pagination = Annotated[
    NoPagination | CursorPagination | PagePagination | LinkPagination, Field(discriminator="type")
]


class IncrementalConfig(_Strict):
    """Only ask for records changed since the newest `field` already published, then upsert them."""

    field: str
    param: str = "updated_since"


class EndpointConfig(_Strict):
    """One JSON API endpoint, published as the table `api.<name>` (asset key `["api", name]`)."""

    name: str
    description: str = ""
    url: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    records_path: str = Field(default="", description="dotted path of the records list; empty = the body itself")
    pagination: Pagination = Field(default_factory=NoPagination)
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, str] = Field(min_length=1)
    incremental: IncrementalConfig | None = None
    max_reject_rate: float = Field(default=0.05, ge=0, le=1)
    min_rows: int = Field(default=1, ge=0)
    max_row_drop: float = Field(default=0.5, ge=0, le=1, description="largest allowed drop vs the previous load")
    freshness_hours: float = Field(default=24, gt=0)
    max_pages: int = Field(default=10_000, ge=1)
    # Read limits of this endpoint's requests; unset = the `defaults:` values (see README "Limits").
    deadline_s: float | None = Field(default=None, gt=0, description="whole request incl. body, seconds")
    max_response_bytes: int | None = Field(default=None, ge=1, description="body cap, as received and inflated")
    max_json_depth: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            suggestion = re.sub(r"[^a-z0-9_]+", "_", value.lower()).strip("_")[:40] or "my_endpoint"
            if not suggestion[0].isalpha():
                suggestion = f"e_{suggestion}"[:40]
            raise ValueError(
                "is not a safe SQL identifier; fix: use 1-40 lowercase letters, digits and _, "
                f"starting with a letter (e.g. {suggestion!r})"
            )
        if value in RESERVED_NAMES:
            raise ValueError(f"is reserved for the platform's own tables; fix: choose another name (e.g. '{value}_api')")
        return value

    @field_validator("columns")
    @classmethod
    def _column_types(cls, value: dict[str, str]) -> dict[str, str]:
        for column, kind in value.items():
            if not IDENTIFIER.match(column):
                raise ValueError(
                    f"column name {column!r} is not a safe SQL identifier; fix: use lowercase letters, digits and _"
                )
            if kind not in COLUMN_TYPES:
                raise ValueError(f"column {column!r} has unknown type {kind!r}; fix: use one of {', '.join(COLUMN_TYPES)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith(("http://", "https://", "/"))):
            raise ValueError("is not a URL; fix: use an http(s):// URL or a path starting with / (resolved against DEMO_SOURCES_URL)")
        if urlsplit(value).password is not None or "@" in urlsplit(value).netloc:
            # The URL is shown in the UI and in errors; credentials belong in the environment.
            raise ValueError("carries credentials; fix: remove them from the URL and use auth: {env: VAR_NAME}")
        return value

    @model_validator(mode="after")
    def _keys_declared(self) -> EndpointConfig:
        missing = [key for key in self.primary_key if key not in self.columns]
        if missing:
            raise ValueError(
                f"primary_key {missing} not among the declared columns {list(self.columns)}; fix: declare them under columns"
            )
        if self.incremental and self.incremental.field not in self.columns:
            raise ValueError(
                f"incremental.field {self.incremental.field!r} is not a declared column; fix: declare it under columns"
            )
        return self

    def resolved_url(self, base_url: str) -> str:
        """The absolute URL: paths starting with / are resolved against the demo sources server."""
        return urljoin(base_url.rstrip("/") + "/", self.url.lstrip("/")) if self.url.startswith("/") else self.url


class ExtractDefaults(_Strict):
    """How the whole extraction behaves: concurrency, per-host rate limit, timeouts and retries."""

    concurrency: int = Field(default=32, ge=1, le=1000)
    requests_per_second_per_host: float = Field(default=200, gt=0)
    timeout_s: float = Field(default=15, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30, ge=0)
    retry_after_max_s: float = Field(default=60, ge=0)
    deadline_s: float = Field(default=120, gt=0, description="whole request incl. body, seconds (timeout_s is per read)")
    max_response_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="body cap, as received and inflated")
    max_json_depth: int = Field(default=100, ge=1, le=10_000)
    max_redirects: int = Field(default=5, ge=1, le=50)
    database_concurrency: int = Field(default=4, ge=1, le=64)


class EndpointsConfig(_Strict):
    defaults: ExtractDefaults = Field(default_factory=ExtractDefaults)
    endpoints: list[EndpointConfig] = Field(min_length=1)

    def by_name(self) -> dict[str, EndpointConfig]:
        return {endpoint.name: endpoint for endpoint in self.endpoints}


_FIX_BY_ERROR = {
    "missing": "add it (see docs/api_endpoints.example.yaml)",
    "extra_forbidden": "remove it or check its spelling (see docs/api_endpoints.example.yaml)",
    "union_tag_invalid": "use pagination type none, cursor, page or link",
    "union_tag_not_found": "set pagination.type to none, cursor, page or link",
}


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = list(error["loc"])
    where = "config"
    if len(loc) >= 2 and loc[0] == "endpoints" and isinstance(loc[1], int):
        items = raw.get("endpoints") or []
        item = items[loc[1]] if loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        where = f"endpoint {name!r}" if name else f"endpoint #{loc[1] + 1}"
        loc = loc[2:]
    # Drop the discriminator tag pydantic inserts in union paths (pagination.cursor.x -> pagination.x).
    loc = [part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1] == "pagination" and part in
                                                      ("none", "cursor", "page", "link"))]
    field = ".".join(str(part) for part in loc) or "(whole entry)"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if field == "url" and isinstance(value, str) and "@" in urlsplit(value).netloc:
        parts = urlsplit(value)  # never echo credentials back
        value = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
    fix = _FIX_BY_ERROR.get(error["type"], "" if "fix:" in message else "see docs/api_endpoints.example.yaml")
    shown = "" if error["type"] == "missing" or isinstance(value, dict | list) else f": value {value!r}"
    return f"{where}, field {field!r}{shown}: {message}" + (f"; fix: {fix}" if fix else "")


def parse_endpoints_config(raw: Any, source: str = "endpoints config") -> EndpointsConfig:
    """Validate already-parsed YAML; every problem is reported at once, with its fix."""
    if not isinstance(raw, dict) or "endpoints" not in raw:
        raise EndpointConfigError(f"{source}: expected a mapping with an `endpoints:` list (and optional `defaults:`)")
    try:
        config = EndpointsConfig.model_validate(raw)
    except ValidationError as error:
        problems = [_describe(e, raw) for e in error.errors(include_url=False)]
        raise EndpointConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(problems)) from None
    seen: dict[str, int] = {}
    for index, endpoint in enumerate(config.endpoints, start=1):
        if endpoint.name in seen:
            raise EndpointConfigError(
                f"{source} is invalid:\n  - endpoint {endpoint.name!r}, field 'name': value {endpoint.name!r} is used by "
                f"endpoints #{seen[endpoint.name]} and #{index}; fix: give each endpoint its own name (one table each)"
            )
        seen[endpoint.name] = index
    return config


def read_endpoints_yaml(path: Path) -> Any:
    """The endpoints file at `path` as plain data (libyaml's parser when present: ~5x faster on 100 endpoints)."""
    if not path.is_file():
        raise EndpointConfigError(
            f"endpoints file {str(path)!r} does not exist; fix: point API_ENDPOINTS_CONFIG (or `endpoints_file:` "
            "in defs/api_etl/endpoints/defs.yaml) at a YAML file, see docs/api_endpoints.example.yaml"
        )
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise EndpointConfigError(f"endpoints file {str(path)!r} is not valid YAML: {error}") from None


def load_endpoints_config(path: Path) -> EndpointsConfig:
    """Read and validate the endpoints YAML file at `path`."""
    return parse_endpoints_config(read_endpoints_yaml(path), source=f"endpoints file {str(path)!r}")
