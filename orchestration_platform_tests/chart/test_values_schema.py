"""values.schema.json refuses wrong types, unknown keys, missing required settings and weaker
security; the error names the offending value. Helm checks it before rendering anything."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from orchestration_platform_tests.chart.conftest import CHART_DIR, REQUIRED_VALUES, Helm, HelmError


def _without(values: dict[str, Any], *path: str) -> dict[str, Any]:
    values = copy.deepcopy(values)
    node = values
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return values


def _with(values: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(values)
    for key, value in update.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


MUST_FAIL: dict[str, tuple[dict[str, Any], str]] = {
    # missing required settings
    "no image repository": (_without(REQUIRED_VALUES, "image", "repository"), "/image/repository"),
    "no image tag": (_without(REQUIRED_VALUES, "image", "tag"), "/image/tag"),
    "no postgres secret": (
        _without(REQUIRED_VALUES, "global", "postgresqlSecretName"),
        "/global/postgresqlSecretName",
    ),
    "no platform secret": (
        _without(REQUIRED_VALUES, "platform", "existingSecret"),
        "/platform/existingSecret",
    ),
    "no postgres host": (
        _without(REQUIRED_VALUES, "postgresql", "postgresqlHost"),
        "/postgresql/postgresqlHost",
    ),
    "ingress without host": (
        _with(REQUIRED_VALUES, {"ingress": {"enabled": True}}),
        "/ingress/dagsterWebserver/host",
    ),
    "ingress the network policy blocks": (
        _with(
            REQUIRED_VALUES,
            {
                "ingress": {
                    "enabled": True,
                    "dagsterWebserver": {
                        "host": "dagster.example.com",
                        "path": "/",
                        "pathType": "Prefix",
                        "tls": {"enabled": False},
                    },
                }
            },
        ),
        "webserverIngressFrom",
    ),
    # wrong types
    "replicas as text": (
        _with(REQUIRED_VALUES, {"dagsterWebserver": {"replicaCount": "two"}}),
        "/dagsterWebserver/replicaCount",
    ),
    "max runs as text": (
        _with(
            REQUIRED_VALUES,
            {
                "dagsterDaemon": {
                    "runCoordinator": {"config": {"queuedRunCoordinator": {"maxConcurrentRuns": "many"}}}
                }
            },
        ),
        "maxConcurrentRuns",
    ),
    "bad start date": (
        _with(REQUIRED_VALUES, {"platform": {"settings": {"ingestionStartDate": "01/02/2026"}}}),
        "/platform/settings/ingestionStartDate",
    ),
    "bad pull policy": (_with(REQUIRED_VALUES, {"image": {"pullPolicy": "Sometimes"}}), "/image/pullPolicy"),
    "privileged port": (_with(REQUIRED_VALUES, {"dagsterWebserver": {"port": 80}}), "/dagsterWebserver/port"),
    # unknown keys (typos)
    "unknown top-level key": (
        _with(REQUIRED_VALUES, {"dagsterWebServer": {"replicaCount": 2}}),
        "dagsterWebServer",
    ),
    "misspelled nested key": (_with(REQUIRED_VALUES, {"image": {"pulPolicy": "Always"}}), "pulPolicy"),
    # the platform's rules
    "latest tag": (_with(REQUIRED_VALUES, {"image": {"tag": "latest"}}), "/image/tag"),
    "bundled postgres": (_with(REQUIRED_VALUES, {"postgresql": {"enabled": True}}), "/postgresql/enabled"),
    "psycopg3 scheme": (
        _with(REQUIRED_VALUES, {"postgresql": {"postgresqlScheme": "postgresql"}}),
        "/postgresql/postgresqlScheme",
    ),
    "secret as plain env": (
        _with(REQUIRED_VALUES, {"platform": {"env": {"POSTGRES_URL": "postgresql://u:p@h/db"}}}),
        "POSTGRES_URL",
    ),
    "root allowed": (
        _with(REQUIRED_VALUES, {"podSecurityContext": {"runAsNonRoot": False}}),
        "/podSecurityContext/runAsNonRoot",
    ),
    "writable root fs": (
        _with(REQUIRED_VALUES, {"securityContext": {"readOnlyRootFilesystem": False}}),
        "/securityContext/readOnlyRootFilesystem",
    ),
    "privilege escalation": (
        _with(REQUIRED_VALUES, {"securityContext": {"allowPrivilegeEscalation": True}}),
        "/securityContext/allowPrivilegeEscalation",
    ),
    "no resources": (
        _with(REQUIRED_VALUES, {"modelServing": {"resources": None}}),
        "resources",
    ),  # null deletes the default
    "no memory limit": (
        _with(REQUIRED_VALUES, {"modelServing": {"resources": {"limits": {"memory": None}}}}),
        "memory",
    ),
}


@pytest.mark.parametrize("case", sorted(MUST_FAIL))
def test_bad_values_are_refused_with_the_offending_path(helm: Helm, case: str) -> None:
    values, expected_in_error = MUST_FAIL[case]
    with pytest.raises(HelmError) as error:
        helm.template((), values)
    message = str(error.value)
    assert "schema" in message, message
    assert expected_in_error in message, message


def test_the_required_values_alone_render(helm: Helm) -> None:
    """The must-fail cases above fail for their one defect, not because the base is broken."""
    assert helm.template((), REQUIRED_VALUES)


def test_the_schema_is_self_contained() -> None:
    """Helm fetches remote $refs (impossible offline) and resolves relative file refs wrongly."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert refs, "the schema shares definitions through $defs"
    assert all(ref.startswith("#/$defs/") for ref in refs), [r for r in refs if not r.startswith("#/$defs/")]
    for ref in refs:
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
    assert schema["additionalProperties"] is False
