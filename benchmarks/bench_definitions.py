"""Definitions load (issue 8): the whole code location with 20 declared CSV datasets and 100 API endpoints,
loaded in a fresh Python process the way a code server loads it, against `python -c "import dagster"`.

A temporary copy of the package is generated (first on PYTHONPATH, so every import resolves to it) whose
two component YAMLs declare 20 datasets (the demo dataset under 20 names) and 100 endpoints (plus the two
derived tables); everything else (ml, sensors, resources) is the platform's own.

Where the load's time went (Dec 2026, 2 cores): full garbage collections walking Dagster's import-time objects
(~0.2 s, gone: `defs()` freezes them first), a Jinja compile per YAML string (~0.15 s, gone: only
`{{ ... }}` strings are rendered, plain `env(...)` ones without Jinja). What remains above Dagster's floor is
mostly Dagster's: its position-tracking YAML parser (~0.14 s for the inline lists; an endpoints_file is read
with libyaml), the @asset decorator per asset (~1-3 ms each) and the per-component metadata rewrite.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.result import BenchResult, stopwatch
from orchestration_platform.settings import PACKAGE_DIR

DATASETS = 20
ENDPOINTS = 100
REPEATS = 9  # best of nine, alternating with the anchor: other work on the shared machine only slows a run down
LOAD = ("import orchestration_platform as p; assert p.__file__.startswith({root!r}), p.__file__; "
        "from orchestration_platform.definitions import defs; d = defs(); d.get_repository_def(); "
        "assert len(d.resolve_asset_graph().get_all_asset_keys()) >= {assets}")


def _datasets_yaml(source: Path) -> str:
    declared = yaml.safe_load(source.read_text())
    demo = declared["attributes"]["datasets"][0]
    datasets = []
    for index in range(DATASETS):
        dataset = copy.deepcopy(demo)
        dataset["name"] = f"{demo['name']}_{index:02d}"
        dataset["source"]["landing_pattern"] = f"{dataset['name']}_{{date:%Y-%m-%d}}.csv"
        dataset["source"].pop("url_template_env", None)
        datasets.append(dataset)
    declared["attributes"]["datasets"] = datasets
    return yaml.safe_dump(declared, sort_keys=False)


def _endpoints_yaml(source: Path) -> str:
    declared = yaml.safe_load(source.read_text())
    attributes = declared["attributes"]
    templates = attributes["endpoints"]
    endpoints = []
    for index in range(ENDPOINTS):
        endpoint = copy.deepcopy(templates[index % len(templates)])
        if index >= len(templates):
            endpoint["name"] = f"{endpoint['name']}_{index:03d}"
        endpoints.append(endpoint)
    attributes["endpoints"] = endpoints
    attributes["endpoints_file"] = ""
    return yaml.safe_dump(declared, sort_keys=False)


def make_project(root: Path, endpoints_in_file: bool = False) -> int:
    """Write the generated project under `root` (the endpoints inline in defs.yaml, or in an endpoints file
    beside it); returns the number of assets it must load."""
    package = root / "orchestration_platform"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE_DIR.parent / "pyproject.toml", root / "pyproject.toml")  # [tool.dg], as in the repo
    datasets = package / "defs" / "ingestion" / "datasets" / "defs.yaml"
    endpoints = package / "defs" / "api_etl" / "endpoints" / "defs.yaml"
    datasets.write_text(_datasets_yaml(datasets))
    declared = _endpoints_yaml(endpoints)
    if endpoints_in_file:
        attributes = yaml.safe_load(declared)["attributes"]
        (endpoints.parent / "endpoints.yaml").write_text(yaml.safe_dump(
            {key: attributes[key] for key in ("defaults", "endpoints", "tables")}, sort_keys=False))
        declared = yaml.safe_dump({"type": yaml.safe_load(declared)["type"],
                                   "attributes": {"endpoints_file": "endpoints.yaml"}})
    endpoints.write_text(declared)
    return 2 * DATASETS + ENDPOINTS


def _seconds(code: str, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DAGSTER_DEPLOYMENT": "local"}
    env.pop("API_ENDPOINTS_CONFIG", None)
    with stopwatch() as t:
        subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True)
    return t["seconds"]


FLOOR_LOAD = "from floor.definitions import defs; d = defs(); d.get_repository_def()"


def make_floor_project(root: Path) -> None:
    """The smallest project `load_from_defs_folder` loads: one asset in one module under `defs/`. What it costs
    beyond `import dagster` is Dagster's own share of every load (defs-folder walk, component registry JSON)."""
    (root / "pyproject.toml").write_text('[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\n'
                                         'root_module = "floor"\ndefs_module = "floor.defs"\n')
    defs = root / "floor" / "defs"
    defs.mkdir(parents=True)
    (root / "floor" / "__init__.py").write_text("")
    (defs / "__init__.py").write_text("")
    (defs / "assets.py").write_text("import dagster as dg\n\n\n@dg.asset\ndef one() -> None:\n    pass\n")
    (root / "floor" / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n")


def _best_interleaved(loads: dict[str, tuple[str, Path]]) -> dict[str, float]:
    """Best time of each load and of `import dagster`, one of each per round: other work on the machine only
    slows a run down, and every row then sees the same quiet moments as its anchor."""
    for code, cwd in loads.values():
        _seconds(code, cwd)  # compile the generated modules once, as a deployed image has them compiled
    anchor_cwd = next(iter(loads.values()))[1]
    times: dict[str, list[float]] = {name: [] for name in [*loads, "anchor"]}
    for _ in range(REPEATS):
        for name, (code, cwd) in loads.items():
            times[name].append(_seconds(code, cwd))
        times["anchor"].append(_seconds("import dagster", anchor_cwd))
    return {name: min(values) for name, values in times.items()}


def _measure() -> dict[str, float]:
    """Best load times of the generated project (endpoints inline, in a file), of Dagster's floor and of the
    anchor, interleaved."""
    roots = {name: Path(tempfile.mkdtemp(prefix=f"op-bench-defs-{name}-", dir="/tmp"))
             for name in ("inline", "in_file", "floor")}
    try:
        loads = {name: (LOAD.format(root=str(roots[name]), assets=make_project(roots[name], name == "in_file")),
                        roots[name]) for name in ("inline", "in_file")}
        make_floor_project(roots["floor"])
        loads["floor"] = (FLOOR_LOAD, roots["floor"])
        return _best_interleaved(loads)
    finally:
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)


