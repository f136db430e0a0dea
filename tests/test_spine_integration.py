"""The loop's spine on real servers: commits → validation → drift → retraining → MLflow, with lineage both ways.

The flows run in-process against a real Prefect server, a real MLflow server and the
local lakeFS server; batches come from the synthetic churn generator.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from infra.demo.run import mixed_batch
from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import Settings, get_settings
from tests.fixtures.browser import open_browser, rendered_images
from tests.fixtures.loop_env import MakeLoopEnv
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration

ROWS = 3000


@pytest.fixture
def loop_env(make_loop_env: MakeLoopEnv) -> Lake:
    return make_loop_env("spine")


def _commit(lake: Lake, name: str, frame: pl.DataFrame) -> str:
    lake.write_frame("main", f"data/{name}.parquet", frame)
    return lake.commit("main", f"add {name}", {"lakeloop.kind": "data"})


def test_commits_drive_training_drift_and_quarantine(loop_env: Lake, prefect_server: PrefectStack) -> None:
    from flows.on_commit import on_commit
    from infra.lineage import commit_lineage, model_lineage

    lake = loop_env
    repo = lake.settings.repository
    settings = get_settings()

    c1 = _commit(lake, "001-baseline", synth_batch(ROWS, seed=1, start_id=0).data)
    o1 = on_commit(repository=repo, branch="main", commit_id=c1)
    assert o1.decision.reason == "first-model" and o1.model is not None and o1.model.version == "1"
    assert o1.model.metrics["roc_auc"] > 0.7 and o1.model.promoted  # the first model becomes champion

    c2 = _commit(lake, "002-drifted", synth_batch(ROWS, seed=2, start_id=ROWS, covariate_drift=1.0).data)
    o2 = on_commit(repository=repo, branch="main", commit_id=c2)
    assert o2.decision.reason == "drift", o2.decision.reasons
    assert o2.drifted, "drifted columns are listed"
    assert o2.model is not None and o2.model.version == "2"
    _pictures(prefect_server, o1.model.run_id, o2.model.run_id)
    with open_browser() as browser:
        _seen_in_a_browser(browser, prefect_server, o2.model.run_id)
    # the monitor may report the same drifted commit: an event-driven retrain never trains it twice
    from flows.retrain import retrain
    assert retrain(repository=repo, branch="main", commit_id=c2, reason="monitor: drift", force=False) is None

    c3 = _commit(lake, "003-clean", mixed_batch(ROWS, seed=3, start_id=2 * ROWS))
    o3 = on_commit(repository=repo, branch="main", commit_id=c3)
    assert o3.decision.reason == "no-drift", o3.decision.reasons
    assert o3.model is None
    _monitor_twice(repo, settings.mlflow.model_name)

    c4 = _commit(lake, "004-invalid", mixed_batch(ROWS, seed=4, start_id=3 * ROWS, invalid_rate=0.05))
    o4 = on_commit(repository=repo, branch="main", commit_id=c4)
    assert o4.batch_rows == ROWS
    assert o4.invalid_rows == 2 * round(ROWS // 2 * 0.05)  # each half of the mixture has 5% invalid rows
    assert o4.quarantine is not None
    q = lake.read_frame(o4.quarantine.branch, o4.quarantine.objects[0])
    assert q.height == o4.invalid_rows and q["_reasons"].str.len_chars().min() > 0  # type: ignore[operator]

    _history_shows_each_commit(settings.model_copy(update={"prefect": settings.prefect.model_copy(
        update={"api_url": prefect_server.api_url})}), [c4, c3, c2, c1])

    # lineage, both ways
    assert [m[1] for m in commit_lineage(c2, settings).models] == ["2"]
    lin = model_lineage(settings.mlflow.model_name, "2", settings)
    assert lin.commit_id == c2 and lin.repository == repo

    # each promotion (v1 first model; v2 if its gate passed) asks for fresh predictions
    promoted = sum(o.model.promoted for o in (o1, o2) if o.model is not None)
    runs = prefect_server.wait_for_runs("batch-inference/batch-inference",
                                        lambda r: r["parameters"].get("repository") == repo, count=promoted)
    assert len(runs) == promoted and all(r["parameters"]["ref"] == "main" for r in runs)
    _business_view(prefect_server, repo)


def _business_view(prefect_server: PrefectStack, repo: str) -> None:
    """Batch inference leaves the business its list: rows worth acting on, with the model and commit."""
    from flows.batch_inference import batch_inference

    out = batch_inference(repository=repo)  # the session's worker runs stubs: score in-process
    (table,) = prefect_server._post("/artifacts/filter", {"artifacts": {"key": {"any_": ["worth-acting-on"]}},
                                                          "sort": "CREATED_DESC", "limit": 1})
    assert table["type"] == "table" and f"model version **v{out.model_version}**" in table["description"]
    assert out.data_commit[:12] in table["description"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    gains = [r["expected gain"] for r in rows]
    assert rows and gains == sorted(gains, reverse=True) and min(gains) > 0
    assert "| month_to_month |" in table["description"]  # counts per slice


def _pictures(prefect_server: PrefectStack, first_run: str, drifted_run: str) -> None:
    """Every version has its card in MLflow; the run a drift caused shows what moved, in MLflow and Prefect."""
    from lakeloop.adapters.mlflow_tracking import stored_bytes
    from tasks.data.drift_pictures import DRIFT_PICTURE_ARTIFACT
    from tasks.model.model_card import CARD_HTML, CARD_MARKDOWN, IMPORTANCE_PNG

    for run_id in (first_run, drifted_run):
        card = (stored_bytes(run_id, CARD_MARKDOWN) or b"").decode()
        assert "## Slices" in card and "## The gate" in card and "[lakeFS commit](" in card, card[:500]
        assert (stored_bytes(run_id, IMPORTANCE_PNG) or b"").startswith(b"\x89PNG")
        assert b"data:image/png;base64," in (stored_bytes(run_id, CARD_HTML) or b"")
    assert stored_bytes(first_run, DRIFT_PICTURE_ARTIFACT) is None  # the first model had nothing to drift from
    assert (stored_bytes(drifted_run, DRIFT_PICTURE_ARTIFACT) or b"").startswith(b"\x89PNG")
    pictures = prefect_server._post("/artifacts/filter", {"artifacts": {"key": {"any_": ["drift-pictures"]}},
                                                          "sort": "CREATED_DESC", "limit": 1})
    assert pictures and "data:image/png;base64," in pictures[0]["data"]


def _seen_in_a_browser(browser: Any, prefect_server: PrefectStack, drifted_run: str) -> None:
    """What a person opens: the drift pictures in Prefect's artifact page, the card in MLflow's run page."""
    from lakeloop.adapters.mlflow_tracking import run_url
    from tasks.model.model_card import CARD_HTML, IMPORTANCE_PNG

    (pictures,) = prefect_server._post("/artifacts/filter", {"artifacts": {"key": {"any_": ["drift-pictures"]}},
                                                             "sort": "CREATED_DESC", "limit": 1})
    page = browser.new_page()
    page.goto(f"{prefect_server.api_url.removesuffix('/api')}/artifacts/artifact/{pictures['id']}")
    assert rendered_images(page, 'img[src^="data:image/png"]') == 1
    page = browser.new_page()  # MLflow's image viewer shows the artifact through a blob: URL
    page.goto(run_url(drifted_run, artifact=IMPORTANCE_PNG))
    assert rendered_images(page, 'img[src^="blob:"]') >= 1
    page = browser.new_page()  # the HTML card renders in an iframe, its picture inline
    page.goto(run_url(drifted_run, artifact=CARD_HTML))
    page.wait_for_selector("iframe", timeout=60_000)
    (card,) = [f for f in page.frames if f != page.main_frame]
    assert rendered_images(card, 'img[src^="data:image/png"]') == 1
    assert "Slices" in card.inner_text("body")


def _monitor_twice(repo: str, model_name: str) -> None:
    """The monitor estimates performance from a calibrator stored with the champion, records each batch in
    the champion's MLflow metrics, and a second alarm inside the cooldown asks for no second retrain."""
    from flows.monitor import monitor
    from lakeloop.adapters.mlflow_tracking import latest_training_reference, metric_history, stored_bytes
    from tasks.serving import monitor_history
    from tasks.serving.performance_estimate import CALIBRATOR_ARTIFACT

    first, second = monitor(repository=repo), monitor(repository=repo)
    assert any(s.name == "estimated AUC drop (CBPE)" for s in first.signals), first.signals
    assert first.estimate is not None and first.estimate.auc is not None and 0.6 < first.estimate.auc < 1
    ref = latest_training_reference(model_name)
    assert ref is not None and stored_bytes(ref.run_id, CALIBRATOR_ARTIFACT) is not None
    # labelled batches are measured against the champion's AUC (the monitor never had one before)
    assert first.performance is not None and first.performance.auc_reference == ref.auc is not None
    assert [v for _, v in metric_history(ref.run_id, "monitor.drift")] == [float(first.drift_detected),
                                                                             float(second.drift_detected)]
    requests = [v for _, v in metric_history(ref.run_id, monitor_history.RETRAIN_REQUESTED)]
    assert requests == [float(first.drift_detected), 0.0]


def _history_shows_each_commit(settings: Settings, newest_first: list[str]) -> None:
    """`lakeloop history` joins each commit's on-commit result (decision, drift) with MLflow (model, gate)."""
    from infra.history import commit_history

    rows = {r.commit_id: r for r in commit_history(settings, "main", limit=10)}
    c4, c3, c2, c1 = newest_first
    assert rows[c4].decision is not None, {c: rows[c].decision for c in newest_first}
    assert rows[c1].decision == "first-model" and rows[c2].decision == "drift" and rows[c3].decision == "no-drift"
    assert rows[c2].drifted and not rows[c3].drifted
    assert [m.version for m in rows[c1].models] == ["1"] and rows[c1].models[0].gate in ("passed", "-")
    assert [m.version for m in rows[c2].models] == ["2"] and rows[c2].models[0].gate in ("passed", "refused")
    assert rows[c3].models == [] and all(r.run_state == "COMPLETED" for c, r in rows.items() if c in newest_first)
    assert all(r.kind == "data" for c, r in rows.items() if c in newest_first)
