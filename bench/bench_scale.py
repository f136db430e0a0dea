"""Bench: does a commit cost what it changed, not what the lake holds?

For lakes of N objects of 100,000 churn rows (N = 1, 4, 16) on the local lakeFS-compatible server
(started as `lakeloop up` starts it), one more commit adds 1,000 rows. Timed, side by side in one run:

* `dataset.commit_batch` on that commit (what `on-commit` runs), its first run: the new object's state
  is not cached yet (it is removed before each repeat), every earlier object's is, as `on-commit` left it
  when those commits arrived (the lake is built commit by commit, each one checked as the loop would);
* `dataset.training_set` at that commit (what `retrain` reads), from a new store over the same state
  dir, as a new flow run finds it; and once with no state at all (`cold`), for comparison.

Sizes are interleaved in every repeat, so a change of the shared machine's load falls on all alike; the
ratios are of medians (`*_of_min`: of the fastest repeats, beside them). Figures go to `scale` in
bench/results.json: `commit_cost_16_vs_1`, `trainset_16_vs_1` and the table. About a minute.
Run: `python -m bench.bench_scale [--rows 100000] [--repeats 9]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.results_io import record
from infra.demo.synth import synth_batch
from infra.local.lakefs import start_lakefs
from infra.procs import free_port
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import LakeFSSettings
from lakeloop.spec import DatasetSpec
from tasks.data import dataset
from tasks.data.object_state import ObjectStates

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"
KEY, SECRET = "AKIABENCHSCALE000001", "bench-secret"
SIZES = (1, 4, 16)


def lake_of(port: int, n: int, frames: list, spec: DatasetSpec, state_dir: Path) -> tuple[Lake, str, float]:
    """A repository of `n` objects, committed one by one and each commit checked (warming the state)."""
    repo = f"scale-{n}-{uuid.uuid4().hex[:6]}"
    lake = Lake(LakeFSSettings(endpoint=f"http://127.0.0.1:{port}", access_key_id=KEY, secret_access_key=SECRET,
                               repository=repo, storage_namespace=f"local://{repo}"))
    lake.ensure_repository()
    states = ObjectStates.for_spec(state_dir, spec)
    checking = 0.0
    for i in range(n):
        lake.write_frame("main", f"data/{i:03d}-batch.parquet", frames[i])
        commit = lake.commit("main", f"batch {i}")
        t0 = time.perf_counter()
        dataset.commit_batch(lake, spec, commit, states)
        checking += time.perf_counter() - t0
    return lake, repo, checking


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--commit-rows", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args(argv)
    spec = DatasetSpec.from_yaml(SPEC_PATH)
    biggest = max(SIZES)
    frames = [synth_batch(a.rows, seed=100 + i, start_id=i * a.rows).data for i in range(biggest)]
    small = synth_batch(a.commit_rows, seed=7, start_id=biggest * a.rows).data
    table: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmpd = Path(tmp)
        port = free_port()
        svc = start_lakefs(tmpd / "lakefs", port, KEY, SECRET)
        try:
            lakes = {}
            for n in SIZES:
                state_dir = tmpd / f"state-{n}"
                lake, _, checking = lake_of(port, n, frames, spec, state_dir)
                path = f"data/{n:03d}-small.parquet"
                lake.write_frame("main", path, small)
                commit = lake.commit("main", f"{a.commit_rows} rows")
                new_obj = next(o for o in lake.data_objects(commit) if o.path == path)
                lakes[n] = (lake, commit, new_obj, state_dir, checking)
            commit_s: dict[int, list[float]] = {n: [] for n in SIZES}
            train_s: dict[int, list[float]] = {n: [] for n in SIZES}
            for _ in range(a.repeats):  # sizes interleaved, so a change of load falls on all of them alike
                for n, (lake, commit, new_obj, state_dir, _) in lakes.items():
                    states = ObjectStates.for_spec(state_dir, spec)
                    shutil.rmtree(states.root / states.key(new_obj), ignore_errors=True)  # as on-commit meets it
                    t0 = time.perf_counter()
                    batch = dataset.commit_batch(lake, spec, commit, states)
                    commit_s[n].append(time.perf_counter() - t0)
                    assert batch.n_rows == a.commit_rows, batch.n_rows
            for _ in range(a.repeats):
                for n, (lake, commit, _, state_dir, _) in lakes.items():
                    t0 = time.perf_counter()
                    data, _ = dataset.training_set(lake, spec, commit, ObjectStates.for_spec(state_dir, spec))
                    train_s[n].append(time.perf_counter() - t0)
                    assert data.height == n * a.rows + a.commit_rows - batch.n_invalid, data.height
            for n, (lake, commit, _, state_dir, checking) in lakes.items():
                t0 = time.perf_counter()
                cold, _ = dataset.training_set(lake, spec, commit)  # nothing kept: every object read and validated
                cold_s = time.perf_counter() - t0
                warm, _ = dataset.training_set(lake, spec, commit, ObjectStates.for_spec(state_dir, spec))
                assert cold.equals(warm)
                table[str(n)] = {"objects": n, "rows": n * a.rows + a.commit_rows,
                                 "commit_batch_s": round(statistics.median(commit_s[n]), 4),
                                 "training_set_s": round(statistics.median(train_s[n]), 4),
                                 "commit_batch_min_s": round(min(commit_s[n]), 4),
                                 "training_set_min_s": round(min(train_s[n]), 4),
                                 "training_set_cold_s": round(cold_s, 3),
                                 "setup_commit_batch_s_per_object": round(checking / n, 3)}
                print(f"  {n:>2} objects: commit_batch {table[str(n)]['commit_batch_s']:.3f} s, training_set "
                      f"{table[str(n)]['training_set_s']:.3f} s (cold {cold_s:.2f} s), load {os.getloadavg()[0]:.1f}",
                      flush=True)
        finally:
            svc.stop(timeout=5)

    one, many = table["1"], table[str(biggest)]
    figures = {
        "commit_cost_16_vs_1": round(many["commit_batch_s"] / one["commit_batch_s"], 3),
        "trainset_16_vs_1": round(many["training_set_s"] / one["training_set_s"], 3),
        "commit_cost_16_vs_1_of_min": round(many["commit_batch_min_s"] / one["commit_batch_min_s"], 3),
        "trainset_16_vs_1_of_min": round(many["training_set_min_s"] / one["training_set_min_s"], 3),
        "goal_commit_cost_16_vs_1": 1.5,
        "goal_trainset_16_vs_1": 20,
        "rows_per_object": a.rows,
        "commit_rows": a.commit_rows,
        "repeats": a.repeats,
        "table": table,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    print(f"commit_batch 16 vs 1: {figures['commit_cost_16_vs_1']:.2f}x (goal <= 1.5); "
          f"training_set 16 vs 1: {figures['trainset_16_vs_1']:.1f}x (goal <= 20)")
    print(f"wrote {record('scale', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
