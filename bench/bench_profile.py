"""Profiling the churn spec's columns: the fast profiler against `whylogs.log`, side by side in one run.

Both profile the same frame (the spec's profiled columns, as `profile_frame` casts them) at 1M rows
of the demo's churn data (`synth_batch`, as bench_spine makes it). CPU seconds (process time, which
counts polars' threads too) are the figure, since the machine is shared; wall time is printed
beside them. The runs alternate, and each side keeps its fastest run, so a burst of load on the
machine hits both alike. A polars one-pass `describe` of the same frame is the floor for context.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.results_io import record
from infra.demo.synth import synth_batch
from lakeloop.spec import DatasetSpec
from tasks.data.fast_sketches import profile_polars, whylogs_pandas
from tasks.data.profiling import frame_for_profile
from tasks.data.whylogs_compat import profile_pandas

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"


def cpu_and_wall(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU and wall seconds of `fn()`, with the previous run's garbage collected first (as timeit does)."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="alternating runs of each profiler")
    args = ap.parse_args()
    spec = DatasetSpec.from_yaml(SPEC_PATH)
    frame = frame_for_profile(synth_batch(args.rows, seed=100).data, spec)
    profile_polars(frame.head(1000))  # warm imports and whylogs' resolver cache, not counted

    fast: list[tuple[float, float]] = []
    slow: list[tuple[float, float]] = []
    loads: list[float] = []
    converts: list[float] = []
    for _ in range(args.runs):
        loads.append(os.getloadavg()[0])
        cpu, wall, fast_view = cpu_and_wall(lambda: profile_polars(frame))
        fast.append((cpu, wall))
        # whylogs.log on the pandas frame it is handed; the conversion is timed apart (whylogs' input, not
        # whylogs' work), so the ratio is the conservative one
        convert_cpu, _, pdf = cpu_and_wall(lambda: whylogs_pandas(frame))
        converts.append(convert_cpu)
        cpu, wall, slow_view = cpu_and_wall(partial(profile_pandas, pdf, fast_numeric=False))
        slow.append((cpu, wall))
        print(f"  fast {fast[-1][0]:.3f} s cpu ({fast[-1][1]:.3f} wall)   whylogs.log {cpu:.2f} s cpu "
              f"({wall:.2f} wall)   load {loads[-1]:.2f}", flush=True)
    describe_cpu, _, _ = cpu_and_wall(lambda: frame.describe())

    fast_counts = {c: v.get_metric("counts").to_summary_dict() for c, v in fast_view.get_columns().items()}
    slow_counts = {c: v.get_metric("counts").to_summary_dict() for c, v in slow_view.get_columns().items()}
    assert fast_counts == slow_counts, "the fast profile's counts differ from whylogs.log's"

    fast_cpu, fast_wall = min(fast)
    slow_cpu, slow_wall = min(slow)
    figures = {
        "fast_vs_whylogs": round(slow_cpu / fast_cpu, 2),
        "whylogs_cpu_s": round(slow_cpu, 3),
        "fast_cpu_s": round(fast_cpu, 3),
        "whylogs_wall_s": round(slow_wall, 3),
        "fast_wall_s": round(fast_wall, 3),
        "pandas_conversion_cpu_s": round(min(converts), 3),
        "polars_describe_cpu_s": round(describe_cpu, 3),
        "rows": frame.height,
        "columns": frame.width,
        "runs": args.runs,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load_avg_1m_during_runs": [round(x, 2) for x in loads],
        "cores": os.cpu_count(),
        "goal": 15,
    }
    print(f"profile {frame.height:,} rows x {frame.width} columns: whylogs.log {slow_cpu:.2f} s cpu, "
          f"fast {fast_cpu:.3f} s cpu: x{figures['fast_vs_whylogs']} (goal >= 15); polars describe "
          f"{describe_cpu:.3f} s")
    print(f"\nwrote {record('profile', figures)}")


if __name__ == "__main__":
    main()
