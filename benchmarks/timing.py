"""Shared by the benchmark scripts: median wall time over repeats, and one results file."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parents[1] / "results" / "benchmarks.json"


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(figures: dict[str, float], details: dict) -> None:
    """Print `NAME: VALUE` lines and merge figures and details into results/benchmarks.json."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name, value in figures.items():
        results[name] = {"value": value, **details}
        print(f"{name}: {value:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
