"""Which model version serving uses, and the guarded switch between versions.

`ml.serving_state` holds one row per model name: the version (and fingerprint) that serving must
load, and the one before it. Switching is one UPDATE (atomic for every replica, which reload from
it); the deployment then asks serving to reload, checks `/healthz` and that `/version` reports the
new version, and on any failure puts the previous version back, reloads and checks again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from orchestration_platform.lib.http import ReadFailure, ReadLimits, parse_json, read_sync, shown_url
from orchestration_platform.lib.ml.approvals import ApprovalError, authorize_deployment, record_outcome

SERVING_DDL = """
CREATE SCHEMA IF NOT EXISTS ml;
CREATE TABLE IF NOT EXISTS ml.serving_state (
    model_name text PRIMARY KEY, version text NOT NULL, fingerprint text NOT NULL,
    previous_version text, previous_fingerprint text, switched_at timestamptz NOT NULL DEFAULT now()
);
"""


class DeploymentFailed(RuntimeError):
    """The new version did not come up healthy; serving was rolled back (the message says to what)."""


@dataclass(frozen=True)
class ServedVersion:
    model_name: str
    version: str
    fingerprint: str
    previous_version: str | None = None
    previous_fingerprint: str | None = None


def ensure_serving_schema(conn: psycopg.Connection) -> None:
    """Create `ml.serving_state` if missing (use autocommit connections throughout this module)."""
    if conn.execute("SELECT to_regclass('ml.serving_state')").fetchone()[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ml.serving.schema'))")
        conn.execute(SERVING_DDL)


def served_version(conn: psycopg.Connection, model_name: str) -> ServedVersion | None:
    ensure_serving_schema(conn)
    row = conn.execute(
        "SELECT model_name, version, fingerprint, previous_version, previous_fingerprint FROM ml.serving_state "
        "WHERE model_name = %s",
        (model_name,),
    ).fetchone()
    return ServedVersion(*row) if row else None


def _set_state(
    conn: psycopg.Connection, model_name: str, target: ServedVersion | None, previous: ServedVersion | None
):
    with conn.transaction():
        if target is None:
            conn.execute("DELETE FROM ml.serving_state WHERE model_name = %s", (model_name,))
            return
        conn.execute(
            "INSERT INTO ml.serving_state (model_name, version, fingerprint, previous_version, previous_fingerprint) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_name) DO UPDATE SET version = EXCLUDED.version, "
            "fingerprint = EXCLUDED.fingerprint, previous_version = EXCLUDED.previous_version, "
            "previous_fingerprint = EXCLUDED.previous_fingerprint, switched_at = now()",
            (model_name, target.version, target.fingerprint,
             previous.version if previous else None, previous.fingerprint if previous else None),
        )  # fmt: skip


SERVING_ANSWER_BYTES = 1 << 20  # /healthz, /version and /admin/reload answer a few hundred bytes


def _ask(serving_url: str, path: str, deadline: float, *, post: bool = False) -> tuple[int, Any]:
    """One bounded request to serving: (status, parsed JSON or None), never past `deadline`."""
    limits = ReadLimits(deadline_s=max(round(deadline - time.monotonic(), 1), 0.1), read_timeout_s=10.0,
                        max_response_bytes=SERVING_ANSWER_BYTES, max_json_depth=20, max_redirects=1)
    answer = read_sync(serving_url.rstrip("/") + path, limits, method="POST" if post else "GET")
    if not answer.content.strip():
        return answer.response.status_code, None
    try:
        return answer.response.status_code, parse_json(answer.content, limits)
    except ReadFailure:
        if answer.response.status_code < 300:
            raise
        return answer.response.status_code, answer.content.decode("utf-8", "replace")  # an error page's start


def verify_serving(serving_url: str, version: str | None, *, timeout_s: float = 20.0) -> str | None:
    """Ask serving to reload, then wait until it is healthy on `version`; returns None or what is wrong.

    Every request is bounded (lib/http.py): the whole check ends by `timeout_s` even when serving stalls,
    trickles or answers something huge."""
    problem = "not checked"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, reloaded = _ask(serving_url, "/admin/reload", deadline, post=True)
            if status == 500 and version is not None:
                # The app could not load the version: definitive, no point waiting for it.
                error = reloaded.get("last_error") if isinstance(reloaded, dict) else str(reloaded)[:200]
                return f"serving could not load version {version}: {error}"
            health, health_body = _ask(serving_url, "/healthz", deadline)
            _, served = _ask(serving_url, "/version", deadline)
            served = served if isinstance(served, dict) else {}
            if version is None:
                return None
            if health != 200:
                problem = f"/healthz answered {health}: {str(health_body)[:200]}"
            elif str(served.get("version")) != str(version):
                problem = f"/version reports {served.get('version')!r}, expected {version!r}" + (
                    f" (last reload error: {served['last_error']})" if served.get("last_error") else ""
                )
            else:
                return None
        except ReadFailure as failure:
            problem = f"serving at {shown_url(serving_url)} did not answer properly: {failure}"
            if not failure.transient:
                return problem
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    return problem


def switch_serving(
    postgres_url: str,
    serving_url: str,
    *,
    model_name: str,
    version: str,
    fingerprint: str,
    actor: str,
    verify_timeout_s: float = 20.0,
) -> ServedVersion:
    """Switch serving to an approved version, verify it, or roll back and raise `DeploymentFailed`.

    `fingerprint` is the version's files' hash as stored NOW; it must equal the approved one.
    """
    with psycopg.connect(postgres_url, application_name="ml-deploy", autocommit=True) as conn:
        ensure_serving_schema(conn)
        approval = authorize_deployment(conn, model_name=model_name, version=version, fingerprint=fingerprint)
        current = served_version(conn, model_name)
        comparable = current is not None and current.version.isdigit() and str(version).isdigit()
        if comparable and int(current.version) > int(version):
            raise ApprovalError(
                f"model {model_name!r} version {version} is stale: version {current.version} is already served"
            )
        target = ServedVersion(model_name, str(version), fingerprint)
        _set_state(conn, model_name, target, current)
        problem = verify_serving(serving_url, target.version, timeout_s=verify_timeout_s)
        if problem is None:
            record_outcome(conn, approval, deployed=True, actor=actor,
                           details={"previous_version": current.version if current else None})  # fmt: skip
            return ServedVersion(model_name, target.version, fingerprint,
                                 current.version if current else None, current.fingerprint if current else None)  # fmt: skip
        restore = (
            ServedVersion(model_name, current.version, current.fingerprint) if current is not None else None
        )
        previous_of_restore = (
            ServedVersion(model_name, current.previous_version, current.previous_fingerprint)
            if current is not None and current.previous_version
            else None
        )
        _set_state(conn, model_name, restore, previous_of_restore)
        after = verify_serving(serving_url, restore.version if restore else None, timeout_s=verify_timeout_s)
        rolled_to = restore.version if restore else "no model"
        record_outcome(conn, approval, deployed=False, actor=actor,
                       details={"reason": problem, "rolled_back_to": rolled_to, "rollback_check": after or "ok"})  # fmt: skip
        raise DeploymentFailed(
            f"model {model_name!r} version {version} failed its checks after the switch ({problem}); serving was "
            f"rolled back to {rolled_to}"
            + (f", but the rollback check also failed: {after}" if after else "")
        )
