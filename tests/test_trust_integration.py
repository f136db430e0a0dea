"""Trust boundaries on real servers: a side branch is an experiment, never production; poisoned labels
merged into the watched branch are refused by the gate.

Reproduces issue 10's walkthrough: a data scientist branches `experiment-shuffled` from `main` and commits
rows with heavy covariate drift and labels shuffled on purpose. Before the fix, that commit retrained on the
branch and the gate, scoring on the branch's own poisoned holdout, promoted the result.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from mlflow import MlflowClient

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.adapters.mlflow_registry import CHAMPION, RegistryError, alias_version, promote
from lakeloop.settings import get_settings
from tests.fixtures.loop_env import MakeLoopEnv
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration

ROWS = 4000
POISONED = 2500
BRANCH = "experiment-shuffled"


def _poisoned() -> pl.DataFrame:
    rows = synth_batch(POISONED, seed=77, start_id=ROWS, covariate_drift=1.5).data
    return rows.with_columns(pl.col("churn").shuffle(seed=78))


def test_a_shuffled_experiment_changes_no_alias_and_the_same_data_merged_is_refused(
    make_loop_env: MakeLoopEnv, prefect_server: PrefectStack,
) -> None:
    from flows.on_commit import on_commit

    lake: Lake = make_loop_env("trust", lambda repo: {"LAKELOOP_BRANCHES_EXPERIMENTS": "experiment-*"})
    repo = lake.settings.repository
    name = get_settings().mlflow.model_name
    client = MlflowClient()

    lake.write_frame("main", "data/001-baseline.parquet", synth_batch(ROWS, seed=1, start_id=0).data)
    c1 = lake.commit("main", "baseline")
    o1 = on_commit(repository=repo, branch="main", commit_id=c1)
    assert o1.model is not None and o1.model.promoted
    champion = alias_version(name, CHAMPION)

    # ---- the experiment: a candidate, a verdict, no alias
    lake.ensure_branch(BRANCH, "main")
    lake.write_frame(BRANCH, "data/002-shuffled.parquet", _poisoned())
    ce = lake.commit(BRANCH, "labels shuffled on purpose")
    oe = on_commit(repository=repo, branch=BRANCH, commit_id=ce)
    assert oe.decision.reason == "experiment" and oe.model is None
    exp = oe.experiment
    assert exp is not None and exp.verdict == "worse", exp.summary if exp else None
    assert exp.candidate is not None and exp.eval_commit == lake.head("main")
    assert alias_version(name, CHAMPION) == champion  # nothing moved
    mv = client.get_model_version(name, exp.candidate.version)
    assert mv.tags["lakeloop.experiment"] == "true" and mv.tags["lakeloop.experiment.verdict"] == "worse"
    assert mv.tags["gate.check.signal"] == "fail", mv.tags.get("gate.reasons")
    assert client.get_run(exp.candidate.run_id).data.tags["lakeloop.experiment.verdict"] == "worse"
    assert client.get_model_version_by_alias(name, CHAMPION).version == champion
    with pytest.raises(RegistryError, match="experiment"):
        promote(name, exp.candidate.version)
    # the report is on the branch, for the people who own it
    assert exp.report_commit == lake.head(BRANCH)
    report = json.loads(lake.read_bytes(BRANCH, next(p for p in exp.report_paths if p.endswith(".json"))))
    assert report["verdict"] == "worse" and report["trusted_commit"] == exp.eval_commit
    assert report["gate"]["auc_delta"] is not None and report["drifted_columns"]
    md = lake.read_bytes(BRANCH, next(p for p in exp.report_paths if p.endswith(".md"))).decode()
    assert "**worse**" in md and "signal" in md

    # ---- the same data merged into main: trained (drift), judged, refused
    merge = lake.merge(BRANCH, "main")
    om = on_commit(repository=repo, branch="main", commit_id=merge)
    assert om.decision.retrain, om.decision.reasons
    assert om.model is not None and not om.model.promoted
    assert alias_version(name, CHAMPION) == champion
    tags = client.get_model_version(name, om.model.version).tags
    assert tags["gate.passed"] == "false" and tags["gate.check.signal"] == "fail", tags.get("gate.reasons")
    assert int(tags["gate.new_rows"]) >= 100


def test_commits_on_unwatched_branches_change_nothing(make_loop_env: MakeLoopEnv,
                                                      prefect_server: PrefectStack) -> None:
    from flows.on_commit import on_commit
    from flows.retrain import retrain

    lake = make_loop_env("unwatched")
    repo = lake.settings.repository
    lake.ensure_branch("dev", "main")
    lake.write_frame("dev", "data/001.parquet", synth_batch(1000, seed=3).data)
    c = lake.commit("dev", "someone's scratch work")
    out = on_commit(repository=repo, branch="dev", commit_id=c)
    assert out.decision.reason == "not-watched" and out.model is None and out.experiment is None
    assert retrain(repository=repo, branch="dev", commit_id=c, reason="manual") is None
    assert alias_version(get_settings().mlflow.model_name, CHAMPION) is None
