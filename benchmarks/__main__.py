"""Run every `benchmarks/bench_*.py` (each exposes `run() -> list[BenchResult]`) and write BENCHMARKS.md.

    python -m benchmarks            # all of them
    python -m benchmarks ingestion  # only modules whose name contains "ingestion"
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from benchmarks.result import BenchResult

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "BENCHMARKS.md"
RESULTS = HERE / "results"  # one JSON per module, so running one module keeps the others' rows


def _save(module: str, rows: list[BenchResult], machine: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    fields = [f.name for f in dataclasses.fields(BenchResult) if f.name != "target_ok"]
    payload = {
        "machine": machine,
        "rows": [{**{f: getattr(r, f) for f in fields}, "verdict": r.verdict} for r in rows],
    }
    (RESULTS / f"{module}.json").write_text(json.dumps(payload, indent=2))


def _load_all() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("bench_*.json"))}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(saved: dict[str, dict], failures: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks [module]`). Ratio = ours / anchor: for times",
        "lower is better, for rates higher is better (where a row's notes say so, the median of per-round",
        "ratios of runs made side by side). Each module's rows say where they were measured.",
        "",
    ]
    for module, payload in saved.items():
        lines += [
            f"## {module.removeprefix('bench_')}",
            "",
            f"Measured {payload['machine']}.",
            "",
            "| benchmark | ours | anchor | anchor figure | ratio | target | verdict | notes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in payload["rows"]:
            ratio = r.get("paired_ratio") or (r["ours"] / r["anchor"] if r["anchor"] else None)
            anchor = f"{_fmt(r['anchor'])} {r['unit']}" if r["anchor"] is not None else "-"
            lines.append(
                f"| {r['name']} | {_fmt(r['ours'])} {r['unit']} | {r['anchor_name']} | {anchor} | "
                f"{_fmt(ratio)} | {r['target'] or '-'} | {r['verdict']} | {r['notes']} |"
            )
        lines.append("")
    for module, error in failures.items():
        lines += [f"## {module}: failed", "", f"`{error}`", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="run only benchmark modules whose name contains one of these")
    parser.add_argument("--no-write", action="store_true", help="print the table but leave BENCHMARKS.md alone")
    args = parser.parse_args()
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(word in m for word in args.only)]
    results: dict[str, list[BenchResult]] = {}
    failures: dict[str, str] = {}
    for name in modules:
        print(f"== {name}", flush=True)
        try:
            results[name] = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as error:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failures[name] = f"{type(error).__name__}: {error}"[:200]
        for r in results.get(name, []):
            print(f"   {r.name}: ours {_fmt(r.ours)} {r.unit}, {r.anchor_name} {_fmt(r.anchor)}, "
                  f"ratio {_fmt(r.ratio)} {r.verdict}", flush=True)
    machine = (
        f"on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    if not args.no_write:
        for name, rows in results.items():
            _save(name, rows, machine)
    table = render(_load_all() if not args.no_write else {}, failures)
    print(table)
    if not args.no_write:
        OUTPUT.write_text(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
