"""Shared by the benchmark scripts: median wall time over repeats, and one results file."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from mtl_utils.precision import cpu_bf16_is_fast

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


def machine() -> dict:
    """What the timings ran on: machines differ between runs here (one day's 2-core CPU had AVX512 and
    bf16 units, another's AVX2 alone, with half the matmul speed), so every entry names its own."""
    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_fast_bf16": cpu_bf16_is_fast(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__.split("+")[0],
            "device": "cuda" if torch.cuda.is_available() else "cpu", "date": datetime.date.today().isoformat()}


def report(figures: dict[str, float], details: dict) -> None:
    """Print `NAME: VALUE` lines and merge figures and details into results/benchmarks.json."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name, value in figures.items():  # None: not measurable here (the details say why)
        results[name] = {"value": value, **details}
        print(f"{name}: {'not measured' if value is None else f'{value:.3f}'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
