"""An experiment's verdict follows the gate's evidence, and its report says why."""

from __future__ import annotations

import json

from lakeloop.outcomes import ExperimentOutcome, ModelRef
from tasks.model.evidence import Interval
from tasks.model.experiment_report import report_files, verdict_of
from tasks.model.gate import CheckResult, GateResult


def _result(passed: bool, low: float, high: float) -> GateResult:
    return GateResult(model_name="m", version="5", champion_version="4", eval_commit="e" * 64, rows=900,
                      passed=passed, auc=0.80, champion_auc=0.79, bar_version="4", bar_auc=0.79,
                      auc_delta=Interval(estimate=(low + high) / 2, low=low, high=high, confidence=0.95,
                                         resamples=1000),
                      checks=[CheckResult(name="auc", passed=passed, detail="AUC 0.8000 vs champion v4 0.7900")],
                      reasons=[] if passed else ["signal: their labels carry no signal"])


def test_verdicts() -> None:
    assert verdict_of(_result(True, 0.002, 0.02))[0] == "better"
    assert verdict_of(_result(True, -0.004, 0.02))[0] == "not-worse"
    verdict, summary = verdict_of(_result(False, -0.05, -0.01))
    assert verdict == "worse" and "no signal" in summary and "gets worse" in summary


def test_report_holds_the_evidence_in_both_forms() -> None:
    result = _result(False, -0.05, -0.01)
    verdict, summary = verdict_of(result)
    outcome = ExperimentOutcome(branch="exp-x", commit_id="c" * 64, verdict=verdict, summary=summary,
                                eval_commit="e" * 64, champion_version="4", drifted=["tenure_months"],
                                candidate=ModelRef(name="m", version="5", run_id="r"))
    files = report_files(outcome, result, {"mlflow": "http://mlflow/#/models/m/versions/5"})
    doc = json.loads(files[".json"][0])
    assert doc["verdict"] == "worse" and doc["gate"]["auc_delta"]["high"] == -0.01
    assert doc["drifted_columns"] == ["tenure_months"]
    md = files[".md"][0].decode()
    assert "**worse**" in md and "[m v5](http://mlflow/#/models/m/versions/5)" in md and "tenure_months" in md
    assert files[".md"][1] == "text/markdown" and files[".json"][1] == "application/json"
