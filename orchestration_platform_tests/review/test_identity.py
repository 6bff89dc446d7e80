"""Who the review page thinks is asking: pure checks of the proxy trust rules (no server)."""

from __future__ import annotations

import pytest

from orchestration_platform.review.identity import IdentityConfigError, NotThroughProxy, ProxyTrust

SECRET = "a-long-shared-secret-value"


def test_both_a_secret_and_a_network_must_hold_when_both_are_configured():
    trust = ProxyTrust.from_env({"REVIEW_PROXY_SECRET": SECRET, "REVIEW_TRUSTED_PROXIES": "10.1.0.0/16, ::1/128"})
    headers = {"X-Review-Proxy-Secret": SECRET, "X-Forwarded-User": "alice", "X-Forwarded-Email": "a@example.com",
               "X-Forwarded-Groups": "ml-approvers, staff"}  # fmt: skip
    reviewer = trust.identify(headers, "10.1.2.3")
    assert (reviewer.name, reviewer.email, reviewer.groups, reviewer.via) == (
        "alice", "a@example.com", ("ml-approvers", "staff"), "proxy")
    assert trust.identify(headers, "::1").name == "alice"
    with pytest.raises(NotThroughProxy, match=r"request from 10\.2\.0\.1 did not come through the sign-in proxy"):
        trust.identify(headers, "10.2.0.1")
    with pytest.raises(NotThroughProxy, match="header is wrong") as error:
        trust.identify(headers | {"X-Review-Proxy-Secret": SECRET[:-1]}, "10.1.2.3")
    assert SECRET[:-1] not in str(error.value)
    with pytest.raises(NotThroughProxy, match="X-Forwarded-User is empty"):
        trust.identify({"X-Review-Proxy-Secret": SECRET}, "10.1.2.3")


def test_header_names_are_configurable_and_the_secret_never_shows():
    trust = ProxyTrust.from_env({"REVIEW_PROXY_SECRET": SECRET, "REVIEW_USER_HEADER": "X-Auth-Request-User",
                                 "REVIEW_PROXY_SECRET_HEADER": "X-Proxy-Token"})  # fmt: skip
    reviewer = trust.identify({"X-Proxy-Token": SECRET, "X-Auth-Request-User": "bob", "X-Forwarded-User": "eve"}, None)
    assert reviewer.name == "bob"
    assert SECRET not in repr(trust) and "secret=set" in repr(trust)


def test_the_development_identity_is_refused_in_prod_and_labelled_elsewhere():
    with pytest.raises(IdentityConfigError, match="never runs in prod"):
        ProxyTrust.from_env({"REVIEW_DEV_USER": "dev", "DAGSTER_DEPLOYMENT": "prod"})
    reviewer = ProxyTrust.from_env({"REVIEW_DEV_USER": "dev-reviewer"}).identify({"X-Forwarded-User": "alice"}, None)
    assert (reviewer.name, reviewer.via) == ("dev-reviewer", "dev-identity")
