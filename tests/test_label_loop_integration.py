"""One full data-centric round through the flows, on real servers.

10% label noise on 5,000 synthetic rows → training → request-relabel sends 300 tasks to
Label Studio → a simulated reviewer answers through Label Studio's API → ingest-labels
merges the corrections into main → on-commit sees changed labels and retrains.

The round then costs one more check, not another round: no configured secret turned up in any log,
Prefect artifact or run, MLflow tag or param, or lakeFS commit, and every server listened on loopback only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.adapters.label_studio import LabelStudioAdapter
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import Settings, get_settings, is_loopback
from tests.fixtures.label_studio import LabelStudioServer
from tests.fixtures.loop_env import MakeLoopEnv
from tests.fixtures.prefect import PrefectStack
from tests.fixtures.secret_scan import (
    command_lines,
    lakefs_places,
    leaks,
    listening_addresses,
    log_files,
    mlflow_places,
    prefect_places,
)

pytestmark = pytest.mark.integration

ROWS = 5000
BUDGET = 300
REVIEWER = "reviewer@lakeloop.test"


@pytest.fixture
def loop_env(make_loop_env: MakeLoopEnv, label_studio: LabelStudioServer, prefect_server: PrefectStack) -> Lake:
    from prefect.blocks.system import Secret

    # each webhook sender's own secret, Label Studio's from a Prefect Secret block: the scan looks for both
    block = f"ls-hook-{uuid.uuid4().hex[:8]}"
    Secret(value=f"ls-hook-{uuid.uuid4().hex}").save(block, overwrite=True)
    return make_loop_env("labels", lambda repo: {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_TOKEN": label_studio.token,
        "LABEL_STUDIO_PASSWORD": label_studio.password,
        "LAKELOOP_LABELING_PROJECT_TITLE": f"review {repo}",
        "LAKELOOP_LABELING_TRUSTED_REVIEWERS": f'["{REVIEWER}"]',
        "LAKELOOP_BRIDGE_LAKEFS_SECRET": f"lakefs-hook-{uuid.uuid4().hex}",
        "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET": "{{ prefect.blocks.secret." + block + " }}",
    })


def test_review_round_closes_the_loop(loop_env: Lake, prefect_server: PrefectStack,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    from flows.ingest_labels import ingest_labels
    from flows.on_commit import on_commit
    from flows.request_relabel import request_relabel
    from infra.demo.annotator import SimulatedAnnotator
    from lakeloop.spec import DatasetSpec
    from tasks.data import dataset

    lake, settings = loop_env, get_settings()
    started = datetime.now(UTC)
    spec = DatasetSpec.from_yaml(settings.spec_path)
    batch = synth_batch(ROWS, seed=7, label_noise=0.10)
    lake.write_frame("main", "data/001.parquet", batch.data)
    c1 = lake.commit("main", "noisy batch")
    first = on_commit(repository=lake.settings.repository, branch="main", commit_id=c1)
    assert first.model is not None
    from lakeloop.adapters.mlflow_tracking import load_oof
    oof_columns = load_oof(first.model.run_id).columns  # the review committee travels with the run
    assert {"member_xgboost_proba_yes", "member_logreg_proba_yes"} <= set(oof_columns)

    req = request_relabel(repository=lake.settings.repository, commit_id=c1, run_id=first.model.run_id,
                          budget=BUDGET)
    assert req.selected == BUDGET and req.created == BUDGET and req.queued == 0
    # a second registration while the team has not answered: the queue is full, nothing piles up
    again = request_relabel(repository=lake.settings.repository, commit_id=c1, run_id=first.model.run_id,
                            budget=BUDGET)
    assert again.open_before == BUDGET and again.selected == 0 and again.created == 0

    truth = dict(zip(batch.truth["customer_id"].to_list(), batch.truth["true_label"].to_list(), strict=True))
    adapter = LabelStudioAdapter.from_settings(settings)
    SimulatedAnnotator(adapter, spec, REVIEWER, error_rate=0.0, seed=3).annotate(req.project_id, truth)
    assert adapter.open_tasks(req.project_id) == 0  # every task has an answer now

    intake = ingest_labels(project_id=req.project_id, repository=lake.settings.repository)
    assert intake.annotations >= BUDGET and intake.merge_commit is not None
    noisy_sent = intake.corrections
    assert noisy_sent >= 0.5 * BUDGET, "most rows sent were truly mislabeled"
    merged = lake.commit_info(intake.merge_commit)
    assert merged.metadata["lakeloop.kind"] == "label-corrections" and len(merged.parents) == 2
    # the round's annotator quality travels with its corrections, and is an MLflow run of its own
    from lakeloop.adapters.mlflow_tracking import client, experiment_id
    from tasks.labels.corrections import quality_paths

    rows_path, annotators_path = quality_paths(merged.metadata["lakeloop.round"])
    assert lake.read_frame(intake.merge_commit, annotators_path)["annotator"].to_list() == [REVIEWER]
    assert lake.read_frame(intake.merge_commit, rows_path).height >= BUDGET
    c = client(settings.mlflow)
    [round_run] = c.search_runs([experiment_id(c, settings.mlflow.experiment)],
                                "tags.`lakeloop.kind` = 'label-round'")
    assert round_run.data.tags["lakefs.commit_id"] == intake.merge_commit
    assert round_run.data.metrics["corrections"] == intake.corrections

    data, _ = dataset.training_set(lake, spec, intake.merge_commit)
    fixed = data.join(batch.truth.select(["customer_id", "true_label"]), on="customer_id")
    errors = fixed.filter(pl.col("churn") != pl.col("true_label")).height
    assert errors == batch.truth["is_noisy"].sum() - noisy_sent  # every correction fixed a noisy label

    assert ingest_labels(project_id=req.project_id, repository=lake.settings.repository).corrections == 0

    retrain = on_commit(repository=lake.settings.repository, branch="main", commit_id=intake.merge_commit)
    assert retrain.decision.reason == "labels-changed" and retrain.model is not None
    assert retrain.model.version == "2"

    assert_no_secret_leaked(lake, settings, adapter, req.project_id, prefect_server, started,
                            tmp_path_factory.getbasetemp())


def assert_no_secret_leaked(lake: Lake, settings: Settings, adapter: LabelStudioAdapter, project_id: int,
                            prefect: PrefectStack, since: datetime, temp_root: Path) -> None:
    from prefect.logging.handlers import APILogHandler

    from lakeloop.adapters.secrets import reveal
    from lakeloop.settings import configured_secrets

    secrets = {name: reveal(value) for name, value in configured_secrets(settings).items()}
    # Label Studio got its own secret, read from the Prefect Secret block, and nothing else's
    (hook,) = [w for w in adapter.client.webhooks.list(project=str(project_id))
               if w.url.endswith("/label-studio/events")]
    assert hook.headers == {"X-Lakeloop-Token": secrets["LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET"]}
    assert secrets["LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET"].startswith("ls-hook-")

    APILogHandler().flush()  # the flows' log lines still on their way to Prefect
    body = {"flow_runs": {"start_time": {"after_": since.isoformat()}}}
    runs = [r["id"] for r in prefect._post("/flow_runs/filter", {**body, "limit": 200, "offset": 0})]
    assert len(runs) >= 4, runs  # on-commit (x2), request-relabel (x2), ingest-labels (x2)
    places = [*log_files(temp_root), *command_lines(), *prefect_places(prefect.api_url, runs),
              *mlflow_places(settings.mlflow.tracking_uri, settings.mlflow.experiment, settings.mlflow.model_name),
              *lakefs_places(lake)]
    kinds = {" ".join(where.split(" ")[:2]) for where, _ in places}
    assert {"prefect artifact", "prefect log", "mlflow run", "lakefs commit"} <= kinds, kinds  # read, not skipped
    assert any("/logs/" in where for where, _ in places)
    found = leaks(secrets, places)
    exposed = {pid: addrs for pid, addrs in listening_addresses().items()
               if not all(is_loopback(a.rsplit(":", 1)[0]) for a in addrs)}
    assert not found and not exposed, f"secrets found: {found}; servers listening beyond loopback: {exposed}"
