"""Read component YAML files with PyYAML's C parser (libyaml) while keeping every value's source position.

Dagster reads each `defs.yaml` through a loader built on PyYAML's pure-Python parser, keeping the line and
column of every value for its error messages. On a long component file (20 datasets and 100 endpoints
declared inline) that parse was the largest single cost of loading the definitions (~0.12 s of ~0.37 s).
`install()` points Dagster's component loader at `parse_yamls_with_source_position` here instead, which
composes the document in C (libyaml) and walks the nodes once (~0.02 s for the same file):

- the same values and the same position tree (`ValueAndSourcePositionTree`), node by node; a test compares
  both on every YAML file of the project and on a corpus of tricky YAML (anchors, merge keys, block
  scalars, dates, several documents);
- a file libyaml refuses, or one using what Dagster's constructor treats specially (merge keys `<<`,
  complex keys, tags other than the plain ones), is parsed again by Dagster's own loader, so the result
  and any YAML error (file, line, column) are exactly Dagster's;
- without libyaml (a PyYAML built without it), nothing is installed.

Installed when `orchestration_platform.components` is imported (`definitions.py` does so before the defs
folder is loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from dagster_shared import yaml_utils
from dagster_shared.yaml_utils import YAML_TIMESTAMP_TAG
from dagster_shared.yaml_utils.source_position import (
    LineCol,
    SourcePosition,
    SourcePositionTree,
    ValueAndSourcePositionTree,
)

MAP, SEQ, STR = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:str"
MERGE = "tag:yaml.org,2002:merge"


class _Unusual(Exception):
    """A construct left to Dagster's loader (merge keys, complex keys, other tags, recursive aliases)."""


def _composer_class(implicits_to_remove: tuple[str, ...]) -> type:
    class Composer(yaml.CSafeLoader):
        """libyaml's parser and composer; PyYAML's resolver without the removed implicit tags."""

    Composer.yaml_implicit_resolvers = {  # the class's own copy: PyYAML's stays untouched
        first: [(tag, pattern) for tag, pattern in resolvers if tag not in implicits_to_remove]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }
    return Composer


class _Walk:
    """Values and position trees from a composed node graph, shaped as Dagster's loader shapes them: a
    mapping's child tree for a key holds the key's position and the value's children."""

    def __init__(self, filename: str, loader: Any) -> None:
        self.filename = filename
        self.loader = loader  # its SafeConstructor builds the scalars (ints, floats, bools, nulls, strings)
        self.done: dict[int, ValueAndSourcePositionTree] = {}  # an alias is the same object as its anchor
        self.open: set[int] = set()

    def position(self, node: Any) -> SourcePosition:
        start, end = node.start_mark, node.end_mark
        return SourcePosition(self.filename, LineCol(start.line + 1, start.column + 1),
                              LineCol(end.line + 1, end.column + 1))

    def tree(self, node: Any) -> ValueAndSourcePositionTree:
        if type(node) is yaml.ScalarNode:  # most nodes: no alias bookkeeping needed
            return ValueAndSourcePositionTree(self.scalar(node), SourcePositionTree(self.position(node), {}))
        known = self.done.get(id(node))
        if known is not None:
            return known
        if id(node) in self.open:
            raise _Unusual("recursive alias")
        self.open.add(id(node))
        if type(node) is yaml.MappingNode and node.tag == MAP:
            raw: dict[Any, Any] = {}
            children: dict[Any, SourcePositionTree] = {}
            for key_node, value_node in node.value:
                if type(key_node) is not yaml.ScalarNode or key_node.tag == MERGE:
                    raise _Unusual("merge or complex key")
                key = self.scalar(key_node)
                item = self.tree(value_node)
                raw[key] = item.value
                children[key] = SourcePositionTree(self.position(key_node), item.source_position_tree.children)
            result = ValueAndSourcePositionTree(raw, SourcePositionTree(self.position(node), children))
        elif type(node) is yaml.SequenceNode and node.tag == SEQ:
            items = [self.tree(item) for item in node.value]
            result = ValueAndSourcePositionTree(
                [item.value for item in items],
                SourcePositionTree(self.position(node), {i: item.source_position_tree for i, item in enumerate(items)}))
        else:
            raise _Unusual(f"tag {node.tag}")
        self.open.discard(id(node))
        self.done[id(node)] = result
        return result

    def scalar(self, node: Any) -> Any:
        if node.tag == STR:  # what SafeConstructor does for a string: its text as written
            return node.value
        construct = self.loader.yaml_constructors.get(node.tag)
        if construct is None or node.tag in (MAP, SEQ):
            raise _Unusual(f"tag {node.tag}")
        return construct(self.loader, node)


def parse_yamls_with_source_position(src: str, filename: str = "<string>",
                                     implicits_to_remove: Sequence[str] = (YAML_TIMESTAMP_TAG,)
                                     ) -> list[ValueAndSourcePositionTree]:
    """Every document of `src` with its source positions, as Dagster's function of the same name returns."""
    removed = tuple(implicits_to_remove)
    try:
        loader = _composer_class(removed)(src)
        try:
            documents = []
            while loader.check_node():
                documents.append(_Walk(filename, loader).tree(loader.get_node()))
            return documents
        finally:
            loader.dispose()
    except (yaml.YAMLError, _Unusual):
        # Dagster's own parser (its module keeps it; only the component loader's reference is replaced)
        return yaml_utils.parse_yamls_with_source_position(src, filename, list(removed))


def install() -> bool:
    """Make Dagster's component loader read YAML through libyaml. True when installed (or already)."""
    from dagster.components.core import decl

    if decl.parse_yamls_with_source_position is parse_yamls_with_source_position:
        return True
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    decl.parse_yamls_with_source_position = parse_yamls_with_source_position
    return True
