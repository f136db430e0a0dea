"""The model card: importance from XGBoost itself, slices and gate evidence, one self-contained page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.model.model_card import (
    CardFacts,
    Importance,
    booster_importance,
    card_html,
    card_markdown,
    combined,
    importance_png,
)


@pytest.fixture(scope="module")
def booster() -> tuple[xgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"signal": rng.normal(size=2000), "noise": rng.normal(size=2000),
                          "plan": pd.Categorical(rng.choice(["a", "b"], 2000))})
    y = (frame["signal"] + 0.1 * rng.normal(size=2000) > 0).astype(int)
    dtrain = xgb.DMatrix(frame, label=y, enable_categorical=True)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, dtrain, 30), frame


def test_importance_finds_the_feature_the_label_depends_on(booster: tuple[xgb.Booster, pd.DataFrame]) -> None:
    imp = booster_importance(*booster)
    assert max(imp.gain, key=imp.gain.__getitem__) == "signal" == max(imp.shap, key=imp.shap.__getitem__)
    assert sum(imp.shap.values()) == pytest.approx(1.0) and sum(imp.gain.values()) == pytest.approx(1.0)
    assert imp.shap["signal"] > 0.8
    both = combined([imp, Importance(gain={"other": 1.0}, shap={"other": 1.0})])
    assert both.shap["signal"] == pytest.approx(imp.shap["signal"] / 2) and both.shap["other"] == 0.5


def test_the_card_carries_metrics_slices_gate_and_links(booster: tuple[xgb.Booster, pd.DataFrame]) -> None:
    imp = booster_importance(*booster)
    facts = CardFacts(model_name="churn", version="3", reason="drift", links={"lakeFS commit": "http://lake/c1"},
                      metrics={"roc_auc": 0.81, "slice.fiber.rows": 120.0, "slice.fiber.roc_auc": 0.77,
                               "fold.roc_auc": 0.8},
                      gate_markdown="### Gate: promoted to `champion`\n\n| check | result |", importance=imp)
    text = card_markdown(facts, "![feature importance](feature_importance.png)")
    assert text.startswith("# churn v3") and "[lakeFS commit](http://lake/c1)" in text
    assert "| roc_auc | 0.8100 |" in text and "fold.roc_auc" not in text
    assert "| fiber | 120 | 0.7700 |" in text and "## The gate" in text and "Top features: signal" in text
    png = importance_png(imp)
    assert png is not None and png.startswith(b"\x89PNG")
    page = card_html(facts, png)
    assert '<img src="data:image/png;base64,iVBORw0KGgo' in page and "<table>" in page
    assert importance_png(Importance()) is None
