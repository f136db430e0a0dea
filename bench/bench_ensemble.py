"""What does packaging a voted ensemble as an MLflow pyfunc cost, and what does the vote buy?

Measured side by side in one run, on the same rows:

* `pyfunc_overhead` = pyfunc predict time / sum of the members' raw predicts - 1
  (goal <= 0.15). The raw side gets its inputs already encoded and calls
  `Booster.inplace_predict` / `predict_proba` directly; the pyfunc side starts from
  the polars batch as it comes from the lake, so it pays for the pandas conversion,
  MLflow's schema enforcement, its own encoding and the vote. CPU seconds (fewest
  over the repeats) are the headline, since wall time on a shared box is noise;
  wall-clock figures are recorded too.
* `cv_auc_*`: the weighted vote's out-of-fold AUC vs the best single member's, plus
  the nested estimate (vote selection re-done without the scored fold).
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
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from bench.results_io import record  # noqa: E402
from infra.demo.synth import synth_batch  # noqa: E402
from lakeloop.spec import DatasetSpec  # noqa: E402
from tasks.model.candidates import Lineage, _subspec, build_candidates  # noqa: E402
from tasks.model.ensemble import EnsemblePlan, auc_weights, select_members  # noqa: E402
from tasks.model.features import model_frame, numeric_matrix  # noqa: E402
from tasks.model.model_contract import model_input  # noqa: E402
from tasks.model.model_logging import save_ensemble  # noqa: E402

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"


def timed(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (fewest CPU seconds, fewest wall seconds)}; runs are interleaved so load hits all alike."""
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: (min(cpu[k]), min(wall[k])) for k in fns}


