"""Decide which files in the landing zone are ready to ingest, and which are rejected and why.

A file is ingested once per version (name, size, mtime): a file replaced by a new version is
ingested again; the same version never twice. A file is *ready* when it is a regular file,
not a symlink, inside the zone, readable, not a partial upload (`*.part`, `*.tmp`, dotfiles are
ignored until renamed) and settled: unchanged since the previous scan or not modified for
`settle_s` seconds. Its name says which dataset and partition it fills: `classify(name)` answers
(dataset, partition key), or the reason it fits none (by default: any name carrying a `YYYY-MM-DD` day).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".swp")
DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Verdict:
    path: Path
    reason: str | None  # None: acceptable


@dataclass(frozen=True)
class LandedFile:
    relative: str
    path: Path
    version: str  # "size:mtime_ns": a new version of the same name is a new file
    day: str  # the partition key it fills
    dataset: str = ""


Classifier = Callable[[str], "tuple[str, str] | str"]


def day_in_name(name: str) -> tuple[str, str] | str:
    """The default classifier: any file whose name carries a day (`YYYY-MM-DD`)."""
    match = DAY_IN_NAME.search(name)
    if match is None:
        return "has no day in its name; name it like daily_cases_2026-01-31.csv"
    return "", match.group(1)


@dataclass
class ScanResult:
    ready: list[LandedFile]
    waiting: dict[str, str]  # relative path -> version seen now (not settled yet)
    rejected: dict[str, str]  # relative path -> reason
    present: set[str]  # every .csv file seen in this scan
    ignored: int = 0


def inspect_landed_file(zone: Path, path: Path) -> Verdict:
    """Whether `path` may be read as a landed file: inside `zone`, no symlink, a readable regular file."""
    zone_real = zone.resolve()
    try:
        info = os.lstat(path)
    except OSError as error:
        return Verdict(path, f"cannot be read ({error.strerror})")
    if stat.S_ISLNK(info.st_mode):
        return Verdict(path, "is a symlink; copy the file into the landing zone instead of linking it")
    if not path.resolve().is_relative_to(zone_real):
        return Verdict(path, f"is outside the landing zone {zone_real}")
    if not stat.S_ISREG(info.st_mode):
        return Verdict(path, "is not a regular file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        return Verdict(path, f"cannot be read ({error.strerror}); fix its permissions")
    return Verdict(path, None)


def scan_landing_zone(
    zone: Path,
    *,
    seen: dict[str, str],
    previous_waiting: dict[str, str],
    settle_s: float = 2.0,
    now: float | None = None,
    classify: Classifier = day_in_name,
) -> ScanResult:
    """Walk the zone (symlinked folders are not followed) and sort its files into ready/waiting/rejected.

    `seen` maps relative paths to the version already ingested; `previous_waiting` is the version
    each unsettled file had in the previous scan.
    """
    now = time.time() if now is None else now
    result = ScanResult([], {}, {}, set())
    if not zone.is_dir():
        return result
    for folder, dirnames, filenames in os.walk(zone, followlinks=False):
        for name in dirnames:
            if os.path.islink(os.path.join(folder, name)):
                rel = os.path.relpath(os.path.join(folder, name), zone)
                result.rejected[rel] = "is a symlinked folder; the landing zone does not follow links"
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
        for name in sorted(filenames):
            path = Path(folder) / name
            rel = os.path.relpath(path, zone)
            if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
                result.ignored += 1  # still being written; it will be renamed when complete
                continue
            if not name.lower().endswith(".csv"):
                result.rejected[rel] = "is not a .csv file"
                continue
            verdict = inspect_landed_file(zone, path)
            if verdict.reason is not None:
                result.rejected[rel] = verdict.reason
                continue
            result.present.add(rel)
            info = os.lstat(path)
            version = f"{info.st_size}:{info.st_mtime_ns}"
            if seen.get(rel) == version:
                continue
            claimed = classify(name)
            if isinstance(claimed, str):
                result.rejected[rel] = claimed
                continue
            settled = previous_waiting.get(rel) == version or now - info.st_mtime >= settle_s
            if not settled:
                result.waiting[rel] = version
                continue
            if info.st_size == 0:
                result.rejected[rel] = "is empty (0 bytes); write the whole file, then drop it"
                continue
            result.ready.append(LandedFile(rel, path, version, claimed[1], claimed[0]))
    result.ready.sort(key=lambda f: (f.day, f.relative))
    return result
