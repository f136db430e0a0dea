"""The business's list after batch inference: who to act on, ranked by what the cost matrix says acting earns."""

from __future__ import annotations

import polars as pl
import pytest

from lakeloop.settings import ROOT
from lakeloop.spec import CostMatrix, DatasetSpec
from tasks.serving.action_list import action_list, action_markdown, expected_gain

CHURN = DatasetSpec.from_yaml(ROOT / "examples" / "churn" / "spec.yaml")


def _batch(probabilities: list[float]) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(probabilities)
    data = pl.DataFrame({"customer_id": [f"c{i}" for i in range(n)],
                         "senior_citizen": [i % 2 == 0 for i in range(n)],
                         "contract": ["month-to-month" if i < 3 else "two-year" for i in range(n)],
                         "internet_service": ["fiber"] * n})
    preds = pl.DataFrame({"customer_id": data["customer_id"], "label": ["no"] * n, "probability": probabilities,
                          "model_version": ["7"] * n})
    return data, preds


def test_rows_the_business_acts_on_ranked_by_expected_gain() -> None:
    data, preds = _batch([0.2, 0.9, 0.5, 0.34, 0.36, 0.7])
    actions = action_list(data, preds, CHURN, model_version="7", data_commit="abc")
    # churn acts at p >= 0.35; a row's gain is 100 p - 50 (1 - p)
    assert [r["customer_id"] for r in actions.top] == ["c1", "c5", "c2", "c4"]
    assert actions.top[0]["expected gain"] == pytest.approx(100 * 0.9 - 50 * 0.1)
    assert actions.to_act_on == 4 and actions.expected_gain == pytest.approx(sum(
        100 * p - 50 * (1 - p) for p in (0.9, 0.7, 0.5, 0.36)))
    counts = {c.slice: (c.rows, c.to_act_on) for c in actions.slices}
    assert counts == {"senior_citizens": (3, 2), "month_to_month": (3, 2), "fiber": (6, 4)}
    assert actions.top[0]["slices"] == "month_to_month, fiber"
    text = action_markdown(actions, "[`abc`](http://lake/abc)")
    assert "v7" in text and "[`abc`](http://lake/abc)" in text and "| month_to_month | 3 | 2 |" in text


def test_the_cost_matrix_sets_the_gain() -> None:
    dear = CHURN.model_copy(update={"cost_matrix": CostMatrix(true_positive=10, false_positive=-200,
                                                              true_negative=0, false_negative=-5)})
    assert expected_gain([0.5], dear).tolist() == [pytest.approx(0.5 * 15 + 0.5 * -200)]
    data, preds = _batch([0.9, 0.2])
    assert action_list(data, preds, CHURN, model_version="1", data_commit="x", top=1).top[0]["customer_id"] == "c0"


def test_predictions_that_do_not_match_the_rows_are_an_error() -> None:
    data, preds = _batch([0.5, 0.6])
    with pytest.raises(ValueError, match="2 data rows but 1 predictions"):
        action_list(data, preds.head(1), CHURN, model_version="1", data_commit="x")
