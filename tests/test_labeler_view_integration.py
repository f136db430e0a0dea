"""What a member of the labeling team sees, checked in a real browser (Debian's chromium via Playwright).

A labeler (an ordinary Label Studio user) logs in and opens tasks of two review rounds. Each task must show
every non-PII feature in the spec's order without paging (booleans included, as yes/no), never a PII value,
the current label, the model's suggestion pre-selected with its confidence and round, and the instructions.
The labeler's answer, submitted through the UI, reaches lakeFS as a correction after the intake.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

import numpy as np
import polars as pl
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import get_settings
from lakeloop.spec import DatasetSpec
from tests.fixtures.browser import open_browser
from tests.fixtures.label_studio import Labeler, LabelStudioServer
from tests.fixtures.loop_env import MakeLoopEnv

pytestmark = pytest.mark.integration

UI_TIMEOUT_MS = 60_000


@pytest.fixture
def loop_env(make_loop_env: MakeLoopEnv, label_studio: LabelStudioServer, labeler: Labeler) -> Lake:
    return make_loop_env("view", lambda repo: {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_TOKEN": label_studio.token,
        "LAKELOOP_LABELING_PROJECT_TITLE": f"view {repo}",
        "LAKELOOP_LABELING_TRUSTED_REVIEWERS": f'["{labeler.email}"]',
        "LAKELOOP_LABELING_MIN_CORRECTIONS_PER_COMMIT": "1",
    })


def _shown(v: object) -> str:
    """How a person expects to read a value (independent of the product's formatter)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _login(page: Any, url: str, who: Labeler) -> None:
    page.goto(f"{url}/user/login/", timeout=UI_TIMEOUT_MS)
    page.fill("input[name=email]", who.email)
    page.fill("input[name=password]", who.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=UI_TIMEOUT_MS, wait_until="commit")


def _wait_for_task(page: Any, round_id: str) -> None:
    """The labeling stream shows a task (the instructions pop up first: closed)."""
    page.get_by_text("Current label").first.wait_for(timeout=UI_TIMEOUT_MS)
    with contextlib.suppress(PlaywrightTimeout):  # this task's view, not the previous one (asserted after)
        page.get_by_text(re.compile(rf"\b{round_id}\b")).first.wait_for(timeout=10_000)
    _close_dialogs(page)


def _close_dialogs(page: Any) -> None:
    """Close Label Studio's pop-ups (the instructions open when the stream starts)."""
    page.wait_for_timeout(500)  # the pop-up fades in
    for dialog in page.locator(".lsf-modal-ls_visible").all():
        if dialog.is_visible():
            dialog.locator("button[aria-label*=lose]").first.click()
            dialog.wait_for(state="hidden", timeout=UI_TIMEOUT_MS)


def _feature_rows(page: Any) -> dict[str, str]:
    """Visible table rows of the task: first cell -> second cell."""
    out: dict[str, str] = {}
    for tr in page.locator("tr").all():
        cells = [c.inner_text().strip() for c in tr.locator("th, td").all()]
        if len(cells) >= 2 and tr.is_visible():
            out.setdefault(cells[0], cells[1])
    return out


def test_a_labeler_reviews_two_rounds_and_the_answer_reaches_lakefs(loop_env: Lake, label_studio: LabelStudioServer,
                                                                   labeler: Labeler) -> None:
    from flows.ingest_labels import ingest_labels
    from lakeloop.adapters.label_studio import LabelStudioAdapter
    from tasks.data import dataset
    from tasks.labels.task_view import ensure_project, send_rows

    lake, settings = loop_env, get_settings()
    spec = DatasetSpec.from_yaml(settings.spec_path)
    data = synth_batch(40, seed=5).data
    lake.write_frame("main", "data/001.parquet", data)
    lake.commit("main", "a batch")
    # rows where booleans are both true and false, so a blank cell cannot pass for either
    first = data.filter(pl.col("senior_citizen") & ~pl.col("partner")).head(1)
    second = data.filter(~pl.col("senior_citizen") & pl.col("paperless_billing")).head(1)
    assert first.height == second.height == 1

    adapter = LabelStudioAdapter.from_settings(settings)
    project = ensure_project(adapter, spec, settings.labeling.project_title, annotations_per_task=1)
    # each round comes from a different model run; the second one suggests the other class
    send_rows(adapter, project, first, spec, np.array([[0.2, 0.8]]), model_version="run-1", round_id="round-1")
    send_rows(adapter, project, second, spec, np.array([[0.9, 0.1]]), model_version="run-2", round_id="round-2")
    answers: dict[str, str] = {}

    with open_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _login(page, label_studio.url, labeler)
        _check_data_manager(page, label_studio.url, project)
        # the labeling stream ("Label All Tasks"): where Label Studio hands out pre-annotations by model_version
        page.goto(f"{label_studio.url}/projects/{project}/data?labeling=1", timeout=UI_TIMEOUT_MS)
        for rows, suggestion, confidence, round_id in ((first, "yes", "80%", "round-1"),
                                                       (second, "no", "90%", "round-2")):
            row = rows.row(0, named=True)
            _wait_for_task(page, round_id)
            _check_task(page, spec, row, suggestion, confidence, round_id)
            # the labeler corrects the row's current label and submits
            answer = "yes" if row[spec.label_column] == "no" else "no"
            answers[str(row[spec.id_column])] = answer
            page.locator(".lsf-choices label", has_text=re.compile(rf"^\s*{answer}")).first.click()
            page.locator("button[name=submit]").first.click()
            deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
            while not [a for a in adapter.fetch_annotations(project) if a.row_id == str(row[spec.id_column])]:
                assert time.monotonic() < deadline, "the submitted answer never reached Label Studio"
                page.wait_for_timeout(500)

    got = {a.row_id: (a.choice, a.annotator) for a in adapter.fetch_annotations(project)}
    assert got == {rid: (answer, labeler.email) for rid, answer in answers.items()}
    intake = ingest_labels(project_id=project, repository=lake.settings.repository)
    assert intake.corrections == 2 and intake.merge_commit is not None
    after, _ = dataset.training_set(lake, spec, "main")
    now = dict(zip(after.get_column(spec.id_column).cast(pl.Utf8).to_list(),
                   after.get_column(spec.label_column).to_list(), strict=True))
    assert {rid: now[rid] for rid in answers} == answers


def _check_data_manager(page: Any, url: str, project: int) -> None:
    """The queue shows what a reviewer scans (current label, the model's suggestion), not the machinery."""
    page.goto(f"{url}/projects/{project}/data", timeout=UI_TIMEOUT_MS)
    page.locator(".lsf-table-head").first.wait_for(timeout=UI_TIMEOUT_MS)
    head = page.locator(".lsf-table-head").first.inner_text()
    assert "current_label" in head and "suggestion" in head, f"data manager columns: {head!r}"
    assert not {"row_hash", "features", "model_run"} & set(re.findall(r"\w+", head)), head


def _check_task(page: Any, spec: DatasetSpec, row: dict[str, Any], suggestion: str, confidence: str,
                round_id: str) -> None:
    shown = [f for f in spec.features if not f.pii]
    seen = _feature_rows(page)
    for f in shown:  # every feature on the first screen, readable, booleans included
        assert seen.get(f.name) == _shown(row[f.name]), f"{f.name}: {seen.get(f.name)!r} in {seen}"
    names = [n for n in seen if n in {f.name for f in shown}]
    assert names == [f.name for f in shown], "features keep the spec's order"
    content = page.content()
    assert all(str(row[f.name]) not in content for f in spec.features if f.pii and row[f.name]), \
        "a PII value reached Label Studio"
    text = page.locator("body").inner_text()
    assert re.search(rf"current label\W+{spec.label_column}\W+{row[spec.label_column]}", text, re.I), text
    assert re.search(rf"suggestion\W+{suggestion}\W+{confidence}", text, re.I), text
    assert round_id in text
    checked = [c.inner_text() for c in page.locator(".lsf-choices label:has(input[type=radio]:checked)").all()]
    assert checked, f"{round_id}: the model's suggestion is not pre-selected"
    assert {re.sub(r"\[\d+\]$", "", c).strip() for c in checked} == {suggestion}, checked
    assert not page.get_by_text(re.compile(r"^(Regions|Relations)$")).filter(visible=True).count()
    page.get_by_role("button", name=re.compile("instruction", re.I)).first.click()
    page.get_by_text("The pre-selected choice is the model's guess").first.wait_for(timeout=UI_TIMEOUT_MS)
    _close_dialogs(page)
