"""The code location: every definition under `defs/`, assembled in one place.

`dagster dev` and the Kubernetes code server load `orchestration_platform.definitions:defs`.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
