"""A real sign-in path: a browser signs in through a real oauth2-proxy (built from its Go module by
scripts/install-sso.sh) at a real OpenID Connect provider (PyPI oidc-provider-mock: discovery, the
authorization code flow, signed ID tokens), and the approval records the identity it signed in with.
The review app trusts identity headers only from the proxy's address, as in the chart's sidecar."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from orchestration_platform.devstack.services import free_port
from orchestration_platform.lib.ml.approvals import audit_after, request_approval
from orchestration_platform.settings import REPO_ROOT
from orchestration_platform_tests.review.conftest import CLI, Process, review_env

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
CLIENT_SECRET = "oidc-client-s3cret-value"
PEOPLE = [
    {"sub": "alice", "email": "alice@example.com", "email_verified": True, "preferred_username": "alice",
     "groups": ["ml-approvers"]},
    {"sub": "mallory", "email": "mallory@example.com", "email_verified": True, "preferred_username": "mallory",
     "groups": ["staff"]},
]  # fmt: skip


@pytest.fixture(scope="session")
def oauth2_proxy_bin() -> Path:
    """oauth2-proxy built from its Go module (cached outside the repo; built once, ~minutes on 2 cores)."""
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install-sso.sh")], capture_output=True,
                            text=True, timeout=1800)  # fmt: skip
    assert result.returncode == 0, f"scripts/install-sso.sh failed:\n{result.stderr[-3000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def sign_in(oauth2_proxy_bin, fresh_database, tmp_path):
    """OIDC provider, review app (trusting 127.0.0.1 only) and oauth2-proxy in front of it."""
    provider_port = free_port()
    claims = [arg for person in PEOPLE for arg in ("--user-claims", json.dumps(person))]
    provider = Process("OIDC provider", [sys.executable, "-m", "oidc_provider_mock", "--port", str(provider_port),
                                         *claims], dict(os.environ), provider_port, tmp_path / "oidc.log")  # fmt: skip
    review_port, proxy_port = free_port(), free_port()
    env = review_env(fresh_database, REVIEW_PROXY_SECRET="", REVIEW_TRUSTED_PROXIES="127.0.0.1/32")
    review = Process("review page", [CLI, "review", "--port", str(review_port)], env, review_port,
                     tmp_path / "review.log")  # fmt: skip
    cookie_secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
    proxy = Process(
        "oauth2-proxy",
        [str(oauth2_proxy_bin), f"--http-address=127.0.0.1:{proxy_port}", "--provider=oidc",
         f"--oidc-issuer-url=http://127.0.0.1:{provider_port}", "--client-id=review-page",
         f"--upstream=http://127.0.0.1:{review_port}/", f"--redirect-url=http://127.0.0.1:{proxy_port}/oauth2/callback",
         "--email-domain=*", "--scope=openid email profile", "--oidc-groups-claim=groups", "--pass-user-headers=true",
         "--cookie-secure=false", "--skip-provider-button=true", "--skip-auth-route=GET=^/healthz$"],
        {**os.environ, "OAUTH2_PROXY_CLIENT_SECRET": CLIENT_SECRET, "OAUTH2_PROXY_COOKIE_SECRET": cookie_secret},
        proxy_port, tmp_path / "oauth2-proxy.log",
    )  # fmt: skip
    yield {"url": proxy.url, "logs": lambda: provider.output() + review.output() + proxy.output(),
           "secrets": (CLIENT_SECRET, cookie_secret)}  # fmt: skip
    for process in (proxy, review, provider):
        process.stop()


def _sign_in_and_approve(browser, url: str, person: str, version: str, forged: dict | None = None) -> str:
    from playwright.sync_api import expect

    context = browser.new_context(extra_http_headers=forged or {})
    try:
        page = context.new_page()
        page.goto(url)
        page.get_by_role("button", name=person, exact=True).click()  # the provider's sign-in page
        card = page.locator(f"#fraud_detector-{version}")
        expect(card).to_be_visible(timeout=30_000)
        card.get_by_label("Comment").fill(f"{person} signed in")
        card.get_by_role("button", name="Approve").click()
        status = page.get_by_role("status")
        expect(status).to_be_visible(timeout=30_000)
        return page.locator("header .who").inner_text() + " | " + status.inner_text()
    finally:
        context.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)")
def test_signing_in_through_oauth2_proxy_records_that_identity(fresh_database, sign_in):
    from playwright.sync_api import sync_playwright

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        request_approval(conn, model_name="fraud_detector", version="5", fingerprint="f" * 64,
                         ttl=timedelta(hours=1), metrics={}, requested_by="dagster run 1234abcd")  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            # mallory also sends forged identity headers: the proxy replaces them with who signed in.
            forged = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ml-approvers"}
            refused = _sign_in_and_approve(browser, sign_in["url"], "mallory", "5", forged)
            approved = _sign_in_and_approve(browser, sign_in["url"], "alice", "5")
        finally:
            browser.close()
    # oauth2-proxy passes the provider's subject as X-Forwarded-User and its groups claim as X-Forwarded-Groups.
    assert "signed in as mallory (groups: staff)" in refused and "reviewer 'mallory' (groups: staff) is not an" in refused
    assert "signed in as alice (groups: ml-approvers)" in approved and "Version 5 is approved (by alice)" in approved
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        status, reviewer = conn.execute("SELECT status, reviewer FROM ml.model_approvals").fetchone()
        audit = [(r["action"], r["actor"], r["details"].get("via")) for r in audit_after(conn, 0)]
    assert (status, reviewer) == ("approved", "alice")
    assert audit[-1] == ("approved", reviewer, "proxy") and audit[-2][0] == "refused"
    logs = sign_in["logs"]()
    assert not [s for s in sign_in["secrets"] if s in logs]
