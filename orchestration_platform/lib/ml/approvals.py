"""The human approval gate: one pending approval per offered model version, decided by a person.

State lives in PostgreSQL (`ml.model_approvals`), so waiting holds no process and survives any
restart; every change is appended to `ml.approval_audit` (who, when, what, from where), which the
Dagster sensor reports as materializations visible in the UI. Pending approvals expire after their
time to live; a newer candidate supersedes older pending ones. Only an `approved` row whose version
AND fingerprint match may deploy (`authorize_deployment`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

APPROVALS_DDL = """
CREATE SCHEMA IF NOT EXISTS ml;
CREATE TABLE IF NOT EXISTS ml.model_approvals (
    id bigserial PRIMARY KEY,
    model_name text NOT NULL, version text NOT NULL, fingerprint text NOT NULL,
    status text NOT NULL CHECK (status IN
        ('pending', 'approved', 'rejected', 'expired', 'superseded', 'deployed', 'rolled_back')),
    metrics jsonb NOT NULL DEFAULT '{}', requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL, decided_at timestamptz, reviewer text, comment text,
    deployed_at timestamptz, UNIQUE (model_name, version)
);
CREATE TABLE IF NOT EXISTS ml.approval_audit (
    id bigserial PRIMARY KEY, approval_id bigint NOT NULL REFERENCES ml.model_approvals (id),
    model_name text NOT NULL, version text NOT NULL, action text NOT NULL, actor text NOT NULL,
    comment text, source text NOT NULL, details jsonb NOT NULL DEFAULT '{}', at timestamptz NOT NULL DEFAULT now()
);
"""
DECISIONS = ("approve", "reject")


class ApprovalError(ValueError):
    """A decision or deployment the gate refuses; the message says why and what to do instead."""


@dataclass(frozen=True)
class Approval:
    id: int
    model_name: str
    version: str
    fingerprint: str
    status: str
    metrics: dict[str, Any]
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    reviewer: str | None
    comment: str | None
    deployed_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Approval:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def ensure_approval_schema(conn: psycopg.Connection) -> None:
    """Create the approval tables if missing (use autocommit connections throughout this module)."""
    if conn.execute("SELECT to_regclass('ml.approval_audit')").fetchone()[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ml.approvals.schema'))")
        conn.execute(APPROVALS_DDL)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _audit(conn, approval_id: int, name: str, version: str, action: str, actor: str, comment: str | None,
           source: str, details: dict | None = None) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO ml.approval_audit (approval_id, model_name, version, action, actor, comment, source, details) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (approval_id, name, version, action, actor, comment, source, json.dumps(details or {}, default=str)),
    )


def _get(conn, model_name: str, version: str, *, lock: bool = False) -> Approval | None:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT * FROM ml.model_approvals WHERE model_name = %s AND version = %s"
            + (" FOR UPDATE" if lock else ""),
            (model_name, str(version)),
        )
        .fetchone()
    )
    return Approval.from_row(row) if row else None


def request_approval(
    conn: psycopg.Connection,
    *,
    model_name: str,
    version: str,
    fingerprint: str,
    ttl: timedelta,
    metrics: dict[str, Any],
    requested_by: str = "dagster",
    now: datetime | None = None,
) -> Approval:
    """Offer `version` for approval (idempotent); older pending versions of the model are superseded."""
    if ttl <= timedelta(0):
        raise ApprovalError(f"approval time to live {ttl} must be positive (ML_APPROVAL_TTL_HOURS)")
    ensure_approval_schema(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ml.approvals:{model_name}",))
        existing = _get(conn, model_name, version)
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise ApprovalError(
                    f"model {model_name!r} version {version} was offered with fingerprint {existing.fingerprint[:12]}, "
                    f"now {fingerprint[:12]}: a registry version must not change; register a new version"
                )
            return existing
        for older in conn.execute(
            "UPDATE ml.model_approvals SET status = 'superseded' WHERE model_name = %s AND status = 'pending' "
            "RETURNING id, version",
            (model_name,),
        ).fetchall():
            _audit(conn, older[0], model_name, older[1], "superseded", requested_by, f"superseded by version {version}",
                   "dagster")  # fmt: skip
        approval_id = conn.execute(
            "INSERT INTO ml.model_approvals (model_name, version, fingerprint, status, metrics, requested_at, expires_at) "
            "VALUES (%s, %s, %s, 'pending', %s, %s, %s) RETURNING id",
            (model_name, str(version), fingerprint, json.dumps(metrics), _now(now), _now(now) + ttl),
        ).fetchone()[0]
        _audit(conn, approval_id, model_name, str(version), "requested", requested_by, None, "dagster",
               {"fingerprint": fingerprint, "expires_at": (_now(now) + ttl).isoformat(), **metrics})  # fmt: skip
    return _get(conn, model_name, version)


def decide(
    conn: psycopg.Connection,
    *,
    model_name: str,
    version: str,
    decision: str,
    reviewer: str,
    comment: str = "",
    source: str,
    now: datetime | None = None,
) -> Approval:
    """Record a person's decision on a pending approval of exactly `version`; raises `ApprovalError` otherwise."""
    if decision not in DECISIONS:
        raise ApprovalError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if not reviewer or not reviewer.strip():
        raise ApprovalError("reviewer is empty: say who decides (e.g. --reviewer alice@example.com)")
    version = str(version).strip()
    ensure_approval_schema(conn)
    with conn.transaction():
        approval = _get(conn, model_name, version, lock=True)
        if approval is None:
            waiting = ", ".join(a.version for a in pending(conn, model_name)) or "none"
            raise ApprovalError(
                f"no approval was requested for model {model_name!r} version {version!r} (pending versions: "
                f"{waiting}); only versions that passed evaluation can be approved"
            )
        if approval.status != "pending":
            who = (
                f" by {approval.reviewer} at {approval.decided_at:%Y-%m-%d %H:%M}Z"
                if approval.reviewer
                else ""
            )
            raise ApprovalError(
                f"model {model_name!r} version {version} is {approval.status}{who}; only pending approvals can "
                "be decided (`orchestration-platform approvals` lists them)"
            )
        if _now(now) >= approval.expires_at:
            conn.execute("UPDATE ml.model_approvals SET status = 'expired' WHERE id = %s", (approval.id,))
            _audit(conn, approval.id, model_name, version, "expired", "system", f"{reviewer} tried to {decision}",
                   source)  # fmt: skip
        else:
            status = "approved" if decision == "approve" else "rejected"
            conn.execute(
                "UPDATE ml.model_approvals SET status = %s, decided_at = %s, reviewer = %s, comment = %s "
                "WHERE id = %s",
                (status, _now(now), reviewer.strip(), comment, approval.id),
            )
            _audit(conn, approval.id, model_name, version, status, reviewer.strip(), comment, source,
                   {"fingerprint": approval.fingerprint})  # fmt: skip
            return _get(conn, model_name, version)
    raise ApprovalError(
        f"the approval of model {model_name!r} version {version} expired at {approval.expires_at:%Y-%m-%d %H:%M}Z; "
        "retrain (or re-run the approval request) to offer it again"
    )


