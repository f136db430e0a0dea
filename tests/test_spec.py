"""The dataset spec: the churn example loads, and broken specs name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.spec import DatasetSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "examples" / "churn" / "spec.yaml"


def test_churn_spec_loads_and_keeps_pii_out_of_model_features() -> None:
    spec = DatasetSpec.from_yaml(CHURN)
    assert spec.positive == "yes"
    assert "email" in spec.pii_columns
    assert "email" not in spec.model_features
    assert spec.columns[0] == "customer_id" and spec.columns[-1] == "churn"
    assert len(spec.spec_hash()) == 16


def test_spec_hash_changes_with_content(tmp_path: Path) -> None:
    text = CHURN.read_text()
    changed = tmp_path / "spec.yaml"
    changed.write_text(text.replace("business_threshold: 0.35", "business_threshold: 0.4"))
    assert DatasetSpec.from_yaml(CHURN).spec_hash() != DatasetSpec.from_yaml(changed).spec_hash()


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace('classes: ["no", "yes"]', 'classes: ["no"]'), "classes"),
        (lambda t: t.replace('positive_class: "yes"', 'positive_class: "maybe"'), "positive_class"),
        (lambda t: t.replace("type: integer, min: 0, max: 120", "type: integer, min: 10, max: 1"), "min 10.0 > max"),
        (lambda t: t.replace("id_column: customer_id", "id_column: customer_id\nsurprise: 1"), "surprise"),
        (lambda t: t.replace("features:\n", "features:\n  - {name: x, type: categorical}\n"), "categories"),
    ],
)
def test_invalid_spec_names_file_and_field(tmp_path: Path, mutation, message: str) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(mutation(CHURN.read_text()))
    with pytest.raises(SpecError) as e:
        DatasetSpec.from_yaml(bad)
    assert str(bad) in str(e.value)
    assert message in str(e.value)


def test_unparseable_and_missing_spec(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        DatasetSpec.from_yaml(bad)
    with pytest.raises(SpecError, match="not found"):
        DatasetSpec.from_yaml(tmp_path / "nope.yaml")
