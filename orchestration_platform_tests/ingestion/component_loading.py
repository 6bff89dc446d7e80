"""Load component instances from YAML the way `dg` does: the project's own `defs/ingestion`, or a
`defs.yaml` written into a throwaway project (Dagster's defs-folder sandbox)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster.components.core.component_tree import ComponentTree
from dagster.components.testing import create_defs_folder_sandbox

import orchestration_platform

COMPONENT_TYPE = "orchestration_platform.components.csv_datasets.CsvDatasets"


@functools.cache
def project_ingestion_defs() -> dg.Definitions:
    """The project's `defs/ingestion` folder (the CSV datasets component and the demo summary)."""
    tree = ComponentTree.for_project(Path(orchestration_platform.__file__).parent)
    return tree.build_defs("ingestion")


@contextmanager
def datasets_defs(datasets: list[dict[str, Any]]) -> Iterator[dg.Definitions]:
    """Definitions built from a `defs.yaml` declaring `datasets`, in a temporary project."""
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "datasets"
        folder.mkdir()
        (folder / "defs.yaml").write_text(yaml.safe_dump({"type": COMPONENT_TYPE,
                                                          "attributes": {"datasets": datasets}}))
        with sandbox.build_component_tree() as tree:
            yield tree.build_defs(folder)
