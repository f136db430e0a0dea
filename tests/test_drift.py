"""Drift on whylogs profiles: shifted columns are flagged, resamples of one distribution are not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lakeloop.settings import DriftSettings
from lakeloop.spec import DatasetSpec
from tasks.data.drift import detect_drift, holm_reject
from tasks.data.profiling import profile_frame

N = 5000

SPEC = DatasetSpec.model_validate({
    "name": "toy", "id_column": "id", "label_column": "y", "classes": ["no", "yes"],
    "features": [
        {"name": "amount", "type": "numeric"},
        {"name": "age", "type": "integer"},
        {"name": "plan", "type": "categorical", "categories": ["a", "b", "c"]},
        {"name": "active", "type": "boolean"},
        {"name": "email", "type": "string", "pii": True},
    ],
})


def frame(seed: int, *, amount_shift: float = 0.0, plan_p: tuple[float, float, float] = (0.5, 0.3, 0.2),
          pos_rate: float = 0.2) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "id": [f"r{seed}-{i}" for i in range(N)],
        "amount": rng.lognormal(3.0 + amount_shift, 0.5, N),
        "age": rng.integers(18, 80, N),
        "plan": rng.choice(["a", "b", "c"], N, p=list(plan_p)),
        "active": rng.random(N) < 0.6,
        "email": [f"u{i}@x.org" for i in range(N)],
        "y": np.where(rng.random(N) < pos_rate, "yes", "no"),
    })


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return profile_frame(frame(1), SPEC)


def test_resamples_of_the_same_distribution_do_not_drift(reference) -> None:  # type: ignore[no-untyped-def]
    for seed in (2, 3, 4):
        report = detect_drift(profile_frame(frame(seed), SPEC), reference, SPEC, DriftSettings())
        assert report.drifted == [], report.to_markdown()
        assert report.decision is False
        assert not report.label_shifted
        assert {c.column for c in report.columns} == {"amount", "age", "plan", "active"}  # no PII, no label


def test_shifted_numeric_and_categorical_columns_are_flagged(reference) -> None:  # type: ignore[no-untyped-def]
    current = profile_frame(frame(5, amount_shift=0.3, plan_p=(0.3, 0.3, 0.4)), SPEC)
    report = detect_drift(current, reference, SPEC, DriftSettings())
    assert report.drifted == ["amount", "plan"]
    assert report.decision is True
    by = {c.column: c for c in report.columns}
    assert by["amount"].algorithm == "ks" and by["amount"].category == "DRIFT"
    assert by["plan"].algorithm == "chi-square" and by["plan"].category == "DRIFT"
    assert by["active"].algorithm == "chi-square" and not by["active"].drifted
    assert report.drifted_share == pytest.approx(0.5)
    md = report.to_markdown()
    assert "amount" in md and "retrain" in md and "| plan | chi-square |" in md


def test_label_shift_is_reported_separately(reference) -> None:  # type: ignore[no-untyped-def]
    report = detect_drift(profile_frame(frame(6, pos_rate=0.35), SPEC), reference, SPEC)
    assert report.label_shifted and report.label_shift is not None
    assert report.label_shift.column == "y" and report.label_shift.algorithm == "chi-square"
    assert report.drifted == [] and report.decision is False
    assert any("label" in r for r in report.reasons)


def test_decision_thresholds_come_from_settings(reference) -> None:  # type: ignore[no-untyped-def]
    current = profile_frame(frame(7, amount_shift=0.3), SPEC)
    strict = DriftSettings(min_drifted_columns=2, min_drifted_share=0.5)
    report = detect_drift(current, reference, SPEC, strict)
    assert report.drifted == ["amount"] and report.decision is False
    assert "below retrain thresholds" in report.reasons[0]
    assert detect_drift(current, reference, SPEC, DriftSettings(min_drifted_share=0.25,
                                                                  min_drifted_columns=9)).decision


def test_holm() -> None:
    assert holm_reject([0.01, 0.04, 0.03, 0.5], 0.05) == [True, False, False, False]
    assert holm_reject([0.001, 0.012, 0.02], 0.05) == [True, True, True]
    assert holm_reject([], 0.05) == []
