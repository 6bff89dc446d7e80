"""Component YAML: only strings holding a `{{ ... }}` template are rendered; every other value stays as written."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration_platform.components.templates import render_templates
from orchestration_platform_tests.ingestion.component_loading import datasets_defs
from orchestration_platform_tests.ingestion.test_csv_datasets_component import _minimal

TEMPLATE = "{{ env('OP_TEST_CASES_HOST', 'https://fallback.example.org') }}/csv/{date}.csv"


def _raw_descriptions(defs) -> dict[str, str]:
    return {a.key.path[1]: a.descriptions_by_key[a.key] for a in defs.assets if a.key.path[-1] == "raw"}


def test_one_env_template_shared_by_two_datasets_is_rendered_for_each(monkeypatch) -> None:
    monkeypatch.setenv("OP_TEST_CASES_HOST", "https://mirror.example.org")
    second = _minimal(name="other", source={"url_template": TEMPLATE, "landing_pattern": "other_{date}.csv"})
    with datasets_defs([_minimal(source={"url_template": TEMPLATE}), second]) as defs:
        descriptions = _raw_descriptions(defs)
    assert set(descriptions) == {"cases", "other"}
    for text in descriptions.values():
        assert "Source: `https://mirror.example.org/csv/{date}.csv`" in text, text


def test_a_quoted_value_that_looks_like_a_number_stays_a_string() -> None:
    with datasets_defs([_minimal(tags={"schema_version": "1.0"})]) as defs:
        tags = {a.key.path[-1]: a.tags_by_key[a.key] for a in defs.assets}
    assert tags["raw"]["schema_version"] == "1.0"


@pytest.mark.parametrize("text", [
    "{{ env('OP_TEST_SET') }}", "{{ env('OP_TEST_SET', 'x') }}/csv/{date}.csv", "{{env(\"OP_TEST_SET\")}}",
    "{{ env('OP_TEST_UNSET', '2026-01-01') }}", "{{ env('OP_TEST_UNSET', '') }}", "{{ env('OP_TEST_NUMBER') }}",
    "{{ env('OP_TEST_UNSET', '0.5') }}", "{{ env('OP_TEST_NUMBER') }}{{ env('OP_TEST_NUMBER') }}",
    " {{ env('OP_TEST_NUMBER') }}", "{{ env('OP_TEST_SET') }} and {{ env('OP_TEST_UNSET', 'b') }}",
    "{{ env('OP_TEST_LIST') }}", "{{ env('OP_TEST_SET') | upper }}", "{{ env('OP_TEST_SET') }}\n",
])
def test_env_templates_render_as_dagster_renders_them(text: str, monkeypatch) -> None:
    monkeypatch.setenv("OP_TEST_SET", "https://mirror.example.org")
    monkeypatch.setenv("OP_TEST_NUMBER", "48")
    monkeypatch.setenv("OP_TEST_LIST", "[1, 2]")
    monkeypatch.delenv("OP_TEST_UNSET", raising=False)
    context = dg.ResolutionContext.default()
    assert render_templates(context, {"value": [text]}) == {"value": [context.resolve_value(text)]}


def test_an_unset_variable_without_default_fails_naming_it(monkeypatch) -> None:
    monkeypatch.delenv("OP_TEST_UNSET", raising=False)
    with pytest.raises(Exception, match="OP_TEST_UNSET"):
        render_templates(dg.ResolutionContext.default(), {"url": "{{ env('OP_TEST_UNSET') }}/x"})
