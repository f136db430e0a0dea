"""The `approval` promotion policy on real servers: a challenger that passed the gate waits, paused in Prefect,
for a person's answer; the test answers through Prefect's resume API exactly as the UI's Resume form does."""

from __future__ import annotations

import contextvars
import re
import threading
import time
from typing import Any

import polars as pl
import pytest
from mlflow import MlflowClient

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.adapters.mlflow_registry import CHALLENGER, CHAMPION, alias_version
from lakeloop.settings import get_settings
from tests.fixtures.loop_env import MakeLoopEnv
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration

ROWS = 2000


@pytest.fixture
def loop_env(make_loop_env: MakeLoopEnv) -> Lake:
    # loose margins: what is tested is the person's decision, not the gate's
    return make_loop_env("approval", lambda repo: {"LAKELOOP_GATE_PROMOTION_POLICY": "approval",
                                                   "LAKELOOP_GATE_APPROVAL_TIMEOUT_S": "600",
                                                   "LAKELOOP_GATE_AUC_MARGIN": "0.3",
                                                   "LAKELOOP_GATE_BUSINESS_MARGIN": "10"})


def _commit(lake: Lake, name: str, frame: pl.DataFrame) -> str:
    lake.write_frame("main", f"data/{name}.parquet", frame)
    return lake.commit("main", f"add {name}", {"lakeloop.kind": "data"})


def _retrain_in_thread(repo: str, commit_id: str) -> tuple[threading.Thread, dict[str, Any]]:
    from flows.retrain import retrain

    out: dict[str, Any] = {}
    ctx = contextvars.copy_context()  # the session's Prefect settings

    def run() -> None:
        try:
            out["model"] = ctx.run(retrain, repository=repo, branch="main", commit_id=commit_id, reason="manual")
        except BaseException as e:  # reported by the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _paused_run(prefect: PrefectStack, repo: str, thread: threading.Thread, out: dict[str, Any],
                timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert "error" not in out, out.get("error")
        assert thread.is_alive(), f"the flow finished without pausing: {out}"
        runs = prefect._post("/flow_runs/filter", {
            "limit": 10, "offset": 0, "sort": "EXPECTED_START_TIME_DESC",
            "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}})
        mine = [r for r in runs if r["parameters"].get("repository") == repo]
        if mine:
            return mine[0]
        time.sleep(1)
    raise AssertionError(f"no paused retrain run of {repo} after {timeout:.0f}s")


def _answer(run: dict[str, Any], **answer: object) -> None:
    """What the Prefect UI's Resume form does: POST /flow_runs/{id}/resume with the typed input."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(run["id"], run_input=dict(answer))
    assert result.status.value == "ACCEPT", result.details


def _card_is_there_to_read(prefect: PrefectStack, run: dict[str, Any]) -> None:
    """The pause's evidence links the challenger's model card, and the card is in MLflow while it waits."""
    from tasks.model.model_card import CARD_HTML

    (evidence,) = prefect._post("/artifacts/filter", {
        "limit": 10, "offset": 0, "sort": "CREATED_DESC",
        "artifacts": {"key": {"any_": ["approval"]}, "flow_run_id": {"any_": [run["id"]]}}})
    (run_id,) = re.findall(rf"/runs/(\w+)/artifacts/{re.escape(CARD_HTML)}", str(evidence["data"]))
    assert CARD_HTML in [f.path for f in MlflowClient().list_artifacts(run_id, CARD_HTML.rsplit("/", 1)[0])]


def _decide(prefect: PrefectStack, repo: str, commit_id: str, **answer: object) -> Any:
    thread, out = _retrain_in_thread(repo, commit_id)
    run = _paused_run(prefect, repo, thread, out)
    _card_is_there_to_read(prefect, run)
    _answer(run, **answer)
    thread.join(300)
    assert not thread.is_alive() and "error" not in out, out
    return out["model"]


def test_only_the_approved_challenger_becomes_champion(loop_env: Lake, prefect_server: PrefectStack) -> None:
    lake = loop_env
    repo = lake.settings.repository
    name = get_settings().mlflow.model_name

    c1 = _commit(lake, "001", synth_batch(ROWS, seed=1, start_id=0).data)
    m1 = _decide(prefect_server, repo, c1, approve=True, approver="alice@example.com", reason="looks good")
    assert m1.version == "1" and m1.promoted
    assert alias_version(name, CHAMPION) == "1"

    c2 = _commit(lake, "002", synth_batch(ROWS, seed=2, start_id=ROWS).data)
    m2 = _decide(prefect_server, repo, c2, approve=False, approver="bob@example.com", reason="slices look off")
    assert m2.version == "2" and not m2.promoted
    assert alias_version(name, CHAMPION) == "1" and alias_version(name, CHALLENGER) == "2"

    client = MlflowClient()
    t1, t2 = (client.get_model_version(name, v).tags for v in ("1", "2"))
    assert (t1["lakeloop.approval"], t1["lakeloop.approval.approver"]) == ("approved", "alice@example.com")
    assert (t2["lakeloop.approval"], t2["lakeloop.approval.approver"]) == ("rejected", "bob@example.com")
    assert t2["lakeloop.approval.reason"] == "slices look off" and t2["gate.passed"] == "true"


def test_no_answer_within_the_timeout_is_a_rejection(prefect_server: PrefectStack) -> None:
    """The pause times out in-process: the answer is a rejection by `timeout`, and the run still completes."""
    from prefect import flow

    from flows.approval import ask_for_approval
    from flows.context import FlowContext
    from lakeloop.settings import GateSettings, Settings
    from tasks.model.gate import GateResult

    ctx = FlowContext(settings=Settings(gate=GateSettings(approval_timeout_s=2)), spec=None, lake=None)  # type: ignore[arg-type]
    verdict = GateResult(model_name="churn", version="2", champion_version="1", champion_at_gate="1",
                         eval_commit="e" * 64, rows=100, passed=True, auc=0.8, champion_auc=0.79)

    @flow(name="approval-timeout")
    def waits() -> object:
        return ask_for_approval(ctx, verdict)

    state = waits(return_state=True)
    assert state.is_completed(), state
    answer = state.result()
    assert not answer.approved and answer.approver == "timeout"
