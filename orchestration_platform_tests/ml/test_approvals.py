"""The approval gate on its own: every way a decision or a deployment can be refused, the approvers
policy (who, how many, four-eyes) and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from orchestration_platform.lib.ml.approval_policy import ApprovalPolicy, PolicyError, Reviewer
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
OPEN = ApprovalPolicy()  # any verified identity, one approval, four-eyes


def who(name: str, *groups: str, via: str = "os-user") -> Reviewer:
    return Reviewer(name=name, groups=groups, via=via)


@pytest.fixture
def conn(use_fresh_database):
    with psycopg.connect(use_fresh_database, autocommit=True) as connection:
        yield connection


def _offer(conn, version: str, fingerprint: str | None = None, ttl_hours: float = 24, requested_by="dagster",
           required: int = 1):  # fmt: skip
    return request_approval(conn, model_name=MODEL, version=version, fingerprint=fingerprint or f"sha-{version}" * 4,
                            ttl=timedelta(hours=ttl_hours), metrics={"roc_auc": 0.9}, now=NOW,
                            requested_by=requested_by, approvals_required=required)  # fmt: skip


def _decide(conn, version, decision, reviewer, policy=OPEN, comment="", source="cli", now=NOW):
    return decide(conn, model_name=MODEL, version=version, decision=decision, reviewer=reviewer, comment=comment,
                  source=source, policy=policy, now=now)  # fmt: skip


def test_approve_then_only_that_version_with_those_files_may_deploy(conn):
    offered = _offer(conn, "3")
    assert [a.version for a in pending(conn)] == ["3"] and offered.expires_at == NOW + timedelta(hours=24)
    approved = _decide(conn, "3", "approve", who("alice"), comment="ok", now=NOW + timedelta(hours=1))
    assert approved.status == "approved" and approved.reviewer == "alice"
    assert [a.version for a in approved_waiting(conn)] == ["3"]
    assert (
        authorize_deployment(conn, model_name=MODEL, version="3", fingerprint=offered.fingerprint).id
        == offered.id
    )
    with pytest.raises(ApprovalError, match="mismatched version"):
        authorize_deployment(conn, model_name=MODEL, version="3", fingerprint="tampered-files")
    with pytest.raises(ApprovalError, match="is approved by alice"):
        _decide(conn, "3", "reject", who("mallory"))


def test_a_rejected_version_never_deploys(conn):
    offered = _offer(conn, "4")
    _decide(conn, "4", "reject", who("bob"), comment="too few labels", source="review-page")
    with pytest.raises(ApprovalError, match="rejected, not approved"):
        authorize_deployment(conn, model_name=MODEL, version="4", fingerprint=offered.fingerprint)
    assert approved_waiting(conn) == []


def test_an_expired_approval_cannot_be_decided_nor_deployed(conn):
    offered = _offer(conn, "5", ttl_hours=2)
    with pytest.raises(ApprovalError, match="expired"):
        _decide(conn, "5", "approve", who("carol"), now=NOW + timedelta(hours=3))
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
        _decide(conn, "70", "approve", who("eve"))
    with pytest.raises(ApprovalError, match="no approval exists"):
        authorize_deployment(conn, model_name=MODEL, version="70", fingerprint="x")
    _offer(conn, "8")  # a newer candidate supersedes the older pending one
    with pytest.raises(ApprovalError, match="version 7 is superseded"):
        _decide(conn, "7", "approve", who("dave"))
    with pytest.raises(ApprovalError, match="must not change"):
        _offer(conn, "8", fingerprint="different-files")


def test_bad_decisions_name_the_fix(conn):
    _offer(conn, "9")
    with pytest.raises(ApprovalError, match="reviewer is empty"):
        _decide(conn, "9", "approve", who("  "))
    with pytest.raises(ApprovalError, match="'maybe' is not one of approve, reject"):
        _decide(conn, "9", "maybe", who("x"))
    with pytest.raises(ApprovalError, match="free text: a decision needs a Reviewer from a trusted source"):
        _decide(conn, "9", "approve", "alice")


def test_every_step_is_an_audit_record(conn):
    _offer(conn, "10")
    _offer(conn, "11")
    _decide(conn, "11", "approve", who("alice"), comment="fine")
    records = audit_after(conn, 0)
    assert [(r["version"], r["action"], r["actor"]) for r in records] == [
        ("10", "requested", "dagster"),
        ("10", "superseded", "dagster"),
        ("11", "requested", "dagster"),
        ("11", "approved", "alice"),
    ]
    assert records[-1]["comment"] == "fine" and records[-1]["source"] == "cli"
    assert audit_after(conn, records[-1]["id"]) == []


POLICY = ApprovalPolicy(approvers=frozenset({"alice", "bob@example.com"}), approver_groups=frozenset({"ml-approvers"}),
                        required_approvals=2)  # fmt: skip


def _refused_audit(conn) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["details"]["decision"], r["details"]["reason"]) for r in audit_after(conn, 0)
            if r["action"] == "refused"]  # fmt: skip


def test_a_reviewer_outside_the_policy_is_refused_and_audited(conn):
    _offer(conn, "20")
    with pytest.raises(ApprovalError, match=r"reviewer 'mallory' \(groups: staff\) is not an approver: approvers: "
                                            r"users alice, bob@example.com and groups ml-approvers"):  # fmt: skip
        _decide(conn, "20", "approve", who("mallory", "staff"), policy=POLICY)
    with pytest.raises(ApprovalError, match="is not an approver"):
        _decide(conn, "20", "reject", who("mallory", "staff"), policy=POLICY)
    assert [(actor, decision) for actor, decision, _ in _refused_audit(conn)] == [
        ("mallory", "approve"), ("mallory", "reject")]
    assert pending(conn)[0].status == "pending"  # a refused decision changes nothing


def test_the_trainer_cannot_approve_their_own_model_but_may_withdraw_it(conn):
    _offer(conn, "21", requested_by="Alice")
    with pytest.raises(ApprovalError, match=r"requested or trained this version and cannot approve it \(four-eyes\)"):
        _decide(conn, "21", "approve", who("alice"), policy=POLICY)
    email_trainer = _offer(conn, "22", requested_by="bob@example.com")
    with pytest.raises(ApprovalError, match="four-eyes"):  # the same person by email
        _decide(conn, "22", "approve", Reviewer(name="bob", email="bob@example.com", via="proxy"), policy=POLICY)
    assert _decide(conn, "22", "reject", who("bob@example.com"), policy=POLICY).status == "rejected"
    assert email_trainer.requested_by == "bob@example.com"


def test_too_few_distinct_approvals_leave_the_version_pending_and_undeployable(conn):
    offered = _offer(conn, "23", required=2)
    first = _decide(conn, "23", "approve", who("alice"), policy=POLICY, comment="looks right")
    assert first.status == "pending" and approved_waiting(conn) == []
    with pytest.raises(ApprovalError, match="is pending, not approved"):
        authorize_deployment(conn, model_name=MODEL, version="23", fingerprint=offered.fingerprint)
    with pytest.raises(ApprovalError, match="already approved this version; approvals must come from 2 distinct"):
        _decide(conn, "23", "approve", who("alice"), policy=POLICY)
    second = _decide(conn, "23", "approve", who("carol", "ml-approvers"), policy=POLICY)
    assert second.status == "approved" and second.reviewer == "alice, carol"
    assert authorize_deployment(conn, model_name=MODEL, version="23", fingerprint=offered.fingerprint).id == offered.id
    actions = [(r["action"], r["actor"]) for r in audit_after(conn, 0) if r["version"] == "23"]
    assert actions == [("requested", "dagster"), ("approval_recorded", "alice"), ("refused", "alice"),
                       ("approved", "carol")]  # fmt: skip


def test_a_policy_raised_after_the_request_applies_to_pending_versions(conn):
    _offer(conn, "24", required=1)
    assert _decide(conn, "24", "approve", who("alice"), policy=POLICY).status == "pending"  # POLICY needs 2


def test_unverified_reviewers_never_count(conn):
    _offer(conn, "25")
    with pytest.raises(ApprovalError, match=r"reviewer 'alice' is unverified \(launchpad\)"):
        _decide(conn, "25", "approve", Reviewer(name="alice", verified=False, via="launchpad"))
    assert _refused_audit(conn)[0][0] == "unverified: alice"


def test_the_policy_from_the_environment_and_its_errors():
    policy = ApprovalPolicy.from_env({"ML_APPROVERS": " Alice, bob@example.com ,", "ML_APPROVER_GROUPS": "ml",
                                      "ML_APPROVALS_REQUIRED": "2"})  # fmt: skip
    assert policy == ApprovalPolicy(frozenset({"alice", "bob@example.com"}), frozenset({"ml"}), 2, True)
    assert ApprovalPolicy.from_env({}) == ApprovalPolicy()
    with pytest.raises(PolicyError, match="ML_APPROVALS_REQUIRED='0' is not a whole number from 1 to 10"):
        ApprovalPolicy.from_env({"ML_APPROVALS_REQUIRED": "0"})
    with pytest.raises(PolicyError, match="refused in prod"):
        ApprovalPolicy.from_env({"ML_APPROVAL_FOUR_EYES": "false", "DAGSTER_DEPLOYMENT": "prod"})
    prod_without_approvers = ApprovalPolicy.from_env({"DAGSTER_DEPLOYMENT": "prod"})
    assert "no approver is configured in prod: set ML_APPROVERS" in prod_without_approvers.may_decide(who("alice"))
