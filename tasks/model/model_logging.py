"""Packaging a voting plan as the lakeloop pyfunc, and logging, saving or registering it in MLflow.

One path for every model: `log_training` (a single XGBoost classifier, a plan of one member)
and `log_ensemble` (a voted ensemble) build their pyfunc with the same `_pyfunc_arguments`,
so every registered version is a `tasks.model.pyfunc.VotingEnsemble` with the signature and
requirements of `tasks.model.model_contract`. `tasks.model.pyfunc` is pickled by value while
a model is written, which keeps the model loadable without lakeloop installed."""

from __future__ import annotations

import json
import pickle
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import polars as pl

from lakeloop.spec import DatasetSpec
from tasks.model import pyfunc
from tasks.model.ensemble import EnsemblePlan, plan_oof, select_members
from tasks.model.model_contract import model_input, model_signature, pip_requirements
from tasks.model.train import class_names


def decision_threshold(spec: DatasetSpec) -> float:
    """The binary label cut (`business_threshold`); multiclass labels are the argmax, the value unused."""
    return float(spec.business_threshold) if len(spec.classes) == 2 else 0.5


def _save_member(member: Any, directory: Path, index: int) -> tuple[str, Path]:
    key = f"member_{index}_{member.name}"
    if member.kind == "xgboost":  # an xgb.Booster or an XGBClassifier: both write a Booster-loadable file
        path = directory / f"{key}.ubj"
        member.model.save_model(str(path))
    elif member.kind == "logreg":
        path = directory / f"{key}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(member.model, fh, protocol=5)
    else:
        raise ValueError(f"member {member.name!r}: unknown kind {member.kind!r}")
    return key, path


