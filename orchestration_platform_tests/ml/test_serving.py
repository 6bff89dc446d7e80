"""The serving app and the guarded switch: validated input, atomic switch to an approved version,
verification, and rollback to the previous version when the new one does not come up."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from orchestration_platform.devstack.events import EventGenerator
from orchestration_platform.lib.ml.approval_policy import Reviewer
from orchestration_platform.lib.ml.approvals import ApprovalError, decide, request_approval
from orchestration_platform.lib.ml.features import compute_features
from orchestration_platform.lib.ml.model_registry import ModelRegistry
from orchestration_platform.lib.ml.model_training import train_model
from orchestration_platform.lib.ml.serving_switch import DeploymentFailed, switch_serving
from orchestration_platform_tests.ml.conftest import DAY

TRANSACTION = {"occurred_at": "2026-03-02T10:00:00Z", "card_id": "card-1", "merchant_category": "grocery",
               "amount": 23.5, "card_country": "DE", "merchant_country": "DE", "channel": "card_present"}  # fmt: skip


def _register_approved(ml_env: dict, seed: int) -> tuple[ModelRegistry, str, str]:
    """Train a small model in-process, register it, and record an approval for it."""
    generator = EventGenerator(seed=seed)
    pairs = [generator.transaction(DAY + timedelta(seconds=i)) for i in range(1500)]
    events = pd.DataFrame([event for event, _ in pairs])
    training = compute_features(events).assign(is_fraud=[fraud for _, fraud in pairs])
    registry = ModelRegistry(ml_env["postgres_url"], ml_env["artifact_root"])
    registered = registry.register(train_model(training, max_iter=20), metrics={"holdout_roc_auc": 0.9},
                                   params={"seed": seed}, tags={"evaluation": "passed"})  # fmt: skip
    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
        request_approval(conn, model_name=registry.model_name, version=registered.version,
                         fingerprint=registered.fingerprint, ttl=timedelta(hours=1), metrics={})  # fmt: skip
        decide(conn, model_name=registry.model_name, version=registered.version, decision="approve",
               reviewer=Reviewer("alice", via="os-user"), source="cli")  # fmt: skip
    return registry, registered.version, registered.fingerprint


def _switch(ml_env, serving, registry, version, fingerprint):
    return switch_serving(ml_env["postgres_url"], serving.url, model_name=registry.model_name, version=version,
                          fingerprint=fingerprint, actor="test", verify_timeout_s=15)  # fmt: skip


def _status(ml_env, version) -> str:
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        return conn.execute(
            "SELECT status FROM ml.model_approvals WHERE version = %s", (version,)
        ).fetchone()[0]


def test_input_is_validated_before_any_model_is_needed(serving):
    assert serving.get("/healthz").status_code == 503  # nothing deployed yet
    assert serving.get("/version").json()["version"] is None
    assert serving.post("/predict", json={"transactions": [TRANSACTION]}).status_code == 503
    bad = serving.post("/predict", json={"transactions": [{**TRANSACTION, "amount": -1}]})
    assert bad.status_code == 422 and "amount" in bad.text
    assert (
        serving.post(
            "/predict", json={"transactions": [{**TRANSACTION, "occurred_at": "2026-03-02T10:00:00"}]}
        ).status_code
        == 422
    )
    assert serving.post("/predict", json={"transactions": []}).status_code == 422
    assert (
        serving.post(
            "/predict", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    huge = serving.post("/predict", json={"transactions": [TRANSACTION] * 200})  # ~30 kB > the 20 kB limit
    assert huge.status_code == 413 and "fewer transactions" in huge.text


def test_switch_verifies_the_new_version_and_rolls_back_when_it_fails(ml_env, serving):
    registry, v1, fp1 = _register_approved(ml_env, seed=1)
    served = _switch(ml_env, serving, registry, v1, fp1)
    assert served.version == v1 and served.previous_version is None
    assert serving.get("/version").json()["version"] == v1
    answer = serving.post("/predict", json={"transactions": [TRANSACTION]})
    assert answer.status_code == 200 and answer.json()["version"] == v1
    assert _status(ml_env, v1) == "deployed"

    # Version 2 is approved, but its files break after approval: it fails to load, serving keeps v1.
    _, v2, fp2 = _register_approved(ml_env, seed=2)
    model_dir = Path(
        registry.client.get_model_version_download_uri(registry.model_name, v2).removeprefix("file://")
    )
    with pytest.raises(ApprovalError, match="mismatched"):  # the deployment recomputes the hash first
        corrupted = model_dir / "MLmodel"
        original = corrupted.read_text()
        corrupted.write_text(original + "\n# edited after approval\n")
        _switch(ml_env, serving, registry, v2, registry.compute_fingerprint(v2))
    corrupted.write_text(original)

    # Even when the hash given is the approved one, serving re-checks the files it loads.
    shutil.rmtree(model_dir)
    with pytest.raises(DeploymentFailed, match=f"rolled back to {v1}"):
        _switch(ml_env, serving, registry, v2, fp2)
    assert serving.get("/version").json()["version"] == v1
    assert serving.get("/healthz").status_code == 200
    assert serving.post("/predict", json={"transactions": [TRANSACTION]}).json()["version"] == v1
    assert _status(ml_env, v2) == "rolled_back"
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        state = conn.execute("SELECT version, previous_version FROM ml.serving_state").fetchone()
    assert state == (v1, None)
    with pytest.raises(
        ApprovalError, match="rolled_back, not approved"
    ):  # a failed version needs a new approval
        _switch(ml_env, serving, registry, v2, fp2)
