"""CBPE and the monitor's combined rule, without servers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lakeloop.spec import DatasetSpec
from tasks.serving import monitor_history
from tasks.serving.monitoring import MonitorReport, Signal, _below_reference_pvalue
from tasks.serving.performance_estimate import CalibrationError, Calibrator, expected_auc, expected_value


def _sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    return scores, 1 / (1 + np.exp(-(4 * scores - 2)))


@pytest.mark.parametrize("decimals", [None, 1])
def test_expected_auc_is_the_mean_auc_of_labels_drawn_from_the_probabilities(decimals: int | None) -> None:
    scores, p = _sample(2000, 0)
    if decimals is not None:  # ties count half
        scores = np.round(scores, decimals)
    rng = np.random.default_rng(1)
    simulated = np.mean([roc_auc_score(rng.random(len(p)) < p, scores) for _ in range(200)])
    assert expected_auc(p, scores) == pytest.approx(simulated, abs=0.003)


def test_expected_auc_of_a_random_ranking_is_a_half_and_undefined_without_pairs() -> None:
    scores, p = _sample(4000, 2)
    assert expected_auc(p, np.random.default_rng(3).random(len(p))) == pytest.approx(0.5, abs=0.02)
    assert expected_auc(np.ones(10), scores[:10]) is None


def test_calibrator_maps_scores_to_observed_rates_and_round_trips_as_json() -> None:
    rng = np.random.default_rng(4)
    raw = rng.random(5000)
    y = rng.random(5000) < raw**2  # the model is overconfident at the top, underconfident below
    cal = Calibrator.fit(raw, y)
    assert cal.apply(np.array([0.5]))[0] == pytest.approx(0.25, abs=0.06)
    again = Calibrator.model_validate_json(cal.model_dump_json())
    assert np.allclose(again.apply(raw[:100]), cal.apply(raw[:100]))
    with pytest.raises(CalibrationError, match="single class"):
        Calibrator.fit(raw[:100], np.zeros(100, dtype=bool))


def test_expected_value_uses_the_cost_matrix(churn_spec: DatasetSpec) -> None:
    cm = churn_spec.cost_matrix
    certain_pos = np.ones(4)
    acted = np.full(4, 0.99)
    assert expected_value(certain_pos, acted, churn_spec) == pytest.approx(cm.true_positive)
    assert expected_value(np.zeros(4), np.zeros(4), churn_spec) == pytest.approx(cm.true_negative)


def test_auc_decay_pvalue_is_small_only_for_a_real_drop() -> None:
    assert _below_reference_pvalue(0.70, 0.80, 300, 700) < 1e-4
    assert _below_reference_pvalue(0.795, 0.80, 300, 700) > 0.3


def test_cooldown_holds_a_second_request_and_lets_one_through_after() -> None:
    now = 1_000_000.0
    asked = [(int((now - 3600) * 1000), 1.0)]
    assert monitor_history.in_cooldown(asked, 24, now=now)
    assert not monitor_history.in_cooldown(asked, 0.5, now=now)
    assert not monitor_history.in_cooldown([(int((now - 60) * 1000), 0.0)], 24, now=now)


def test_report_shows_each_signal_threshold_and_a_history_chart() -> None:
    report = MonitorReport(drift_detected=True, reasons=["x"], rows=10,
                           signals=[Signal(name="prediction drift (probability KS)", value=0.2,
                                           threshold=">= 0.05 and p < 0.025", fired=True)])
    text = monitor_history.to_markdown(report, {"monitor.output_ks": [(1, 0.01), (2, 0.02), (3, 0.2)]})
    assert "| prediction drift (probability KS) | 0.2 | >= 0.05 and p < 0.025 | **yes** |" in text
    assert "`▁▁█`" in text
    assert monitor_history.sparkline([1.0, 1.0]) == "▁▁"