def measure(cs: Any, plan: EnsemblePlan, batch: pl.DataFrame, model_dir: Path, repeats: int) -> dict[str, float]:
    """Pyfunc predict vs the plan's members predicting directly, on the same rows."""
    spec = cs.spec
    save_ensemble(cs, model_dir, plan=plan)
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    signature = pyfunc.metadata.signature
    members = [cs.member(n) for n in plan.names]
    # raw members: inputs encoded up front, only the predict calls are timed
    encoded = []
    for m in members:
        sub = _subspec(spec, m.features)
        encoded.append(model_frame(batch, sub) if m.kind == "xgboost" else numeric_matrix(batch, sub))

    def raw() -> list[np.ndarray]:
        return [np.asarray(m.model.inplace_predict(x) if m.kind == "xgboost" else m.model.predict_proba(x))
                for m, x in zip(members, encoded, strict=True)]

    def raw_with_encoding() -> list[np.ndarray]:
        out = []
        for m in members:
            sub = _subspec(spec, m.features)
            if m.kind == "xgboost":
                out.append(np.asarray(m.model.inplace_predict(model_frame(batch, sub))))
            else:
                out.append(np.asarray(m.model.predict_proba(numeric_matrix(batch, sub))))
        return out

    def via_pyfunc() -> Any:
        return pyfunc.predict(model_input(batch, signature))

    raw()
    assert len(via_pyfunc()) == batch.height  # also the warm-up: first calls pay lazy imports
    t = timed({"raw": raw, "enc": raw_with_encoding, "py": via_pyfunc}, repeats)
    return {"py_cpu": t["py"][0], "raw_cpu": t["raw"][0], "enc_cpu": t["enc"][0], "py_wall": t["py"][1],
            "raw_wall": t["raw"][1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-rows", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    spec = DatasetSpec.from_yaml(SPEC_PATH)
    train = synth_batch(args.train_rows, seed=11).data
    batch = synth_batch(args.rows, seed=12, start_id=10_000_000).data.drop(spec.label_column)

    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        t0 = time.perf_counter()
        cs = build_candidates(train, spec, Lineage(repository="bench", branch="main", commit_id="0" * 64,
                                                        spec_hash=spec.spec_hash()),
                              n_trials=args.trials, timeout_s=args.timeout, n_jobs=1, log_to_mlflow=False)
        build_s = time.perf_counter() - t0
        plan = select_members(cs.members, cs.y, "weighted", spec.business_threshold, cs.folds)
        soft = select_members(cs.members, cs.y, "soft", spec.business_threshold, cs.folds)
        print(f"candidates: {len(cs.members)} members, {cs.trials} trials in {build_s:.0f}s")
        for m in sorted(cs.members, key=lambda m: -m.cv_auc):
            print(f"  {m.name:12s} OOF AUC {m.cv_auc:.4f}")
        print(f"weighted vote {plan.names} weights {np.round(plan.weights, 3).tolist()}")

        for m in cs.members:  # same threading as the pyfunc's loaded boosters (all cores)
            if m.kind == "xgboost":
                m.model.set_param({"nthread": 0})
        chosen = measure(cs, plan, batch, Path(tmp) / "model", args.repeats)
        everyone = EnsemblePlan(names=[m.name for m in cs.members],
                                weights=auc_weights([m.cv_auc for m in cs.members]), voting="weighted",
                                cv_auc=plan.all_members_auc, best_member=plan.best_member,
                                best_member_auc=plan.best_member_auc, all_members_auc=plan.all_members_auc)
        all_members = measure(cs, everyone, batch, Path(tmp) / "model-all", args.repeats)

    py_cpu, raw_cpu, enc_cpu, py_wall, raw_wall = (chosen[k] for k in ("py_cpu", "raw_cpu", "enc_cpu", "py_wall",
                                                                         "raw_wall"))
    overhead = py_cpu / raw_cpu - 1.0
    figures = {
        "rows": args.rows,
        "members": plan.names,
        "weights": [round(w, 4) for w in plan.weights],
        "pyfunc_overhead": round(overhead, 4),
        "pyfunc_overhead_wall": round(py_wall / raw_wall - 1.0, 4),
        "pyfunc_overhead_vs_members_with_encoding": round(py_cpu / enc_cpu - 1.0, 4),
        "pyfunc_overhead_all_members": round(all_members["py_cpu"] / all_members["raw_cpu"] - 1.0, 4),
        "pyfunc_overhead_all_members_wall": round(all_members["py_wall"] / all_members["raw_wall"] - 1.0, 4),
        "all_members_pyfunc_cpu_s": round(all_members["py_cpu"], 3),
        "all_members_raw_cpu_s": round(all_members["raw_cpu"], 3),
        "goal_overhead": 0.15,
        "pyfunc_cpu_s": round(py_cpu, 3),
        "members_raw_cpu_s": round(raw_cpu, 3),
        "members_with_encoding_cpu_s": round(enc_cpu, 3),
        "pyfunc_rows_per_s_wall": round(args.rows / py_wall),
        "members_raw_rows_per_s_wall": round(args.rows / raw_wall),
        "cv_auc_weighted_vote": round(plan.cv_auc, 5),
        "cv_auc_soft_vote": round(soft.cv_auc, 5),
        "cv_auc_all_members_weighted_by_skill": round(plan.all_members_auc, 5),
        "cv_auc_best_member": round(plan.best_member_auc, 5),
        "best_member": plan.best_member,
        "cv_auc_gain_over_best": round(plan.cv_auc - plan.best_member_auc, 5),
        "nested_cv_auc_weighted_vote": round(plan.nested_cv_auc, 5),
        "nested_gain_over_best": round(plan.nested_cv_auc - plan.best_member_auc, 5),
        "member_cv_auc": {k: round(v, 5) for k, v in plan.member_aucs.items()},
        "train_rows": args.train_rows,
        "optuna_trials": cs.trials,
        "candidates_build_s": round(build_s, 1),
    }
    print(f"pyfunc {py_cpu:.2f} CPU-s vs members raw {raw_cpu:.2f} CPU-s (with encoding {enc_cpu:.2f}): "
          f"overhead {overhead:+.1%} (goal <= +15%), wall {figures['pyfunc_overhead_wall']:+.1%}")
    print(f"all {len(cs.members)} members: pyfunc {all_members['py_cpu']:.2f} CPU-s vs raw "
          f"{all_members['raw_cpu']:.2f}: overhead {figures['pyfunc_overhead_all_members']:+.1%}")
    print(f"CV AUC: weighted vote {plan.cv_auc:.4f} vs best member {plan.best_member} {plan.best_member_auc:.4f} "
          f"(nested {plan.nested_cv_auc:.4f})")
    print(f"results: {record('ensemble', figures)}")


if __name__ == "__main__":
    pl.Config.set_tbl_rows(5)
    main()
