"""The approval gate on its own: every way a decision or a deployment can be refused, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from orchestration_platform.lib.ml.approvals import (
    ApprovalError,
    approved_waiting,
    audit_after,
    authorize_deployment,
    decide,
    expire_due,
    pending,
    request_approval,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
MODEL = "fraud_detector"


@pytest.fixture
def conn(use_fresh_database):
    with psycopg.connect(use_fresh_database, autocommit=True) as connection:
        yield connection


def _offer(conn, version: str, fingerprint: str | None = None, ttl_hours: float = 24):
    return request_approval(conn, model_name=MODEL, version=version, fingerprint=fingerprint or f"sha-{version}" * 4,
                            ttl=timedelta(hours=ttl_hours), metrics={"roc_auc": 0.9}, now=NOW)  # fmt: skip


def test_approve_then_only_that_version_with_those_files_may_deploy(conn):
    offered = _offer(conn, "3")
    assert [a.version for a in pending(conn)] == ["3"] and offered.expires_at == NOW + timedelta(hours=24)
    approved = decide(conn, model_name=MODEL, version="3", decision="approve", reviewer="alice", comment="ok",
                      source="cli", now=NOW + timedelta(hours=1))  # fmt: skip
    assert approved.status == "approved" and approved.reviewer == "alice"
    assert [a.version for a in approved_waiting(conn)] == ["3"]
    assert (
        authorize_deployment(conn, model_name=MODEL, version="3", fingerprint=offered.fingerprint).id
        == offered.id
    )
    with pytest.raises(ApprovalError, match="mismatched version"):
        authorize_deployment(conn, model_name=MODEL, version="3", fingerprint="tampered-files")
    with pytest.raises(ApprovalError, match="is approved by alice"):
        decide(
            conn, model_name=MODEL, version="3", decision="reject", reviewer="mallory", source="cli", now=NOW
        )


def test_a_rejected_version_never_deploys(conn):
    offered = _offer(conn, "4")
    decide(conn, model_name=MODEL, version="4", decision="reject", reviewer="bob", comment="too few labels",
           source="dagster-ui", now=NOW)  # fmt: skip
    with pytest.raises(ApprovalError, match="rejected, not approved"):
        authorize_deployment(conn, model_name=MODEL, version="4", fingerprint=offered.fingerprint)
    assert approved_waiting(conn) == []


def test_an_expired_approval_cannot_be_decided_nor_deployed(conn):
    offered = _offer(conn, "5", ttl_hours=2)
    with pytest.raises(ApprovalError, match="expired"):
        decide(conn, model_name=MODEL, version="5", decision="approve", reviewer="carol", source="cli",
               now=NOW + timedelta(hours=3))  # fmt: skip
    with pytest.raises(ApprovalError, match="expired, not approved"):
        authorize_deployment(conn, model_name=MODEL, version="5", fingerprint=offered.fingerprint)
    _offer(conn, "6", ttl_hours=2)
    assert [a.version for a in expire_due(conn, NOW + timedelta(hours=2))] == ["6"]  # the sensor's sweep
    assert pending(conn) == []


def test_forged_and_stale_versions_are_refused(conn):
    _offer(conn, "7")
    with pytest.raises(
        ApprovalError, match=r"no approval was requested .* version .70. \(pending versions: 7\)"
    ):
        decide(
            conn, model_name=MODEL, version="70", decision="approve", reviewer="eve", source="cli", now=NOW
        )
    with pytest.raises(ApprovalError, match="no approval exists"):
        authorize_deployment(conn, model_name=MODEL, version="70", fingerprint="x")
    _offer(conn, "8")  # a newer candidate supersedes the older pending one
    with pytest.raises(ApprovalError, match="version 7 is superseded"):
        decide(
            conn, model_name=MODEL, version="7", decision="approve", reviewer="dave", source="cli", now=NOW
        )
    with pytest.raises(ApprovalError, match="must not change"):
        _offer(conn, "8", fingerprint="different-files")


def test_bad_decisions_name_the_fix(conn):
    _offer(conn, "9")
    with pytest.raises(ApprovalError, match="reviewer is empty"):
        decide(conn, model_name=MODEL, version="9", decision="approve", reviewer="  ", source="cli", now=NOW)
    with pytest.raises(ApprovalError, match="'maybe' is not one of approve, reject"):
        decide(conn, model_name=MODEL, version="9", decision="maybe", reviewer="x", source="cli", now=NOW)


def test_every_step_is_an_audit_record(conn):
    _offer(conn, "10")
    _offer(conn, "11")
    decide(conn, model_name=MODEL, version="11", decision="approve", reviewer="alice", comment="fine", source="cli",
           now=NOW)  # fmt: skip
    records = audit_after(conn, 0)
    assert [(r["version"], r["action"], r["actor"]) for r in records] == [
        ("10", "requested", "dagster"),
        ("10", "superseded", "dagster"),
        ("11", "requested", "dagster"),
        ("11", "approved", "alice"),
    ]
    assert records[-1]["comment"] == "fine" and records[-1]["source"] == "cli"
    assert audit_after(conn, records[-1]["id"]) == []
