"""Where does the time go in one pass of the loop's spine at 1M rows?

Stages, timed in one run: read the batch's parquet objects from disk (stand-in for
the lake read), validate them, profile them with whylogs (fresh, then again from the
checksum cache), drift against a reference profile, and cross-validated XGBoost
training. Side by side in the same run: the whylogs float fast path against
whylogs' own pandas path on the same frame. The machine is shared, so CPU seconds
(process time) are reported next to wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import polars as pl  # noqa: E402

from bench.results_io import record  # noqa: E402
from infra.demo.synth import synth_batch  # noqa: E402
from lakeloop.settings import DriftSettings, TrainSettings  # noqa: E402
from lakeloop.spec import DatasetSpec, FeatureType  # noqa: E402
from tasks.data.drift import detect_drift  # noqa: E402
from tasks.data.profiling import Loader, ProfileStore, dataset_profile, profile_frame, profile_rows  # noqa: E402
from tasks.data.whylogs_compat import profile_pandas  # noqa: E402
from tasks.model.train import train_xgb  # noqa: E402

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"

try:
    from tasks.data.validate import validate
except ImportError:  # validation lands in another module; the bench still runs without it
    validate = None  # type: ignore[assignment]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _const(frame: pl.DataFrame) -> Loader:
    return lambda: frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=4)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--n-estimators", type=int, default=120)
    ap.add_argument("--learning-rate", type=float, default=0.2)
    args = ap.parse_args()
    spec = DatasetSpec.from_yaml(SPEC_PATH)
    n, k = args.rows, args.objects
    per = n // k
    stages: dict[str, dict[str, float]] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        wall, cpu, out = timed(fn)
        stages[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        print(f"  {name:<24} {wall:8.2f} s wall {cpu:8.2f} s cpu", flush=True)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(k):
            p = Path(tmp) / f"part-{i:03d}.parquet"
            synth_batch(per, seed=100 + i, start_id=i * per).data.write_parquet(p)
            paths.append(p)
        drifted_path = Path(tmp) / "drifted.parquet"
        synth_batch(per, seed=999, start_id=n, covariate_drift=0.5).data.write_parquet(drifted_path)

        frames = stage("read_parquet", lambda: [pl.read_parquet(p) for p in paths])
        if validate is not None:
            results = stage("validate", lambda: [validate(f, spec, source=str(p)) for f, p in zip(frames, paths,
                                                                                              strict=True)])
            valid = [r.valid for r in results]
        else:
            valid = frames
        store = ProfileStore(Path(tmp) / "profiles")
        objects: list[tuple[str, Loader]] = [(f"sum-{i}", _const(f)) for i, f in enumerate(valid)]
        reference, pstats = stage("profile_fresh", lambda: dataset_profile(objects, store, spec))
        _, cstats = stage("profile_cached", lambda: dataset_profile(objects, store, spec))
        assert pstats.profiled == k and cstats.reused == k and profile_rows(reference) == sum(f.height for f in valid)

        whole = pl.concat(valid)
        # side by side: our float fast path vs whylogs' own pandas path, on the float columns of the whole
        # batch (what the fast path targets) and on all profiled columns of one object
        floats = whole.select([f.name for f in spec.features if f.type == FeatureType.numeric]).to_pandas()
        ffast_wall, ffast_cpu, _ = timed(lambda: profile_pandas(floats, fast_numeric=True))
        fslow_wall, fslow_cpu, _ = timed(lambda: profile_pandas(floats, fast_numeric=False))
        print(f"  whylogs float columns x{whole.height}: fast {ffast_wall:.2f} s, whylogs path {fslow_wall:.2f} s "
              f"(x{fslow_wall / ffast_wall:.2f} wall, x{fslow_cpu / ffast_cpu:.2f} cpu)")
        fast_wall, fast_cpu, _ = timed(lambda: profile_frame(valid[0], spec, fast=True))
        slow_wall, slow_cpu, _ = timed(lambda: profile_frame(valid[0], spec, fast=False))
        print(f"  whylogs all columns x{valid[0].height}: fast {fast_wall:.2f} s, whylogs path {slow_wall:.2f} s "
              f"(x{slow_wall / fast_wall:.2f} wall, x{slow_cpu / fast_cpu:.2f} cpu)")

        drifted = pl.read_parquet(drifted_path)
        current = stage("profile_new_batch", lambda: profile_frame(drifted, spec))
        same = profile_frame(valid[0], spec)
        report = stage("drift", lambda: detect_drift(current, reference, spec, DriftSettings()))
        same_report = detect_drift(same, reference, spec, DriftSettings())

        settings = TrainSettings(folds=args.folds, n_estimators=args.n_estimators, learning_rate=args.learning_rate)
        result = stage("train_cv", lambda: train_xgb(whole, spec, settings, forward_estimate=False))

    total = sum(v["wall_s"] for key, v in stages.items() if key != "profile_cached")
    print(f"\n{'stage':<24} {'wall s':>9} {'cpu s':>9} {'share':>7}")
    for name, v in stages.items():
        print(f"{name:<24} {v['wall_s']:9.2f} {v['cpu_s']:9.2f} {v['wall_s'] / total:7.1%}")
    print(f"{'total (fresh profile)':<24} {total:9.2f}")
    print(f"drift on shifted batch: {len(report.drifted)} of {len(report.columns)} features, decision "
          f"{report.decision}; same-distribution object: {len(same_report.drifted)} drifted")
    print(f"train: roc_auc {result.metrics['roc_auc']:.4f}, best iterations {result.best_iterations}")

    figures = {
        "rows": n,
        "objects": k,
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "stages": stages,
        "total_wall_s": round(total, 2),
        "whylogs_float_columns_fast_vs_whylogs_path_wall": round(fslow_wall / ffast_wall, 2),
        "whylogs_float_columns_fast_vs_whylogs_path_cpu": round(fslow_cpu / ffast_cpu, 2),
        "whylogs_all_columns_fast_vs_whylogs_path_wall": round(slow_wall / fast_wall, 2),
        "whylogs_all_columns_fast_vs_whylogs_path_cpu": round(slow_cpu / fast_cpu, 2),
        "whylogs_all_columns_rows": valid[0].height,
        "profile_cached_vs_fresh": round(stages["profile_cached"]["wall_s"] / stages["profile_fresh"]["wall_s"], 4),
        "drift_shifted_drifted_columns": len(report.drifted),
        "drift_same_drifted_columns": len(same_report.drifted),
        "train": {"folds": args.folds, "n_estimators": args.n_estimators, "learning_rate": args.learning_rate,
                  "roc_auc": round(result.metrics["roc_auc"], 4), "best_iterations": result.best_iterations},
        "train_share_of_total": round(stages["train_cv"]["wall_s"] / total, 3),
    }
    print(f"\nwrote {record('spine', figures)}")


if __name__ == "__main__":
    main()
