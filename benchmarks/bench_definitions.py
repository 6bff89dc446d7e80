"""Definitions load (issue 8): the whole code location with 20 declared CSV datasets and 100 API endpoints,
loaded in a fresh Python process the way a code server loads it, against `python -c "import dagster"`.

A temporary copy of the package is generated (first on PYTHONPATH, so every import resolves to it) whose
two component YAMLs declare 20 datasets (the demo dataset under 20 names) and 100 endpoints (plus the two
derived tables); everything else (ml, sensors, resources) is the platform's own.

Two ways to time a process, both reported:
- whole process, as the issue states the anchor (`python -c "import dagster"` from start to exit). The exit
  counts: tearing down Dagster's import alone takes ~0.18 s (the collector walks its objects), and the
  platform's load freezes the heap first (`gc.freeze()`), which makes its own exit cheaper;
- until loaded (each program ends with `os._exit(0)`): the load alone, which is what a code server waits for.

Each load is paired with an anchor run right after it, and the ratio is the median of the pairs' ratios
(the machine's speed drifts over a minute; a ratio of two minima taken at different moments does not).
Two reference loads bound what is Dagster's: a one-asset defs-folder project (Dagster's fixed share), and
the same graph as the platform's (150 assets, 640 checks, 20 jobs and schedules) written by hand in one
module, with no YAML, validation or platform code.

Where the load's time went (Dec 2026, 2 cores): Dagster's position-tracking YAML parser (~0.12 s for the
inline lists; now composed by libyaml, `components/yaml_positions.py`), collections while the objects pile up
(~0.03 s; off during the load), then Dagster's own construction per definition: the @asset decorator
(~1-3 ms each), outputs per check, the per-component metadata rewrite, the component-type catalog.
"""

from __future__ import annotations

import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.result import BenchResult, stopwatch
from orchestration_platform.settings import PACKAGE_DIR

DATASETS = 20
ENDPOINTS = 100
REPEATS = 15  # rounds; each runs every load and the anchor once, back to back
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


UNTIL_LOADED = "; import os; os._exit(0)"  # appended: the time until the work is done, not the teardown


def _seconds(code: str, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DAGSTER_DEPLOYMENT": "local"}
    env.pop("API_ENDPOINTS_CONFIG", None)
    with stopwatch() as t:
        subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True)
    return t["seconds"]


FLOOR_LOAD = "from floor.definitions import defs; d = defs(); d.get_repository_def()"


def make_floor_project(root: Path) -> None:
    """The smallest project `load_from_defs_folder` loads: one asset in one module under `defs/`, loaded with
    the platform's garbage-collector policy (`definitions.py`). What it costs beyond `import dagster` is
    Dagster's own share of every load (defs-folder walk, pyproject, the component-type catalog)."""
    (root / "pyproject.toml").write_text('[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\n'
                                         'root_module = "floor"\ndefs_module = "floor.defs"\n')
    defs = root / "floor" / "defs"
    defs.mkdir(parents=True)
    (root / "floor" / "__init__.py").write_text("")
    (defs / "__init__.py").write_text("")
    (defs / "assets.py").write_text("import dagster as dg\n\n\n@dg.asset\ndef one() -> None:\n    pass\n")
    (root / "floor" / "definitions.py").write_text(  # the same garbage-collector policy as the platform's load
        "import gc\nfrom pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    gc.freeze()\n    gc.disable()\n    try:\n"
        "        return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
        "    finally:\n        gc.enable()\n")


BARE_GRAPH = '''"""The platform's graph with no YAML, validation or platform code (a benchmark reference)."""
import dagster as dg

assets, checks, jobs, schedules = [], [], [], []
for i in range(DATASETS):
    part = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    raw_key, cleaned_key = dg.AssetKey(["ingestion", f"ds{i}", "raw"]), dg.AssetKey(["ingestion", f"ds{i}", "cleaned"])

    @dg.asset(key=raw_key, partitions_def=part, group_name="ingestion", kinds={"csv"})
    def raw(context: dg.AssetExecutionContext) -> None:
        pass

    @dg.asset(key=cleaned_key, deps=[raw_key], partitions_def=part, group_name="ingestion", kinds={"sqlite"},
              check_specs=[dg.AssetCheckSpec(name, asset=cleaned_key) for name in ("schema", "drop_rate")])
    def cleaned(context: dg.AssetExecutionContext):
        pass

    @dg.multi_asset_check(specs=[dg.AssetCheckSpec(f"check{j}", asset=cleaned_key, blocking=True) for j in range(5)])
    def blocking(context: dg.AssetCheckExecutionContext):
        yield from ()

    job = dg.define_asset_job(f"ds{i}_job", selection=[raw_key, cleaned_key], partitions_def=part)
    assets += [raw, cleaned]
    checks.append(blocking)
    jobs.append(job)
    schedules.append(dg.build_schedule_from_partitioned_job(job))
specs = [dg.AssetSpec(["api", f"ep{i}"], group_name="api", kinds={"postgres"}) for i in range(ENDPOINTS)]


@dg.multi_asset(specs=specs, can_subset=True,
                check_specs=[dg.AssetCheckSpec(f"c{j}", asset=s.key, blocking=True) for s in specs for j in range(5)])
def endpoints(context: dg.AssetExecutionContext):
    yield from ()


for i in range(10):
    assets.append(dg.asset(name=f"other{i}")(lambda: None))
defs = dg.Definitions(assets=[*assets, endpoints], asset_checks=checks, jobs=jobs, schedules=schedules)
del raw, cleaned, blocking, endpoints, job
'''