def build_artifacts(members: list[Any], plan: EnsemblePlan, spec: DatasetSpec,
                    directory: Path) -> dict[str, str]:
    """Write spec, manifest and one file per chosen member; return mlflow's `artifacts` mapping.

    `members` are `tasks.model.candidates.Member`s (name, kind, features, model, cv_auc).
    """
    by_name = {mb.name: mb for mb in members}
    missing = [n for n in plan.names if n not in by_name]
    if missing:
        raise ValueError(f"plan names members that are not candidates: {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    entries = []
    for i, (name, weight) in enumerate(zip(plan.names, plan.weights, strict=True)):
        mb = by_name[name]
        key, path = _save_member(mb, directory, i)
        artifacts[key] = str(path)
        entries.append({"artifact": key, "name": name, "kind": mb.kind, "features": list(mb.features),
                        "weight": float(weight), "cv_auc": float(mb.cv_auc)})
    manifest = {
        "members": entries,
        "voting": plan.voting,
        "classes": class_names(spec),
        "positive": spec.positive,
        "threshold": decision_threshold(spec),
        "id_column": spec.id_column,
        "cv_auc": plan.cv_auc,
        "best_member": plan.best_member,
        "best_member_auc": plan.best_member_auc,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (directory / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    artifacts[pyfunc.MANIFEST_ARTIFACT] = str(directory / "manifest.json")
    artifacts[pyfunc.SPEC_ARTIFACT] = str(directory / "spec.json")
    return artifacts


@contextmanager
def _pyfunc_arguments(members: list[Any], plan: EnsemblePlan, spec: DatasetSpec,
                      example: pl.DataFrame | None) -> Iterator[dict[str, Any]]:
    """mlflow's pyfunc arguments for `plan`; valid (artifacts on disk, pickling by value) while open."""
    import cloudpickle

    signature = model_signature(spec)
    with tempfile.TemporaryDirectory(prefix="lakeloop-pyfunc-") as tmp:
        artifacts = build_artifacts(members, plan, spec, Path(tmp))
        cloudpickle.register_pickle_by_value(pyfunc)
        try:
            yield {"python_model": pyfunc.VotingEnsemble(plan.voting), "artifacts": artifacts,
                   "signature": signature,
                   "input_example": None if example is None else model_input(example, signature),
                   "pip_requirements": pip_requirements()}
        finally:
            cloudpickle.unregister_pickle_by_value(pyfunc)


def log_pyfunc(name: str, members: list[Any], plan: EnsemblePlan, spec: DatasetSpec,
               example: pl.DataFrame | None = None, tags: dict[str, str] | None = None) -> Any:
    """Log `plan` over `members` as the pyfunc at artifact path `name` of the active run; mlflow's ModelInfo."""
    with _pyfunc_arguments(members, plan, spec, example) as kwargs:
        return mlflow.pyfunc.log_model(name=name, tags=tags, **kwargs)


def save_pyfunc(path: str | Path, members: list[Any], plan: EnsemblePlan, spec: DatasetSpec,
                example: pl.DataFrame | None = None) -> None:
    """Write the same pyfunc `log_pyfunc` logs to a local directory (no tracking server)."""
    with _pyfunc_arguments(members, plan, spec, example) as kwargs:
        mlflow.pyfunc.save_model(str(path), **kwargs)


def log_ensemble(
    candidates: Any,
    *,
    name: str,
    voting: str = "weighted",
    description: str | None = None,
    plan: EnsemblePlan | None = None,
    example_rows: int = 5,
) -> tuple[str, str, str]:
    """Package the selected members as a pyfunc in the candidates' parent run and register it.

    `candidates` is a `tasks.model.candidates.CandidateSet`. The new version gets alias
    `challenger`, the lineage tags of the data it was trained on, and its CV evidence.
    Returns (run_id, model_uri `models:/<name>/<version>`, version).
    """
    from mlflow import MlflowClient

    spec = candidates.spec
    plan = plan or select_members(candidates.members, candidates.y, voting, decision_threshold(spec),
                                  candidates.folds)
    tags = {**candidates.lineage.tags(), "lakeloop.kind": "ensemble", "ensemble.voting": plan.voting,
            "ensemble.members": ",".join(plan.names)}
    desc = description or (
        f"{plan.voting} vote of {len(plan.names)} members ({', '.join(plan.names)}); "
        f"OOF CV AUC {plan.cv_auc:.4f} vs best member {plan.best_member} {plan.best_member_auc:.4f}; "
        f"data {candidates.lineage.repository}@{candidates.lineage.commit_id[:12]}"
    )
    client = MlflowClient()
    # artifacts (and the input example) are built before the parent run is resumed, so a bad plan leaves it alone
    with _pyfunc_arguments(candidates.members, plan, spec, candidates.frame.head(example_rows)) as kwargs:
        if candidates.parent_run_id:
            # resuming a run needs its experiment active (another build may have switched experiments)
            mlflow.set_experiment(experiment_id=client.get_run(candidates.parent_run_id).info.experiment_id)
            run_ctx = mlflow.start_run(run_id=candidates.parent_run_id)
        else:
            run_ctx = mlflow.start_run(run_name="ensemble", tags=tags)
        with run_ctx as run:
            mlflow.log_metrics({"ensemble.cv_auc": plan.cv_auc, "ensemble.best_member_auc": plan.best_member_auc,
                                "ensemble.all_members_auc": plan.all_members_auc,
                                "ensemble.nested_cv_auc": plan.nested_cv_auc})
            mlflow.log_dict(plan.__dict__, "ensemble_plan.json")
            log_oof(ensemble_oof_frame(candidates, plan))
            info = mlflow.pyfunc.log_model(name="ensemble", tags=tags, **kwargs)
            run_id = run.info.run_id
    mv = mlflow.register_model(info.model_uri, name, tags={
        **tags, "ensemble.cv_auc": f"{plan.cv_auc:.6f}", "ensemble.best_member_auc": f"{plan.best_member_auc:.6f}",
        "ensemble.nested_cv_auc": f"{plan.nested_cv_auc:.6f}",
    }, await_registration_for=0)
    _wait_ready(client, name, mv.version)
    client.update_model_version(name, mv.version, description=desc)
    client.set_registered_model_alias(name, "challenger", mv.version)
    return run_id, f"models:/{name}/{mv.version}", str(mv.version)


def ensemble_oof_frame(candidates: Any, plan: EnsemblePlan) -> pl.DataFrame:
    """The vote's out-of-fold probabilities in the single model's OOF layout (`training_run.oof_frame`)."""
    spec = candidates.spec
    proba = plan_oof(candidates.members, plan, decision_threshold(spec))
    frame = candidates.frame
    cols: dict[str, Any] = {
        spec.id_column: frame.get_column(spec.id_column).cast(pl.Utf8),
        spec.label_column: frame.get_column(spec.label_column).cast(pl.Utf8),
        "label_index": pl.Series(candidates.y.astype("int64")),
        "fold": pl.Series(candidates.folds.astype("int64")),
    }
    for i, name in enumerate(class_names(spec)):
        cols[f"proba_{name}"] = pl.Series(proba[:, i].astype("float64"))
    return pl.DataFrame(cols)


def log_oof(oof: pl.DataFrame) -> None:
    """Into the active run, at `OOF_ARTIFACT`: the relabel round and the monitor's calibrator read it there."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "oof.parquet"
        oof.write_parquet(path)
        mlflow.log_artifact(str(path), artifact_path="oof")


def save_ensemble(candidates: Any, path: str | Path, *, voting: str = "weighted",
                  plan: EnsemblePlan | None = None, example_rows: int = 5) -> EnsemblePlan:
    """Write the same pyfunc `log_ensemble` logs to a local directory (no tracking server); for benches."""
    spec = candidates.spec
    plan = plan or select_members(candidates.members, candidates.y, voting, decision_threshold(spec),
                                  candidates.folds)
    save_pyfunc(path, candidates.members, plan, spec, candidates.frame.head(example_rows))
    return plan


def _wait_ready(client: Any, name: str, version: str, timeout: float = 120.0) -> None:
    """Registration is asynchronous on some stores; poll until the version is READY (or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION":
            raise RuntimeError(f"model {name} version {version} failed to register: {mv.status_message}")
        time.sleep(0.2)
    raise TimeoutError(f"model {name} version {version} not READY after {timeout:.0f}s")