def expire_due(conn: psycopg.Connection, now: datetime | None = None) -> list[Approval]:
    """Mark pending approvals past their time to live as expired (audited); returns them."""
    ensure_approval_schema(conn)
    with conn.transaction():
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                "UPDATE ml.model_approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= %s "
                "RETURNING *",
                (_now(now),),
            )
            .fetchall()
        )
        for row in rows:
            _audit(conn, row["id"], row["model_name"], row["version"], "expired", "system", None, "sensor")
    return [Approval.from_row(r) for r in rows]


def pending(conn: psycopg.Connection, model_name: str | None = None) -> list[Approval]:
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT * FROM ml.model_approvals WHERE status = 'pending' AND (%s::text IS NULL OR model_name = %s) "
            "ORDER BY requested_at",
            (model_name, model_name),
        )
        .fetchall()
    )
    return [Approval.from_row(r) for r in rows]


def approved_waiting(conn: psycopg.Connection) -> list[Approval]:
    """Approved versions not deployed yet (the deployment sensor's work list)."""
    ensure_approval_schema(conn)
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.model_approvals WHERE status = 'approved' ORDER BY decided_at")
        .fetchall()
    )
    return [Approval.from_row(r) for r in rows]


def authorize_deployment(
    conn: psycopg.Connection, *, model_name: str, version: str, fingerprint: str
) -> Approval:
    """The approval that allows deploying exactly this version with exactly these files, or `ApprovalError`."""
    approval = _get(conn, model_name, str(version))
    if approval is None:
        raise ApprovalError(
            f"model {model_name!r} version {version}: no approval exists; it cannot be deployed"
        )
    if approval.status != "approved":
        raise ApprovalError(
            f"model {model_name!r} version {version} is {approval.status}, not approved; it cannot be deployed"
        )
    if approval.fingerprint != fingerprint:
        raise ApprovalError(
            f"model {model_name!r} version {version}: its files hash to {fingerprint[:12]} but the approval was for "
            f"{approval.fingerprint[:12]} (mismatched version); it cannot be deployed"
        )
    return approval


def record_outcome(
    conn: psycopg.Connection, approval: Approval, *, deployed: bool, actor: str, details: dict
) -> None:
    """After a deployment attempt: `deployed`, or `rolled_back` (with the reason in details)."""
    with conn.transaction():
        conn.execute(
            "UPDATE ml.model_approvals SET status = %s, deployed_at = CASE WHEN %s THEN now() END WHERE id = %s",
            ("deployed" if deployed else "rolled_back", deployed, approval.id),
        )
        _audit(conn, approval.id, approval.model_name, approval.version, "deployed" if deployed else "rolled_back",
               actor, None, "dagster", details)  # fmt: skip


def audit_after(conn: psycopg.Connection, after_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """Audit records with id > `after_id`, oldest first (the sensor's cursor)."""
    ensure_approval_schema(conn)
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.approval_audit WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
        .fetchall()
    )
