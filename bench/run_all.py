"""`make bench`: run every benchmark in one go; each merges its figures into bench/results.json."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [  # one per line: benches land from parallel branches
    "bench_lakefs",
    "bench_validate",
    "bench_scale",
    "bench_spine",
    "bench_profile",
    "bench_train",
    "bench_events",
    "bench_burst_restart",
    "bench_fuzz",
    "bench_bridge_load",
    "bench_labels",
    "bench_consensus",
    "bench_ensemble",
    "bench_monitor",
]


def main() -> int:
    failed = []
    for name in ORDER:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent)
        print(f"=== {name}: exit {rc} in {time.perf_counter() - t0:.0f}s ===", flush=True)
        if rc:
            failed.append(name)
    print(f"\nresults: {HERE / 'results.json'}")
    from bench.readme_figures import main as write_readme_figures

    write_readme_figures()  # the README's figures come from results.json only
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