def run() -> list[BenchResult]:
    best = _measure()
    inline, in_file, floor, anchor = best["inline"], best["in_file"], best["floor"], best["anchor"]
    notes = (f"a fresh process imports the code location, builds every component and the repository "
             f"(asset graph, jobs); best of {REPEATS}, interleaved with the anchor and the floor row")
    return [
        BenchResult(name=f"definitions load: {DATASETS} CSV datasets + {ENDPOINTS} API endpoints (+ ml)",
                    ours=inline, anchor=anchor, unit="s", anchor_name='python -c "import dagster"',
                    target="<= 1.3", target_ok=lambda r: r <= 1.3,
                    notes=f"{notes}; {inline - floor:.2f} s above the floor; endpoints inline in defs.yaml"),
        BenchResult(name=f"the same, {ENDPOINTS} endpoints in an endpoints_file", ours=in_file, anchor=anchor,
                    unit="s", anchor_name='python -c "import dagster"', target="<= 1.3", target_ok=lambda r: r <= 1.3,
                    notes=f"{notes}; {in_file - floor:.2f} s above the floor; endpoints read with libyaml instead "
                          "of dg's position-tracking parser"),
        BenchResult(name="Dagster's floor: load_from_defs_folder of a one-asset project", ours=floor,
                    anchor=anchor, unit="s", anchor_name='python -c "import dagster"', target=None,
                    notes=f"no project code: what any defs-folder project pays beyond `import dagster`; best of "
                          f"{REPEATS}; ours minus this floor is the platform's own share of its load"),
    ]
