"""Who may decide on a model version: the reviewer's identity and the approvers policy.

A `Reviewer` comes from a trusted source only: the authenticating proxy's headers (review page), the OS
user (CLI), or a clearly labelled development identity. Anything else (a form field, a Launchpad config
value) is `verified=False` and never counts. The `ApprovalPolicy` (from the environment) says who may
decide, how many distinct approvals a version needs and that whoever requested or trained a version
cannot approve it (four-eyes).

| variable | meaning | default |
|---|---|---|
| ML_APPROVERS | users or emails allowed to decide (comma-separated) | empty |
| ML_APPROVER_GROUPS | groups whose members may decide (comma-separated) | empty |
| ML_APPROVALS_REQUIRED | distinct approvals a version needs before it deploys | `1` |
| ML_APPROVAL_FOUR_EYES | `true`: the requester/trainer of a version cannot approve it | `true` |

With neither ML_APPROVERS nor ML_APPROVER_GROUPS set, any verified identity may decide outside `prod`;
in `prod` every decision is refused until an approver is configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class PolicyError(ValueError):
    """The approvers policy in the environment cannot be used; the message names the variable and the fix."""


def _split(raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Reviewer:
    """A person deciding, as established by a trusted source (`via`): proxy, os-user or dev-identity."""

    name: str
    email: str = ""
    groups: tuple[str, ...] = ()
    verified: bool = True
    via: str = ""

    @property
    def label(self) -> str:
        """The name recorded in `ml.model_approvals.reviewer` and the audit trail."""
        return self.name if self.verified else f"unverified: {self.name}"

    def identities(self) -> set[str]:
        return {value.strip().lower() for value in (self.name, self.email) if value and value.strip()}


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may decide, how many distinct approvals are needed, and four-eyes."""

    approvers: frozenset[str] = field(default_factory=frozenset)
    approver_groups: frozenset[str] = field(default_factory=frozenset)
    required_approvals: int = 1
    four_eyes: bool = True
    prod: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApprovalPolicy:
        env = os.environ if env is None else env
        raw_required = env.get("ML_APPROVALS_REQUIRED", "").strip() or "1"
        if not raw_required.isdigit() or not 1 <= int(raw_required) <= 10:
            raise PolicyError(
                f"ML_APPROVALS_REQUIRED={raw_required!r} is not a whole number from 1 to 10: set it to e.g. 2"
            )
        raw_four_eyes = env.get("ML_APPROVAL_FOUR_EYES", "").strip().lower() or "true"
        if raw_four_eyes not in ("true", "false"):
            raise PolicyError(f"ML_APPROVAL_FOUR_EYES={raw_four_eyes!r} is not true or false")
        prod = env.get("DAGSTER_DEPLOYMENT", "").strip() == "prod"
        if prod and raw_four_eyes == "false":
            raise PolicyError("ML_APPROVAL_FOUR_EYES=false is refused in prod: remove it (four-eyes stays on)")
        return cls(
            approvers=_split(env.get("ML_APPROVERS", "")),
            approver_groups=_split(env.get("ML_APPROVER_GROUPS", "")),
            required_approvals=int(raw_required),
            four_eyes=raw_four_eyes == "true",
            prod=prod,
        )

    def describe(self) -> str:
        """One line for the review page and error messages."""
        who = []
        if self.approvers:
            who.append("users " + ", ".join(sorted(self.approvers)))
        if self.approver_groups:
            who.append("groups " + ", ".join(sorted(self.approver_groups)))
        allowed = " and ".join(who) or ("nobody (no approver configured)" if self.prod else "any signed-in user")
        eyes = "; whoever requested or trained a version cannot approve it" if self.four_eyes else ""
        return f"approvers: {allowed}; {self.required_approvals} distinct approval(s) needed{eyes}"

    def may_decide(self, reviewer: Reviewer) -> str | None:
        """Why `reviewer` may not decide at all, or None."""
        if not reviewer.verified:
            return (
                f"reviewer {reviewer.name!r} is unverified ({reviewer.via or 'free text'}): decisions count only "
                "from the review page behind the sign-in proxy or from the CLI as your own OS user"
            )
        if not self.approvers and not self.approver_groups:
            if self.prod:
                return (
                    "no approver is configured in prod: set ML_APPROVERS (users or emails) or ML_APPROVER_GROUPS "
                    "(the chart's review.approvers / review.approverGroups)"
                )
            return None
        groups = {g.strip().lower() for g in reviewer.groups}
        if reviewer.identities() & self.approvers or groups & self.approver_groups:
            return None
        return (
            f"reviewer {reviewer.name!r} (groups: {', '.join(sorted(groups)) or 'none'}) is not an approver: "
            f"{self.describe()} (ML_APPROVERS, ML_APPROVER_GROUPS)"
        )

    def may_approve(self, reviewer: Reviewer, requested_by: str | None, approved_by: list[str]) -> str | None:
        """Why `reviewer` may not approve a version requested by `requested_by`, or None."""
        refusal = self.may_decide(reviewer)
        if refusal:
            return refusal
        if self.four_eyes and requested_by and requested_by.strip().lower() in reviewer.identities():
            return (
                f"reviewer {reviewer.name!r} requested or trained this version and cannot approve it "
                "(four-eyes): ask another approver"
            )
        if reviewer.label.lower() in {a.lower() for a in approved_by}:
            return (
                f"reviewer {reviewer.name!r} already approved this version; approvals must come from "
                f"{self.required_approvals} distinct people: ask another approver"
            )
        return None
