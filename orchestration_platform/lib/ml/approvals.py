"""The human approval gate: one pending approval per offered model version, decided by a person.

State lives in PostgreSQL (`ml.model_approvals`), so waiting holds no process and survives any
restart; every change is appended to `ml.approval_audit` (who, when, what, from where), which the
Dagster sensor reports as materializations visible in the UI. Pending approvals expire after their
time to live; a newer candidate supersedes older pending ones. Only an `approved` row whose version
AND fingerprint match may deploy (`authorize_deployment`).

Who decides is a `Reviewer` from a trusted source, checked against the `ApprovalPolicy`
(`approval_policy.py`): refused decisions are audited (`refused`) and change nothing. Each approval is a
vote in `ml.approval_votes`; the row turns `approved` once it has the required distinct approvals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from orchestration_platform.lib.ml.approval_policy import ApprovalPolicy, Reviewer

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
ALTER TABLE ml.model_approvals ADD COLUMN IF NOT EXISTS requested_by text;
ALTER TABLE ml.model_approvals ADD COLUMN IF NOT EXISTS approvals_required integer NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS ml.approval_votes (
    approval_id bigint NOT NULL REFERENCES ml.model_approvals (id), reviewer text NOT NULL,
    via text NOT NULL, source text NOT NULL, comment text, at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (approval_id, reviewer)
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
    requested_by: str | None = None
    approvals_required: int = 1

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Approval:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


def ensure_approval_schema(conn: psycopg.Connection) -> None:
    """Create (or extend) the approval tables if needed (use autocommit connections throughout this module)."""
    if conn.execute("SELECT to_regclass('ml.approval_votes')").fetchone()[0]:
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
    approvals_required: int = 1,
    now: datetime | None = None,
) -> Approval:
    """Offer `version` for approval (idempotent); older pending versions of the model are superseded.

    `requested_by` is whoever launched the training (four-eyes: they cannot approve it).
    """
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
            "INSERT INTO ml.model_approvals (model_name, version, fingerprint, status, metrics, requested_at, "
            "expires_at, requested_by, approvals_required) VALUES (%s, %s, %s, 'pending', %s, %s, %s, %s, %s) "
            "RETURNING id",
            (model_name, str(version), fingerprint, json.dumps(metrics, default=str), _now(now), _now(now) + ttl,
             requested_by, approvals_required),
        ).fetchone()[0]
        _audit(conn, approval_id, model_name, str(version), "requested", requested_by, None, "dagster",
               {"fingerprint": fingerprint, "expires_at": (_now(now) + ttl).isoformat(), **metrics})  # fmt: skip
    return _get(conn, model_name, version)


def votes(conn: psycopg.Connection, approval_id: int) -> list[dict[str, Any]]:
    """The approvals recorded so far for one version (reviewer, via, source, comment, at), oldest first."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM ml.approval_votes WHERE approval_id = %s ORDER BY at, reviewer", (approval_id,))
        .fetchall()
    )


def decide(
    conn: psycopg.Connection,
    *,
    model_name: str,
    version: str,
    decision: str,
    reviewer: Reviewer,
    comment: str = "",
    source: str,
    policy: ApprovalPolicy | None = None,
    now: datetime | None = None,
) -> Approval:
    """Record `reviewer`'s decision on the pending approval of exactly `version`, under `policy`.

    An approval is a vote; the version becomes `approved` once it has the required distinct approvals
    (the larger of the policy's and the one recorded at request time). One allowed rejection rejects it.
    Anything the gate refuses raises `ApprovalError`; refusals by the policy are audited as `refused`.
    """
    if decision not in DECISIONS:
        raise ApprovalError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if not isinstance(reviewer, Reviewer):
        raise ApprovalError(
            f"reviewer {reviewer!r} is free text: a decision needs a Reviewer from a trusted source "
            "(the review page's sign-in proxy or the CLI's OS user)"
        )
    if not reviewer.name.strip():
        raise ApprovalError("reviewer is empty: the trusted source gave no user name")
    policy = policy or ApprovalPolicy.from_env()
    version = str(version).strip()
    comment = (comment or "").strip()[:2000]
    ensure_approval_schema(conn)
    identity = {"via": reviewer.via, "groups": list(reviewer.groups)}
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
            _audit(conn, approval.id, model_name, version, "expired", "system",
                   f"{reviewer.label} tried to {decision}", source)  # fmt: skip
            refusal = (
                f"its approval expired at {approval.expires_at:%Y-%m-%d %H:%M}Z; retrain (or re-run the "
                "approval request) to offer it again"
            )
        else:
            approved_by = [v["reviewer"] for v in votes(conn, approval.id)]
            refusal = (
                policy.may_approve(reviewer, approval.requested_by, approved_by)
                if decision == "approve"
                else policy.may_decide(reviewer)
            )
            if refusal:
                _audit(conn, approval.id, model_name, version, "refused", reviewer.label, comment, source,
                       identity | {"decision": decision, "reason": refusal})  # fmt: skip
            else:
                return _record(conn, approval, decision, reviewer, comment, source, policy, approved_by, now)
    raise ApprovalError(f"model {model_name!r} version {version}: {refusal}")


def _record(conn, approval: Approval, decision: str, reviewer: Reviewer, comment: str, source: str,
            policy: ApprovalPolicy, approved_by: list[str], now: datetime | None) -> Approval:  # fmt: skip
    identity = {"via": reviewer.via, "groups": list(reviewer.groups), "fingerprint": approval.fingerprint}
    name, version = approval.model_name, approval.version
    if decision == "reject":
        conn.execute(
            "UPDATE ml.model_approvals SET status = 'rejected', decided_at = %s, reviewer = %s, comment = %s "
            "WHERE id = %s",
            (_now(now), reviewer.label, comment, approval.id),
        )
        _audit(conn, approval.id, name, version, "rejected", reviewer.label, comment, source, identity)
        return _get(conn, name, version)
    conn.execute(
        "INSERT INTO ml.approval_votes (approval_id, reviewer, via, source, comment, at) VALUES (%s, %s, %s, %s, %s, %s)",
        (approval.id, reviewer.label, reviewer.via, source, comment, _now(now)),
    )
    approved_by = [*approved_by, reviewer.label]
    required = max(approval.approvals_required, policy.required_approvals)
    if len(approved_by) < required:
        _audit(conn, approval.id, name, version, "approval_recorded", reviewer.label, comment, source,
               identity | {"approvals": len(approved_by), "required": required})  # fmt: skip
        return _get(conn, name, version)
    conn.execute(
        "UPDATE ml.model_approvals SET status = 'approved', decided_at = %s, reviewer = %s, comment = %s WHERE id = %s",
        (_now(now), ", ".join(approved_by), comment, approval.id),
    )
    _audit(conn, approval.id, name, version, "approved", reviewer.label, comment, source,
           identity | {"approved_by": approved_by, "required": required})  # fmt: skip
    return _get(conn, name, version)


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
