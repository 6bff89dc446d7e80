"""Component YAML read through libyaml gives exactly what Dagster's own loader gives: the same values, the same
source positions (which Dagster's error messages quote), and Dagster's own errors for broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster.components.core import decl
from dagster_shared.yaml_utils import parse_yamls_with_source_position as dagster_parse

import orchestration_platform
from orchestration_platform.components import yaml_positions
from orchestration_platform.components.yaml_positions import parse_yamls_with_source_position as fast_parse

PROJECT_YAML = sorted(Path(orchestration_platform.__file__).parent.rglob("*.yaml")) + sorted(
    (Path(orchestration_platform.__file__).parent.parent / "docs").glob("*.yaml"))

TRICKY = {
    "scalars": "a: 1\nb: 1.5\nc: true\nd: no\ne: ~\nf: null\ng: '007'\nh: 0o17\ni: 0x1F\nj: 1_000\nk: .inf\n"
               "l: -.nan\nm: 2026-01-05\nn: 2026-01-05T10:00:00Z\no: !!str 12\np: ''\nq: \"\\u00e9t\\u00e9\"\n",
    "block scalars": "literal: |\n  line one\n  line two\nfolded: >\n  folded\n  text\nkeep: |+\n  kept\n\n"
                     "strip: |-\n  stripped\nafter: 1\n",
    "flow style": "endpoints: [{name: a, params: {page: 1}}, {name: b, tags: [x, y]}]\nempty: {}\nnone: []\n",
    "anchors and aliases": "defaults: &d {retries: 3, timeout_s: 10}\nfirst: *d\nsecond: *d\n"
                           "list: &l [1, 2]\nagain: *l\n",
    "merge keys": "base: &b {a: 1, b: 2}\nchild:\n  <<: *b\n  b: 3\n",
    "duplicate keys": "a: 1\nb: 2\na: 3\n",
    "several documents": "type: one\n---\ntype: two\nattributes: {x: 1}\n---\n",
    "empty document": "",
    "comments only": "# nothing here\n",
    "nested": "a:\n  - b:\n      - c: [1, {d: e}]\n        f: |\n          text\n  - 2\n",
    "unicode and long lines": "name: café\nnote: " + "x" * 5000 + "\nemoji: \"\\U0001F600\"\n",
    "windows newlines": "a: 1\r\nb:\r\n  - c\r\n",
    "binary": "blob: !!binary aGVsbG8=\n",
    "complex key": "? [a, b]\n: value\n",
    "set": "s: !!set {a, b}\n",
    "recursive alias": "a: &a [1, *a]\n",
    "jinja templates": "url: \"{{ env('SOURCE_URL') }}\"\nlist: \"{{ [1, 2] }}\"\n",
}


def _as_comparable(documents) -> list:
    def tree(node):
        return node.position, {key: tree(child) for key, child in node.children.items()}

    return [(document.value, tree(document.source_position_tree)) for document in documents]


def _same_as_dagster(text: str, filename: str) -> None:
    try:
        expected = _as_comparable(dagster_parse(text, filename))
    except Exception as dagster_error:
        with pytest.raises(type(dagster_error)) as ours:
            fast_parse(text, filename)
        assert str(ours.value) == str(dagster_error)
        return
    assert _as_comparable(fast_parse(text, filename)) == expected


@pytest.mark.parametrize("path", PROJECT_YAML, ids=lambda p: p.name if p.name != "defs.yaml" else p.parent.name)
def test_every_yaml_file_of_the_project_reads_as_dagster_reads_it(path: Path) -> None:
    _same_as_dagster(path.read_text(), str(path))


@pytest.mark.parametrize("text", list(TRICKY.values()), ids=list(TRICKY))
def test_tricky_yaml_reads_as_dagster_reads_it(text: str) -> None:
    _same_as_dagster(text, "tricky.yaml")


def test_a_long_component_file_reads_as_dagster_reads_it() -> None:
    endpoints = [{"name": f"orders_{i:03d}", "url": f"https://api.example.com/v1/orders/{i}", "primary_key": ["id"],
                  "columns": {"id": "integer", "total": "numeric", "placed_at": "timestamp"},
                  "pagination": {"type": "page", "page_size": 100}, "deadline_s": 30.5, "enabled": i % 2 == 0,
                  "description": f"Orders of shop {i}\nover two lines"} for i in range(200)]
    text = yaml.safe_dump({"type": "orchestration_platform.components.api_endpoints.ApiEndpoints",
                           "attributes": {"endpoints": endpoints}}, sort_keys=False)
    _same_as_dagster(text, "defs.yaml")


def test_a_broken_file_fails_with_dagsters_error_naming_the_file_and_line() -> None:
    broken = "type: x\nattributes:\n  datasets:\n    - name: a\n   bad: indentation\n"
    with pytest.raises(yaml.MarkedYAMLError) as error:
        fast_parse(broken, "defs/ingestion/datasets/defs.yaml")
    assert error.value.problem_mark.name == "defs/ingestion/datasets/defs.yaml"
    assert error.value.problem_mark.line == 4  # 0-based, as Dagster reports it: line 5


def test_loading_the_definitions_reads_component_yaml_through_libyaml() -> None:
    from orchestration_platform.definitions import defs

    assert yaml_positions.install()
    assert decl.parse_yamls_with_source_position is fast_parse
    assert defs().resolve_asset_graph().get_all_asset_keys()  # every defs.yaml of the project loaded through it
