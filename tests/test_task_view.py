"""The labeler's task view, as built (the browser test checks how Label Studio shows it)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from infra.demo.synth import synth_batch
from lakeloop.adapters.label_studio import PREDICTION_VERSION
from lakeloop.spec import DatasetSpec
from tasks.labels.task_view import HIDDEN_DATA, cell_text, features_html, labeling_config, task_payloads

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")


def _cells(html: str) -> list[tuple[str, str]]:
    return re.findall(r"<th[^>]*>([^<]*)</th><td[^>]*>([^<]*)</td>", html)


def test_every_feature_in_the_spec_order_readable_booleans_included() -> None:
    row = synth_batch(1, seed=3).data.row(0, named=True)
    row.update(senior_citizen=True, partner=False, total_charges=12345.678, data_usage_gb=None)
    cells = _cells(features_html(SPEC, row))
    assert [n for n, _ in cells] == [f.name for f in SPEC.features if not f.pii]
    shown = dict(cells)
    assert shown["senior_citizen"] == "yes" and shown["partner"] == "no"  # never a blank cell
    assert shown["total_charges"] == "12,345.68" and shown["data_usage_gb"] == "–"
    assert cell_text(float("nan")) == "–" and cell_text(1200) == "1,200"


def test_every_feature_says_what_it_means() -> None:
    described = SPEC.model_copy(update={"features": [
        f.model_copy(update={"description": "months as a customer"}) if f.name == "tenure_months" else f
        for f in SPEC.features]})
    html = features_html(described, synth_batch(1, seed=3).data.row(0, named=True))
    assert '<th title="months as a customer">tenure_months</th>' in html  # the spec's description
    assert '<th title="one of dsl, fiber, none">internet_service</th>' in html  # else what values it takes


def test_every_round_is_pre_selected_and_shows_suggestion_confidence_and_round() -> None:
    rows = synth_batch(2, seed=4).data
    first = task_payloads(rows, SPEC, np.array([[0.2, 0.8], [0.7, 0.3]]), model_version="run-1", round_id="r1")
    second = task_payloads(rows, SPEC, np.array([[0.9, 0.1], [0.4, 0.6]]), model_version="run-2", round_id="r2")
    # Label Studio pre-selects only predictions of the project's model_version, fixed at the first import
    assert {t["predictions"][0]["model_version"] for t in first + second} == {PREDICTION_VERSION}
    assert [(t["data"]["suggestion"], t["data"]["confidence"], t["data"]["round"]) for t in second] == [
        ("no", "90%", "r2"), ("yes", "60%", "r2")]
    assert second[0]["data"]["model_run"] == "run-2"
    assert set(HIDDEN_DATA) < set(first[0]["data"])  # the data manager hides what only machines read


def test_the_question_and_the_choices_agree() -> None:
    cfg = labeling_config(SPEC)
    question = re.search(r'<Header value="(churn:[^"]*)"', cfg)
    assert question and "no / yes / unsure" in question.group(1)
    assert re.findall(r'<Choice value="([^"]+)"/>', cfg) == ["no", "yes", "unsure"]
    assert "Is the label" not in cfg and "<Table" not in cfg  # LS's Table sorts, pages and blanks booleans


def test_no_pii_in_any_task() -> None:
    rows = synth_batch(20, seed=5).data.with_columns(pl.lit("secret@example.com").alias("email"))
    assert not any("secret@example.com" in str(t) or "email" in str(t) for t in task_payloads(rows, SPEC))
