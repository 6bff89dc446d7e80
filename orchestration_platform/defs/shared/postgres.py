"""The PostgreSQL resource (psycopg 3) shared by every domain."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import psycopg


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL reached with psycopg 3. The URL holds the password: bind it with `dg.EnvVar`."""

    url: str = Field(description="postgresql://USER:PASSWORD@HOST:PORT/DB (from the POSTGRES_URL secret)")
    application_name: str = "orchestration_platform"
    connect_timeout_s: int = 10

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A connection that commits on success and rolls back on error, then closes."""
        import psycopg  # here, not at module scope: it costs ~0.1 s on every code-location load

        conn = psycopg.connect(
            self.url,
            autocommit=autocommit,
            application_name=self.application_name,
            connect_timeout=self.connect_timeout_s,
        )
        try:
            with conn:
                yield conn
        finally:
            conn.close()