def make_bare_graph_project(root: Path) -> None:
    """The platform's graph shape (20 datasets: raw, cleaned with 2 checks, 5 blocking checks, a job and a
    schedule; 100 endpoints with 5 checks each in one multi-asset; 10 other assets) in one hand-written module,
    loaded like the floor project: what Dagster alone costs to build a graph this size."""
    make_floor_project(root)
    (root / "floor" / "defs" / "assets.py").write_text(
        BARE_GRAPH.replace("DATASETS", str(DATASETS)).replace("ENDPOINTS", str(ENDPOINTS)))


def _interleaved(loads: dict[str, tuple[str, Path, bool]]) -> dict[str, list[tuple[float, float]]]:
    """Per load, (its time, the time of the anchor run right after it), once per round: each load is compared
    with an anchor measured in the same moment of the machine. A load marked `True` and its anchor are timed
    until loaded (no teardown); the others as whole processes."""
    for code, cwd, _ in loads.values():
        _seconds(code, cwd)  # compile the generated modules once, as a deployed image has them compiled
    pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in loads}
    for _ in range(REPEATS):
        for name, (code, cwd, until_loaded) in loads.items():
            end = UNTIL_LOADED if until_loaded else ""
            pairs[name].append((_seconds(code + end, cwd), _seconds("import dagster" + end, cwd)))
    return pairs


def _paired(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(ours / anchor for ours, anchor in pairs)


def _measure() -> dict[str, list[tuple[float, float]]]:
    """(load, anchor) time pairs of every load, round by round."""
    roots = {name: Path(tempfile.mkdtemp(prefix=f"op-bench-defs-{name}-", dir="/tmp"))
             for name in ("inline", "in_file", "floor", "bare")}
    try:
        codes = {name: LOAD.format(root=str(roots[name]), assets=make_project(roots[name], name == "in_file"))
                 for name in ("inline", "in_file")}
        make_floor_project(roots["floor"])
        make_bare_graph_project(roots["bare"])
        bare_load = FLOOR_LOAD + "; assert len(d.resolve_asset_graph().get_all_asset_keys()) >= 150"
        return _interleaved({
            "inline": (codes["inline"], roots["inline"], False),
            "in_file": (codes["in_file"], roots["in_file"], False),
            "inline_loaded": (codes["inline"], roots["inline"], True),
            "in_file_loaded": (codes["in_file"], roots["in_file"], True),
            "bare_loaded": (bare_load, roots["bare"], True),
            "floor_loaded": (FLOOR_LOAD, roots["floor"], True),
        })
    finally:
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)


def run() -> list[BenchResult]:
    pairs = _measure()

    def row(name: str, title: str, target: bool, extra: str) -> BenchResult:
        ours, anchors = [t for t, _ in pairs[name]], [a for _, a in pairs[name]]
        loaded = name.endswith("_loaded")
        return BenchResult(
            name=title, ours=statistics.median(ours), anchor=statistics.median(anchors), unit="s",
            anchor_name='python -c "import dagster"' + (" until imported" if loaded else " (whole process)"),
            target="<= 1.3" if target else None, target_ok=(lambda r: r <= 1.3) if target else None,
            paired_ratio=_paired(pairs[name]),
            notes=f"ratio = median over {REPEATS} rounds of (this load / the anchor run right after it), figures "
                  f"are medians (best: {min(ours):.3f} s vs {min(anchors):.3f} s); {extra}")

    share = {name: _paired(pairs[name]) - _paired(pairs["floor_loaded"]) for name in ("inline_loaded", "bare_loaded")}
    whole = ("a fresh process imports the code location, builds every component and the repository (asset graph, "
             "jobs) and exits; both sides timed to their exit, as the issue states the anchor")
    return [
        row("inline", f"definitions load: {DATASETS} CSV datasets + {ENDPOINTS} API endpoints (+ ml)", True,
            f"{whole}; datasets and endpoints inline in their defs.yaml"),
        row("in_file", f"the same, {ENDPOINTS} endpoints in an endpoints_file", True,
            f"{whole}; the endpoints in a file beside defs.yaml"),
        row("inline_loaded", "the same load, until loaded (no teardown on either side)", False,
            f"what a code server waits for; {share['inline_loaded']:.2f} above Dagster's floor (row below), of "
            f"which {share['bare_loaded']:.2f} is Dagster building this graph (the bare-graph row); exits are left "
            "out because freezing the heap makes the platform's exit ~0.2 s cheaper than the anchor's"),
        row("in_file_loaded", f"the same, {ENDPOINTS} endpoints in an endpoints_file, until loaded", False,
            "as the row above"),
        row("bare_loaded", "Dagster alone, the same graph hand-written (no YAML), until loaded", False,
            "150 assets, 640 checks, 20 jobs and schedules in one module, no validation or platform code, the "
            "platform's collector policy: no code location with this graph loads faster on Dagster 1.13, so a "
            "ratio of 1.3 until loaded is out of reach for it"),
        row("floor_loaded", "Dagster's floor: load_from_defs_folder of a one-asset project, until loaded", False,
            "no project code, the platform's collector policy: what any defs-folder project pays beyond `import "
            "dagster` (defs-folder walk, pyproject, the component-type catalog Dagster adds)"),
    ]
