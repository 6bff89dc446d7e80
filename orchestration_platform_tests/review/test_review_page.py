"""The review page behind a real authenticating reverse proxy: identity only from the proxy, forged
headers around it refused, decisions CSRF-checked and POST-only, policy refusals shown and audited,
and no secret or token in responses or logs."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

import httpx
import psycopg
import pytest

from orchestration_platform.lib.ml.approvals import audit_after, request_approval
from orchestration_platform_tests.review.conftest import CLI, PROXY_SECRET, SESSION_KEY, USERS, review_env


def _offer(url: str, version: str = "1", requested_by: str = "dagster run 1234abcd"):
    with psycopg.connect(url, autocommit=True) as conn:
        return request_approval(conn, model_name="fraud_detector", version=version, fingerprint="f" * 64,
                                ttl=timedelta(hours=4), requested_by=requested_by,
                                metrics={"evaluation_reason": "candidate ROC AUC 0.91 >= served 0.90",
                                         "candidate": {"roc_auc": 0.91, "average_precision": 0.4},
                                         "served": {"version": "3", "roc_auc": 0.90},
                                         "feature_partitions": "2026-03-02-00:00,2026-03-02-01:00",
                                         "feature_data_version": "abc123"})  # fmt: skip


def _signed_in(proxy_url: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=proxy_url, auth=(user, USERS[user][0]), timeout=30)


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_identity_comes_only_through_the_proxy(fresh_database, review_app, signin_proxy):
    _offer(fresh_database)
    forged = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ml-approvers"}
    around = httpx.get(review_app.url + "/", headers=forged, timeout=30)
    assert around.status_code == 403 and "did not come through the sign-in proxy" in around.text
    wrong = httpx.get(review_app.url + "/", headers=forged | {"X-Review-Proxy-Secret": "guess" * 5}, timeout=30)
    assert wrong.status_code == 403 and "header is wrong" in wrong.text
    assert httpx.get(signin_proxy.url + "/", timeout=30).status_code == 401  # not signed in
    # Signed in as mallory, claiming to be alice: the proxy's identity wins.
    with _signed_in(signin_proxy.url, "mallory") as mallory:
        page = mallory.get("/", headers={"X-Forwarded-User": "alice"})
    assert page.status_code == 200 and "signed in as mallory (groups: staff)" in page.text
    assert httpx.get(review_app.url + "/healthz", timeout=30).json() == {"status": "ok"}  # probes need no identity


def test_the_page_shows_what_the_reviewer_needs(fresh_database, review_app, signin_proxy):
    _offer(fresh_database, version="7", requested_by="bob@example.com")
    with _signed_in(signin_proxy.url, "alice") as alice:
        page = alice.get("/").text
    assert 'id="fraud_detector-7"' in page and "<svg" in page and "served v3 ROC AUC" in page and "0.9100" in page
    assert "candidate ROC AUC 0.91 &gt;= served 0.90" in page  # the evaluation reason
    assert "2 hours, 2026-03-02-00:00 to 2026-03-02-01:00" in page and "abc123" in page
    assert "bob@example.com" in page and "expires at" in page and "0 of 1: none yet" in page
    assert "groups ml-approvers" in page and "DEVELOPMENT IDENTITY" not in page


def test_decisions_are_post_only_and_csrf_checked(fresh_database, review_app, signin_proxy):
    _offer(fresh_database)
    with _signed_in(signin_proxy.url, "alice") as alice, _signed_in(signin_proxy.url, "bob") as bob:
        alice_token = _token(alice.get("/").text)
        bob.get("/")
        form = {"model_name": "fraud_detector", "version": "1", "decision": "approve"}
        assert alice.get("/decide", params=form).status_code == 405
        assert alice.post("/decide", data=form).status_code == 403  # no token
        stolen = bob.post("/decide", data=form | {"csrf_token": alice_token})  # another user's token
        assert stolen.status_code == 403 and "session check failed" in stolen.text
        cookieless = httpx.post(signin_proxy.url + "/decide", auth=("alice", "alice-pw"),
                                data=form | {"csrf_token": alice_token}, timeout=30)  # fmt: skip
        assert cookieless.status_code == 403
        done = alice.post("/decide", data=form | {"csrf_token": alice_token, "comment": "ok"})
    assert done.status_code == 200 and "Version 1 is approved (by alice)" in done.text
    with psycopg.connect(fresh_database) as conn:
        status, reviewer = conn.execute("SELECT status, reviewer FROM ml.model_approvals").fetchone()
    assert (status, reviewer) == ("approved", "alice")


def test_policy_refusals_are_shown_and_audited(fresh_database, review_app, signin_proxy):
    _offer(fresh_database, requested_by="alice@example.com")
    for user, expected in (("mallory", "is not an approver"), ("alice", "four-eyes")):
        with _signed_in(signin_proxy.url, user) as client:
            page = client.get("/").text
            refused = client.post("/decide", data={"model_name": "fraud_detector", "version": "1",
                                                   "decision": "approve", "csrf_token": _token(page)})  # fmt: skip
        assert refused.status_code == 409 and "Refused:" in refused.text and expected in refused.text
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        audit = [(r["action"], r["actor"], r["source"], r["details"].get("via")) for r in audit_after(conn, 0)]
    assert audit[1:] == [("refused", "mallory", "review-page", "proxy"), ("refused", "alice", "review-page", "proxy")]
    logs = review_app.output() + signin_proxy.output()
    assert PROXY_SECRET not in logs and SESSION_KEY not in logs and _token(page) not in logs
    assert PROXY_SECRET not in refused.text and SESSION_KEY not in refused.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"REVIEW_PROXY_SECRET": ""}, "trusts identity headers only from the authenticating proxy"),
        ({"REVIEW_DEV_USER": "dev", "DAGSTER_DEPLOYMENT": "prod"}, "a development identity never runs in prod"),
        ({"REVIEW_PROXY_SECRET": "short"}, "REVIEW_PROXY_SECRET is shorter than 16 characters"),
        ({"REVIEW_TRUSTED_PROXIES": "10.0.0.300/8"}, "'10.0.0.300/8' is not a network"),
    ],
)
def test_the_page_refuses_to_start_when_it_would_trust_anyone(fresh_database, extra, message):
    result = subprocess.run([CLI, "review", "--port", "1"], env=review_env(fresh_database, **extra),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and message in result.stderr
    assert PROXY_SECRET not in result.stderr


def test_a_trusted_network_that_excludes_the_caller_is_refused(fresh_database, tmp_path):
    from orchestration_platform.devstack.services import free_port
    from orchestration_platform_tests.review.conftest import Process

    port = free_port()
    env = review_env(fresh_database, REVIEW_PROXY_SECRET="", REVIEW_TRUSTED_PROXIES="10.20.0.0/16")
    app = Process("review page", [CLI, "review", "--port", str(port)], env, port, tmp_path / "review.log")
    try:
        response = httpx.get(app.url + "/", headers={"X-Forwarded-User": "alice"}, timeout=30)
    finally:
        app.stop()
    assert response.status_code == 403 and "not a trusted proxy network" in response.text


def test_the_development_identity_is_labelled(fresh_database, tmp_path):
    from orchestration_platform.devstack.services import free_port
    from orchestration_platform_tests.review.conftest import Process

    port = free_port()
    env = review_env(fresh_database, REVIEW_PROXY_SECRET="", REVIEW_DEV_USER="dev-reviewer", DAGSTER_DEPLOYMENT="local")
    app = Process("review page", [CLI, "review", "--port", str(port)], env, port, tmp_path / "review.log")
    try:
        page = httpx.get(app.url + "/", headers={"X-Forwarded-User": "alice"}, timeout=30).text
    finally:
        app.stop()
    assert 'DEVELOPMENT IDENTITY: deciding as "dev-reviewer"' in page and "signed in as dev-reviewer" in page
