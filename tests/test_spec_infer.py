"""`lakeloop spec infer`: the draft validates its own sample and flags PII for review."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from infra.cli import app
from infra.demo.synth import synth_batch
from lakeloop.spec import DatasetSpec, FeatureType
from tasks.data.spec_infer import infer_spec, render_yaml
from tasks.data.validate import validate


def _draft(df: pl.DataFrame, name: str = "d") -> DatasetSpec:
    return DatasetSpec.model_validate(yaml.safe_load(render_yaml(infer_spec(df, name))))


def test_draft_from_the_worked_example_validates_it_with_no_quarantine_and_flags_email() -> None:
    data = synth_batch(3000, seed=7).data
    inferred = infer_spec(data, "churn")
    spec = DatasetSpec.model_validate(yaml.safe_load(render_yaml(inferred)))
    result = validate(data, spec)
    assert result.report.n_invalid == 0 and result.report.n_valid == data.height
    assert spec.id_column == "customer_id" and spec.label_column == "churn" and spec.time_column == "event_time"
    assert spec.classes == ["no", "yes"]
    assert spec.pii_columns == ["email"] and "email" not in spec.model_features
    assert any("PII" in n for n in inferred.review["email"])
    assert spec.feature("contract").type == FeatureType.categorical
    assert spec.feature("data_usage_gb").nullable and not spec.feature("tenure_months").nullable
    # ranges carry a margin: a slightly larger value next batch is not quarantined
    assert spec.feature("tenure_months").max is not None
    assert spec.feature("tenure_months").max > data["tenure_months"].max()  # type: ignore[operator]


def test_pii_is_found_by_value_pattern_not_only_by_name() -> None:
    n = 40
    df = pl.DataFrame({
        "uid": [f"u{i}" for i in range(n)],
        "contact": [f"p{i}@mail.org" for i in range(n)],
        "tel": [f"+44 20 7946 {i:04d}" for i in range(n)],
        "score": [float(i) for i in range(n)],
        "y": [i % 2 for i in range(n)],
    })
    spec = _draft(df)
    assert set(spec.pii_columns) == {"contact", "tel"}
    assert spec.id_column == "uid" and spec.label_column == "y" and spec.classes == ["0", "1"]


def test_cli_drafts_from_csv_and_the_draft_validates_the_csv(tmp_path: Path) -> None:
    data = synth_batch(500, seed=3).data
    csv = tmp_path / "batch.csv"
    data.write_csv(csv)
    out = tmp_path / "spec.yaml"
    res = CliRunner().invoke(app, ["spec", "infer", str(csv), "-o", str(out)])
    assert res.exit_code == 0, res.output
    spec = DatasetSpec.from_yaml(out)
    assert "# REVIEW: PII candidate" in out.read_text()
    assert validate(pl.read_csv(csv, infer_schema=False), spec).report.n_invalid == 0


def test_a_frame_without_an_id_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="id column"):
        infer_spec(pl.DataFrame({"a": [1, 1, 2, 2], "y": [0, 1, 0, 1]}), "x")
