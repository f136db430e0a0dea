"""Row-level validation: every row lands valid or quarantined, with the reason that names the check."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from infra.demo.synth import COLUMNS, synth_batch
from lakeloop.spec import DatasetSpec, SpecError
from tasks.data.quarantine import quarantine_branch, quarantine_frame, quarantine_path
from tasks.data.validate import REASONS, ROW, SOURCE, SchemaError, validate

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"
SPEC = DatasetSpec.from_yaml(SPEC_PATH)

# What validation must say for each kind of row the generator breaks.
KIND_REASON = {
    "out_of_range": r"(below min|above max)",
    "unknown_category": r"not in categories",
    "null_required": r"is null \(not nullable\)",
    "rule_violation": r"rule (total_covers_monthly|no_internet_no_usage) failed",
    "duplicate_id": r"duplicate id C\d{8} within batch \(first at row \d+\)",
    "bad_label": r"(churn='[^']*' not in classes|churn is null)",
}


def _row(**overrides: Any) -> dict[str, Any]:
    """One clean churn row; tests change one field at a time."""
    row: dict[str, Any] = {
        "customer_id": "C00000001", "event_time": datetime(2026, 1, 1, tzinfo=UTC), "email": "a@example.com",
        "senior_citizen": False, "partner": True, "dependents": False, "tenure_months": 12,
        "contract": "one-year", "internet_service": "fiber", "payment_method": "credit-card",
        "paperless_billing": True, "monthly_charges": 80.0, "total_charges": 950.0, "support_calls": 1,
        "data_usage_gb": 100.0, "churn": "no",
    }
    row.update(overrides)
    return row


def _frame(*rows: dict[str, Any]) -> pl.DataFrame:
    base = synth_batch(1, seed=0).data  # the generator's schema = what a parquet batch carries
    return pl.DataFrame(list(rows), schema=base.schema)


def _reasons(df: pl.DataFrame, **kw: Any) -> list[str]:
    return validate(df, SPEC, **kw).invalid.get_column(REASONS).to_list()


@pytest.mark.parametrize("seed", range(6))
def test_clean_synthetic_batches_are_fully_valid(seed: int) -> None:
    b = synth_batch(3000, seed=seed, covariate_drift=seed / 3, concept_drift=seed / 6, label_noise=0.05)
    r = validate(b.data, SPEC, source=f"b{seed}.parquet")
    assert r.report.n_invalid == 0, r.invalid.select(REASONS).head(5)
    assert r.report.n_valid == 3000
    assert_frame_equal(r.valid, b.data)  # types already right: the valid frame is the input


def test_five_percent_invalid_lands_exactly_95_percent_with_the_right_reasons() -> None:
    b = synth_batch(4000, seed=42, invalid_rate=0.05, label_noise=0.1)
    r = validate(b.data, SPEC, source="lake/batch-0007.parquet")
    assert r.report.n_valid == 3800 and r.report.n_invalid == 200
    assert r.report.invalid_share == pytest.approx(0.05)
    truth = b.truth.filter("is_invalid").select("row", "invalid_kind")
    got = r.invalid.select(pl.col(ROW).alias("row"), REASONS).join(truth, on="row", how="full", coalesce=True)
    assert got.height == 200 and got.null_count().sum_horizontal().item() == 0  # same rows on both sides
    for kind, reasons in got.group_by("invalid_kind").agg(REASONS).iter_rows():
        for reason in reasons:
            assert re.search(KIND_REASON[kind], reason), (kind, reason)
    assert set(r.invalid.get_column(SOURCE).to_list()) == {"lake/batch-0007.parquet"}
    # The valid rows are exactly the clean rows, in order, untouched.
    clean_rows = b.truth.filter(~pl.col("is_invalid")).get_column("row")
    assert_frame_equal(r.valid, b.data[clean_rows.to_list()])


def test_no_row_is_ever_dropped_over_many_seeds_and_rates() -> None:
    for seed in range(25):
        n = 200 + 37 * seed
        rate = (seed % 5) / 10
        b = synth_batch(n, seed=seed, invalid_rate=rate, covariate_drift=(seed % 3) / 2)
        r = validate(b.data, SPEC)
        assert r.report.n_rows == n
        assert r.report.n_valid + r.report.n_invalid == n
        assert r.valid.height + r.invalid.height == n
        assert r.report.n_invalid == round(n * rate), seed
        assert sorted(r.invalid.get_column(ROW).to_list()) == b.truth.filter("is_invalid")["row"].to_list()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenure_months": -3}, "tenure_months=-3 below min 0"),
        ({"tenure_months": 121}, "tenure_months=121 above max 120"),
        ({"monthly_charges": 250.5, "total_charges": 5000.0}, "monthly_charges=250.5 above max 250"),
        ({"support_calls": 51}, "support_calls=51 above max 50"),
        ({"contract": "weekly"}, "contract='weekly' not in categories"),
        ({"internet_service": "Fiber"}, "internet_service='Fiber' not in categories"),
        ({"contract": None}, "contract is null (not nullable)"),
        ({"senior_citizen": None}, "senior_citizen is null (not nullable)"),
        ({"event_time": None}, "event_time is null (not nullable)"),
        ({"customer_id": None}, "customer_id is null (not nullable)"),
        ({"churn": "maybe"}, "churn='maybe' not in classes"),
        ({"churn": None}, "churn is null (not nullable)"),
        ({"total_charges": 10.0}, "rule total_covers_monthly failed"),
        ({"internet_service": "none", "data_usage_gb": 3.0}, "rule no_internet_no_usage failed"),
        ({"monthly_charges": math.nan}, "monthly_charges=NaN not finite"),
        ({"data_usage_gb": math.inf}, "data_usage_gb=inf not finite"),
    ],
)
def test_each_invalid_kind_gets_its_reason(overrides: dict[str, Any], reason: str) -> None:
    df = _frame(_row(customer_id="C1"), _row(**{"customer_id": "C2", **overrides}))
    r = validate(df, SPEC, source="s.parquet")
    assert r.invalid.get_column(ROW).to_list() == [1]
    assert r.invalid.get_column(REASONS).to_list() == [reason]
    assert r.valid.get_column("customer_id").to_list() == ["C1"]


def test_all_failing_checks_are_listed_and_counted() -> None:
    df = _frame(_row(), _row(customer_id="C9", tenure_months=-1, contract="weekly", churn="maybe"))
    r = validate(df, SPEC)
    assert r.invalid.get_column(REASONS).item() == (
        "tenure_months=-1 below min 0; contract='weekly' not in categories; churn='maybe' not in classes"
    )
    checks = r.report.checks
    assert checks["min:tenure_months"] == 1 and checks["category:contract"] == 1 and checks["class:churn"] == 1
    assert checks["max:tenure_months"] == 0  # every check is reported, zeros too
    assert sum(checks.values()) == 3


def test_typed_boundaries_are_inclusive() -> None:
    ok = [
        _row(customer_id="a", tenure_months=0, total_charges=0.0),
        _row(customer_id="b", tenure_months=120, monthly_charges=250.0, total_charges=40000.0),
        _row(customer_id="c", support_calls=0, data_usage_gb=0.0),
        _row(customer_id="d", support_calls=50, data_usage_gb=2000.0, monthly_charges=0.0),
        _row(customer_id="e", data_usage_gb=None, email=None),  # nullable columns
    ]
    bad = [
        _row(customer_id="f", tenure_months=-1),
        _row(customer_id="g", total_charges=40000.01),
        _row(customer_id="h", monthly_charges=-0.01),
        _row(customer_id="i", data_usage_gb=2000.1),
    ]
    r = validate(_frame(*ok, *bad), SPEC)
    assert r.valid.get_column("customer_id").to_list() == ["a", "b", "c", "d", "e"]
    assert r.invalid.get_column("customer_id").to_list() == ["f", "g", "h", "i"]


def test_null_rule_results_pass_but_nulls_in_required_columns_do_not() -> None:
    # No internet and unknown usage: the rule is NULL OR ... -> passes (usage is nullable).
    df = _frame(
        _row(customer_id="a", internet_service="none", data_usage_gb=None),
        _row(customer_id="b", tenure_months=None, total_charges=1.0),  # rule NULL: only the null is reported
    )
    r = validate(df, SPEC)
    assert r.valid.get_column("customer_id").to_list() == ["a"]
    assert r.invalid.get_column(REASONS).to_list() == ["tenure_months is null (not nullable)"]


def test_duplicates_keep_the_first_and_known_ids_are_refused() -> None:
    df = _frame(_row(customer_id="C1"), _row(customer_id="C2"), _row(customer_id="C1"), _row(customer_id="C1"),
                _row(customer_id="C3"))
    r = validate(df, SPEC, known_ids={"C3", "C77"})
    assert r.valid.get_column("customer_id").to_list() == ["C1", "C2"]
    assert r.invalid.select(ROW, REASONS).rows() == [
        (2, "duplicate id C1 within batch (first at row 0)"),
        (3, "duplicate id C1 within batch (first at row 0)"),
        (4, "id C3 already in lake"),
    ]
    assert r.report.checks["duplicate_id"] == 2 and r.report.checks["known_id"] == 1
    # known_ids may also come as a polars Series (e.g. read from the lake)
    r2 = validate(df, SPEC, known_ids=pl.Series(["C2"]))
    assert r2.invalid.select(ROW, REASONS).row(0) == (1, "id C2 already in lake")


def test_strings_are_parsed_per_row_like_a_csv(tmp_path: Path) -> None:
    b = synth_batch(2000, seed=4, invalid_rate=0.05)
    path = tmp_path / "batch.csv"
    b.data.write_csv(path)
    text = pl.read_csv(path, infer_schema=False)  # every column a string, as from an untyped CSV
    from_csv = validate(text, SPEC, source=str(path))
    from_parquet = validate(b.data, SPEC)
    assert from_csv.report.n_invalid == from_parquet.report.n_invalid == 100
    assert_frame_equal(from_csv.valid, from_parquet.valid)


def test_unparseable_values_quarantine_only_their_row() -> None:
    rows = [_row(customer_id=f"C{i}") for i in range(5)]
    df = pl.DataFrame(rows).with_columns(pl.all().cast(pl.String))
    df = df.with_columns(
        tenure_months=pl.Series(["12", "abc", "12.5", "12.0", " 7 "]),
        senior_citizen=pl.Series(["false", "true", "0", "maybe", "YES"]),
        event_time=pl.Series(["2026-01-01T00:00:00Z", "2026-01-01", "2026-01-01 10:00:00", "yesterday",
                              "2026-01-01T10:00:00+02:00"]),
        monthly_charges=pl.Series(["80", "80.0", "eighty", "80", "8e1"]),
    )
    r = validate(df, SPEC)
    assert r.valid.get_column("customer_id").to_list() == ["C0", "C4"]
    assert r.valid.get_column("tenure_months").to_list() == [12, 7]
    assert r.valid.get_column("senior_citizen").to_list() == [False, True]
    assert r.valid.get_column("event_time").to_list() == [datetime(2026, 1, 1, tzinfo=UTC),
                                                          datetime(2026, 1, 1, 8, tzinfo=UTC)]
    assert r.invalid.get_column(REASONS).to_list() == [
        "tenure_months='abc' not an integer",
        "tenure_months='12.5' not an integer; monthly_charges='eighty' not a number",
        "event_time='yesterday' not a timestamp; senior_citizen='maybe' not a boolean",
    ]
    assert r.report.checks["type:tenure_months"] == 2


def _with_null_tokens(tokens: dict[str, list[str]]) -> DatasetSpec:
    raw = SPEC.model_dump()
    for f in raw["features"]:
        f["null_tokens"] = tokens.get(f["name"], [])
    return DatasetSpec.model_validate(raw)


def test_blanks_in_text_input_are_not_numbers_unless_the_spec_says_they_are_nulls() -> None:
    rows = [_row(customer_id=f"C{i}") for i in range(4)]
    df = pl.DataFrame(rows).with_columns(pl.all().cast(pl.String)).with_columns(
        data_usage_gb=pl.Series(["100", " ", "", "NA"]),  # nullable
        monthly_charges=pl.Series(["80", "80", " ", "80"]),  # not nullable
    )
    plain = validate(df, SPEC)
    assert plain.invalid.get_column(REASONS).to_list() == [
        "data_usage_gb=' ' not a number",
        "monthly_charges=' ' not a number; data_usage_gb='' not a number",
        "data_usage_gb='NA' not a number",
    ]
    spec = _with_null_tokens({"data_usage_gb": ["", "na", " NA "], "monthly_charges": [""]})
    r = validate(df, spec)
    assert r.valid.get_column("customer_id").to_list() == ["C0", "C1", "C3"]  # tokens compare stripped, exact case
    assert r.valid.get_column("data_usage_gb").to_list() == [100.0, None, None]
    # a null token in a column that may not be null is a missing value, not a bad number
    assert r.invalid.get_column(REASONS).to_list() == ["monthly_charges is null (not nullable)"]
    assert r.invalid.row(0, named=True)["monthly_charges"] == " "  # the quarantine keeps the value as read


def test_null_tokens_leave_typed_input_alone() -> None:
    spec = _with_null_tokens({"support_calls": ["0"], "contract": ["one-year"]})
    r = validate(_frame(_row()), spec)  # typed (parquet-like) columns: tokens are about text input
    assert r.report.n_invalid == 1  # contract is text here too: 'one-year' is a null token, contract not nullable
    assert r.invalid.get_column(REASONS).to_list() == ["contract is null (not nullable)"]
    assert validate(_frame(_row(contract="two-year")), spec).valid.get_column("support_calls").to_list() == [1]


def test_invalid_rows_keep_original_values_as_strings_and_extra_columns() -> None:
    df = _frame(_row(), _row(customer_id="C2", tenure_months=-3)).with_columns(region=pl.Series(["n", "s"]))
    r = validate(df, SPEC, source="x.parquet")
    assert r.report.extra_columns == ["region"]
    assert "region" not in r.valid.columns and r.valid.columns == COLUMNS
    q = quarantine_frame(r)
    assert q.columns == [ROW, *df.columns, SOURCE, REASONS]
    assert all(dt == pl.String for name, dt in q.schema.items() if name != ROW)
    assert q.row(0, named=True)["tenure_months"] == "-3" and q.row(0, named=True)["region"] == "s"


def test_missing_column_raises_schema_error_naming_column_and_source() -> None:
    df = synth_batch(10, seed=0).data.drop("contract")
    with pytest.raises(SchemaError, match=r"lake/b\.parquet: missing required column\(s\) 'contract'") as e:
        validate(df, SPEC, source="lake/b.parquet")
    assert e.value.column == "contract" and e.value.source == "lake/b.parquet"


def test_uncastable_column_type_raises_schema_error() -> None:
    df = synth_batch(10, seed=0).data.with_columns(pl.col("tenure_months").cast(pl.Int64).implode().over(
        pl.col("customer_id")).alias("tenure_months"))
    with pytest.raises(SchemaError, match=r"b\.csv: column 'tenure_months' has type List"):
        validate(df, SPEC, source="b.csv")
    df2 = synth_batch(10, seed=0).data.with_columns(pl.col("event_time").dt.epoch("s").alias("event_time"))
    with pytest.raises(SchemaError, match="'event_time'"):
        validate(df2, SPEC, source="b.csv")


def test_a_rule_that_does_not_parse_is_a_spec_error() -> None:
    spec = SPEC.model_copy(update={"rules": [SPEC.rules[0].model_copy(update={"expr": "no_such_col > 1"})]})
    with pytest.raises(SpecError, match="rule 'total_covers_monthly'"):
        validate(synth_batch(5, seed=0).data, spec)


def test_empty_frame_validates_to_empty_frames() -> None:
    r = validate(synth_batch(0, seed=0).data, SPEC)
    assert (r.report.n_rows, r.report.n_valid, r.report.n_invalid, r.report.invalid_share) == (0, 0, 0, 0.0)
    assert r.valid.columns == COLUMNS


def test_quarantine_names() -> None:
    commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    want = "quarantine/a1b2c3d4e5f6/data/batch-0003.parquet.parquet"
    assert quarantine_path("data/batch-0003.parquet", commit) == want
    # issue 10: only the stem was kept, so two objects of one commit overwrote each other
    assert quarantine_path("data/a/x.parquet", commit) != quarantine_path("data/b/x.csv", commit)
    assert quarantine_path("data/a/x.parquet", commit) != quarantine_path("data/a/x.csv", commit)
    assert quarantine_branch(commit) == "quarantine-a1b2c3d4e5f6"
    assert re.fullmatch(r"\w[-\w]*", quarantine_branch(commit))  # a name lakeFS accepts
    with pytest.raises(ValueError):
        quarantine_path("x.parquet", "")


def test_time_parsing_mixes_fast_and_slow_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.data.validate as v

    monkeypatch.setattr(v, "TIME_CHUNK", 3)  # several chunks: some Arrow takes, some need the fallback
    values = ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", None,  # aware ISO: Arrow
              "2026-01-02", "2026-01-02 03:00:00", "2026-01-02T04:00:00",  # naive ISO: Arrow, as UTC
              "2026-01-03T00:00:00+00:00", "2026-01-03 10:00", "garbage",  # mixed: polars formats
              " 2026-01-04T00:00:00Z "]
    got = v.parse_times(pl.Series("t", values)).to_list()
    utc = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), None,
           datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, 3, tzinfo=UTC), datetime(2026, 1, 2, 4, tzinfo=UTC),
           datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 3, 10, tzinfo=UTC), None,
           datetime(2026, 1, 4, tzinfo=UTC)]
    assert got == utc


def test_other_input_dtypes_are_read_as_the_spec_says() -> None:
    base = _frame(_row(customer_id="1"), _row(customer_id="2"), _row(customer_id="3"))
    df = base.with_columns(
        customer_id=pl.Series([1, 2, 3], dtype=pl.UInt64),  # numeric ids become strings
        tenure_months=pl.Series([12.0, 12.5, 7.0]),  # integral floats are integers
        contract=pl.col("contract").cast(pl.Categorical),
        internet_service=pl.col("internet_service").cast(pl.Enum(["dsl", "fiber", "none"])),
        senior_citizen=pl.Series([0, 1, 2], dtype=pl.Int8),  # 0/1 are booleans, 2 is not
        data_usage_gb=pl.Series([None, None, None], dtype=pl.Null),  # an all-null nullable column
        event_time=pl.Series([datetime(2026, 1, 1, 3)] * 3),  # naive datetimes are UTC
    )
    r = validate(df, SPEC)
    assert r.valid.schema == synth_batch(1, seed=0).data.schema
    assert r.valid.get_column("customer_id").to_list() == ["1"]
    assert r.valid.get_column("event_time").to_list() == [datetime(2026, 1, 1, 3, tzinfo=UTC)]
    assert r.invalid.get_column(REASONS).to_list() == [
        "tenure_months='12.5' not an integer", "senior_citizen='2' not a boolean"]


def test_reserved_output_column_names_are_refused() -> None:
    df = synth_batch(3, seed=0).data.with_columns(_reasons=pl.lit("x"))
    with pytest.raises(SchemaError, match="reserved"):
        validate(df, SPEC, source="s")
