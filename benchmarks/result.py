"""A benchmark result: our figure, the anchor's figure and their ratio against a target."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchResult:
    """One row of BENCHMARKS.md.

    `ratio` is ours / anchor's for times (lower is better) unless `higher_is_better`, in which
    case it is ours / anchor's for rates. `target` is the ratio the issue asks for (or None).
    """

    name: str
    ours: float
    anchor: float | None
    unit: str
    anchor_name: str
    target: str | None = None
    target_ok: Callable[[float], bool] | None = None
    notes: str = ""
    higher_is_better: bool = False
    # The median of per-round ratios (ours / the anchor measured right beside it), when the benchmark pairs
    # them: robust to the machine's speed drifting between rounds, which a ratio of two minima is not.
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.anchor in (None, 0):
            return None
        return self.ours / self.anchor

    @property
    def verdict(self) -> str:
        if self.target_ok is None:
            return ""
        value = self.ratio if self.anchor is not None else self.ours
        return "meets target" if value is not None and self.target_ok(value) else "MISSES target"


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then `t["seconds"]`."""
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start
