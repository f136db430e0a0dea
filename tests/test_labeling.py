"""The data-centric loop against a real Label Studio (and the local lakeFS server).

Round test: 5,000 synthetic churn rows with 10% injected label noise, leakage-free
out-of-fold probabilities from `train_xgb`, 300 tasks sent with the model's
pre-annotation, a simulated trusted reviewer answers through the API, answers
resolve into corrections, the corrections land in lakeFS as a merged commit and
the dataset read at main reflects them.

Outage test: Label Studio stops mid-round, tasks wait in the durable outbox, the
server comes back, tasks are sent exactly once, and answers are never applied twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from infra.demo.annotator import SimulatedAnnotator
from infra.demo.synth import synth_batch
from infra.procs import free_port
from lakeloop.adapters.label_studio import LabelStudioAdapter, annotation_from_webhook
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.labels.corrections import AgreementPolicy, AppliedLedger, commit_corrections, new_round_id, resolve
from tasks.labels.label_issues import ReviewLedger, rank_label_issues, row_hashes, select_budget
from tasks.labels.task_view import ensure_project, send_rows

pytestmark = pytest.mark.integration

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
ROWS, NOISE, BUDGET = 5000, 0.1, 300


class _Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hooks.received.append({"headers": dict(self.headers), "body": json.loads(body or b"{}")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_receiver() -> Iterator[str]:
    _Hooks.received = []
    server = HTTPServer(("127.0.0.1", free_port()), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/label-studio"
    server.shutdown()


def test_review_round_corrects_noisy_labels_into_lakefs(label_studio, lake: Lake, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         hook_receiver: str) -> None:
    batch = synth_batch(ROWS, seed=11, label_noise=NOISE)
    df, truth = batch.data, batch.truth
    true_label = dict(zip(truth["customer_id"].to_list(), truth["true_label"].to_list(), strict=True))
    noisy = set(truth.filter(pl.col("is_noisy"))["customer_id"].to_list())
    lake.write_frame("main", "data/batch-0001.parquet", df)
    lake.commit("main", "add batch", {"lakeloop.kind": "data"})

    from tasks.model.train import train_xgb

    trained = train_xgb(df, SPEC, TrainSettings(folds=4, n_estimators=200, n_jobs=2))
    issues = rank_label_issues(trained.ids, trained.labels, trained.oof_proba,
                               threshold=SPEC.business_threshold)
    ledger = ReviewLedger.at(tmp_path / "state")
    hashes = row_hashes(df, SPEC)
    chosen = select_budget(issues, BUDGET, ledger=ledger, row_hashes=hashes)
    assert len(chosen) == BUDGET
    precision = np.mean([i.id in noisy for i in chosen])
    assert precision > 3 * NOISE  # far better than random selection

    adapter = LabelStudioAdapter(label_studio.url, label_studio.token, tmp_path / "state")
    project = ensure_project(adapter, SPEC, "churn label review")
    assert ensure_project(adapter, SPEC, "churn label review") == project
    hook_id = adapter.register_webhook(project, hook_receiver, {"X-Lakeloop-Secret": "s3cret"})
    assert adapter.register_webhook(project, hook_receiver, {"X-Lakeloop-Secret": "s3cret"}) == hook_id

    ids = [i.id for i in chosen]
    rows = df.filter(pl.col("customer_id").is_in(ids))
    pos = {rid: k for k, rid in enumerate(trained.ids)}
    proba = trained.oof_proba[[pos[r] for r in rows["customer_id"].to_list()]]
    round_id = new_round_id()
    sent = send_rows(adapter, project, rows, SPEC, proba, model_version="xgb-oof", round_id=round_id)
    assert len(sent.created) == BUDGET and sent.queued == 0 and sent.error is None
    ledger.mark({r: hashes[r] for r in ids}, round_id)
    again = send_rows(adapter, project, rows, SPEC, proba, model_version="xgb-oof", round_id=round_id)
    assert again.created == [] and sorted(again.existing) == sorted(sent.created)
    assert select_budget(issues, BUDGET, ledger=ledger, row_hashes=hashes)[0].id not in set(ids)

    reviewer = SimulatedAnnotator(adapter, SPEC, "reviewer@lakeloop.test", error_rate=0.03, seed=1)
    stats = reviewer.annotate(project, true_label)
    assert stats.answered == BUDGET
    annotations = adapter.fetch_annotations(project)
    assert len(annotations) == BUDGET
    assert {a.row_id for a in annotations} == set(ids)
    assert all(a.annotator == "reviewer@lakeloop.test" and a.lead_time for a in annotations)

    current = dict(zip(df["customer_id"].to_list(), df["churn"].to_list(), strict=True))
    res = resolve(annotations, current, AgreementPolicy(trusted_reviewers=["reviewer@lakeloop.test"]), SPEC,
                  ledger=AppliedLedger.at(tmp_path / "state"))
    corr = res.corrections
    assert corr.height + len(res.confirmed) == BUDGET
    fixed = [r for r in corr.iter_rows(named=True) if r["new_label"] == true_label[r["id"]]]
    # every correction that matches the truth repairs one injected flip; the reviewer errs 3% of the time
    assert len(fixed) >= 0.9 * corr.height
    assert abs(corr.height - len(set(ids) & noisy)) <= 0.1 * BUDGET

    merge = commit_corrections(lake, round_id, corr, SPEC, {"lakeloop.project": str(project)})
    info = lake.commit_info(merge)
    assert info.metadata["lakeloop.kind"] == "label-corrections"
    assert merge == lake.head("main")

    from tasks.data.dataset import training_set

    data, _ = training_set(lake, SPEC, "main")
    after = dict(zip(data["customer_id"].to_list(), data["churn"].to_list(), strict=True))
    errors_before = sum(current[k] != true_label[k] for k in current)
    errors_after = sum(after[k] != true_label[k] for k in after)
    assert errors_after == errors_before - len(fixed) + (corr.height - len(fixed))

    # Label Studio delivered the annotation webhooks to the receiver, with our header
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_Hooks.received) < BUDGET:
        time.sleep(0.5)
    created = [h for h in _Hooks.received if h["body"].get("action") == "ANNOTATION_CREATED"]
    assert len(created) == BUDGET, f"{len(created)} ANNOTATION_CREATED webhooks arrived, expected {BUDGET}"
    assert created[0]["headers"].get("X-Lakeloop-Secret") == "s3cret"
    from_hook = annotation_from_webhook(created[0]["body"])
    assert from_hook.row_id in set(ids) and from_hook.choice in SPEC.classes


def test_outage_keeps_tasks_in_outbox_and_sends_them_once(label_studio, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    batch = synth_batch(30, seed=21, start_id=900_000, label_noise=0.3)
    df = batch.data
    true_label = dict(zip(batch.truth["customer_id"].to_list(), batch.truth["true_label"].to_list(), strict=True))
    state = tmp_path / "state"
    adapter = LabelStudioAdapter(label_studio.url, label_studio.token, state, timeout=10)
    project = ensure_project(adapter, SPEC, "churn outage round")

    label_studio.stop()
    try:
        during = send_rows(adapter, project, df, SPEC, round_id="outage")
        assert during.created == [] and during.queued == 30
        assert during.error and "unreachable" in during.error
        # a new adapter (think: the process restarted) sees the same durable outbox
        assert len(LabelStudioAdapter(label_studio.url, label_studio.token, state).outbox.pending(project)) == 30
    finally:
        label_studio.start()

    flushed = LabelStudioAdapter(label_studio.url, label_studio.token, state).flush_outbox()
    assert len(flushed.created) == 30 and flushed.queued == 0
    assert adapter.flush_outbox().created == []
    assert send_rows(adapter, project, df, SPEC, round_id="outage").created == []
    assert len(adapter.existing_tasks(project)) == 30

    for k in range(2):
        SimulatedAnnotator(adapter, SPEC, f"annotator{k}@lakeloop.test", error_rate=0.0, seed=k).annotate(
            project, true_label)
    annotations = adapter.fetch_annotations(project)
    assert len(annotations) == 60
    current = dict(zip(df["customer_id"].to_list(), df["churn"].to_list(), strict=True))
    applied = AppliedLedger.at(state)
    res = resolve(annotations, current, AgreementPolicy(min_annotators=2), SPEC, ledger=applied)
    noisy = {k for k in current if current[k] != true_label[k]}
    assert set(res.corrections["id"].to_list()) == noisy
    applied.mark(res.decided, "outage")
    again = resolve(adapter.fetch_annotations(project), current, AgreementPolicy(min_annotators=2), SPEC,
                    ledger=applied)
    assert again.corrections.height == 0 and again.decided == []


def test_an_unsure_consensus_reopens_its_task_for_one_more_annotator(label_studio, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    batch = synth_batch(3, seed=31, start_id=950_000)
    true_label = dict(zip(batch.truth["customer_id"].to_list(), batch.truth["true_label"].to_list(), strict=True))
    adapter = LabelStudioAdapter(label_studio.url, label_studio.token, tmp_path / "state")
    project = ensure_project(adapter, SPEC, "churn escalation round")
    send_rows(adapter, project, batch.data, SPEC, round_id="escalation")
    for k in range(2):
        SimulatedAnnotator(adapter, SPEC, f"pair{k}@lakeloop.test", error_rate=0.0, seed=k).annotate(
            project, true_label)
    tasks = {int(t.id): t for t in adapter.client.tasks.list(project=project, page_size=100, fields="all")}
    assert all(t.is_labeled for t in tasks.values())  # the overlap of 2 is reached
    task_id = min(tasks)
    assert adapter.request_more_answers({task_id: 3, 99_999_999: 3}) == 1  # a task deleted meanwhile is skipped
    reopened = adapter.client.tasks.get(str(task_id))
    assert reopened.overlap == 3 and not reopened.is_labeled
    assert all(adapter.client.tasks.get(str(t)).is_labeled for t in tasks if t != task_id)
    SimulatedAnnotator(adapter, SPEC, "third@lakeloop.test", error_rate=0.0, seed=9).annotate(
        project, true_label, task_ids=[task_id])
    assert adapter.client.tasks.get(str(task_id)).is_labeled  # the third answer closes it again
    assert len([a for a in adapter.fetch_annotations(project) if a.task_id == task_id]) == 3
