"""Synthetic customer-churn batches matching `examples/churn/spec.yaml`.

Why synthetic: the loop (validate -> drift -> retrain -> label review) needs
data whose ground truth is known, so tests and benches can check that drift is
detected, noisy labels are found and invalid rows are quarantined. Every batch
therefore comes with a `truth` frame (true label, true churn probability, which
rows were made noisy or invalid) that is kept aside and never enters the lake.

Churn follows a logistic model over contract, tenure, charges, support calls,
fiber, senior citizens and payment method (Bayes AUC ~0.85). Three knobs move
the data the way production data moves:

* `covariate_drift` (>= 0, ~1 = strong): more month-to-month contracts, fiber,
  electronic checks and seniors, shorter tenure, higher charges, more support calls.
* `concept_drift` (0..1): interpolates the label mechanism towards a different
  one (price and paperless billing matter, contract and support calls matter less).
* `label_noise` (0..1): exactly round(n * label_noise) clean rows get a flipped label.

`invalid_rate` (0..1) injects exactly round(n * invalid_rate) invalid rows,
cycling over the kinds in `InvalidKind`, so validation can be checked to the row.
Generation is vectorised numpy/polars and deterministic for a seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import polars as pl

ID_COLUMN = "customer_id"
LABEL_COLUMN = "churn"
TIME_COLUMN = "event_time"
ID_WIDTH = 8
# Column order of examples/churn/spec.yaml (`DatasetSpec.columns`); a test pins the two together.
COLUMNS = [
    ID_COLUMN, TIME_COLUMN, "email", "senior_citizen", "partner", "dependents", "tenure_months",
    "contract", "internet_service", "payment_method", "paperless_billing", "monthly_charges",
    "total_charges", "support_calls", "data_usage_gb", LABEL_COLUMN,
]
CONTRACTS = ["month-to-month", "one-year", "two-year"]
INTERNET = ["dsl", "fiber", "none"]
PAYMENTS = ["electronic-check", "mailed-check", "bank-transfer", "credit-card"]
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class InvalidKind(StrEnum):
    """The ways a synthetic row is made invalid (each breaks one spec check)."""

    out_of_range = "out_of_range"
    unknown_category = "unknown_category"
    null_required = "null_required"
    rule_violation = "rule_violation"
    duplicate_id = "duplicate_id"
    bad_label = "bad_label"


@dataclass(frozen=True)
class SynthBatch:
    """One batch: `data` is what lands in the lake, `truth` stays aside for evaluation.

    truth columns: customer_id, row (position in `data`), true_label, observed_label,
    is_noisy, is_invalid, invalid_kind (null for clean rows), churn_prob.
    """

    data: pl.DataFrame
    truth: pl.DataFrame


def customer_ids(start: int, n: int) -> pl.Series:
    """Ids `C00000123`-style; unique across batches when batches use disjoint `start` ranges."""
    digits = pl.int_range(start, start + n, eager=True, dtype=pl.Int64).cast(pl.String).str.zfill(ID_WIDTH)
    return ("C" + digits).alias(ID_COLUMN)


def _softmax_choice(rng: np.random.Generator, logits: np.ndarray, n: int) -> np.ndarray:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return rng.choice(len(p), size=n, p=p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _check_knobs(n: int, covariate_drift: float, concept_drift: float, label_noise: float,
                 invalid_rate: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if covariate_drift < 0:
        raise ValueError(f"covariate_drift must be >= 0, got {covariate_drift}")
    if not 0 <= concept_drift <= 1:
        raise ValueError(f"concept_drift must be in [0, 1], got {concept_drift}")
    if not 0 <= label_noise <= 1:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    if not 0 <= invalid_rate <= 1:
        raise ValueError(f"invalid_rate must be in [0, 1], got {invalid_rate}")
    if round(n * label_noise) + round(n * invalid_rate) > n:
        raise ValueError("label_noise + invalid_rate exceed the batch: noisy rows are drawn from valid rows")


def churn_logit(f: dict[str, np.ndarray], concept_drift: float = 0.0) -> np.ndarray:
    """Ground-truth log-odds of churn; `concept_drift` blends mechanism A into mechanism B."""
    m2m = (f["contract"] == 0).astype(float)
    two_year = (f["contract"] == 2).astype(float)
    fiber = (f["internet"] == 1).astype(float)
    echeck = (f["payment"] == 0).astype(float)
    tenure = f["tenure"].astype(float)
    monthly = f["monthly"]
    calls = f["calls"].astype(float)
    senior = f["senior"].astype(float)
    paperless = f["paperless"].astype(float)
    partner = f["partner"].astype(float)
    dependents = f["dependents"].astype(float)
    a = (
        -2.1 + 1.25 * m2m - 1.0 * two_year - 0.032 * tenure + 0.014 * (monthly - 65.0)
        + 0.42 * calls + 0.55 * fiber + 0.4 * senior + 0.5 * echeck
        - 0.2 * partner - 0.25 * dependents + 0.15 * paperless
    )
    if concept_drift == 0.0:
        return a
    b = (
        -2.4 + 0.4 * m2m - 0.3 * two_year - 0.01 * tenure + 0.04 * (monthly - 65.0)
        + 0.12 * calls - 0.3 * fiber - 0.2 * senior + 0.1 * echeck
        + 0.3 * partner + 0.0 * dependents + 1.1 * paperless
    )
    return (1.0 - concept_drift) * a + concept_drift * b


def synth_batch(
    n: int,
    *,
    seed: int,
    start_id: int = 0,
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    label_noise: float = 0.0,
    invalid_rate: float = 0.0,
    start_time: datetime | None = None,
) -> SynthBatch:
    """Generate `n` churn rows with the spec's columns; deterministic for (seed, knobs, start_id)."""
    _check_knobs(n, covariate_drift, concept_drift, label_noise, invalid_rate)
    rng = np.random.default_rng(seed)
    d = covariate_drift

    senior = rng.random(n) < _sigmoid(np.array(np.log(0.16 / 0.84) + 0.6 * d))
    partner = rng.random(n) < 0.48
    dependents = rng.random(n) < np.where(partner, 0.45, 0.12)
    contract = _softmax_choice(rng, np.log([0.52, 0.22, 0.26]) + np.array([0.9, 0.0, -0.4]) * d, n)
    internet = _softmax_choice(rng, np.log([0.35, 0.43, 0.22]) + np.array([0.0, 0.8, -0.3]) * d, n)
    payment = _softmax_choice(rng, np.log([0.34, 0.23, 0.22, 0.21]) + np.array([0.6, 0.0, 0.0, 0.0]) * d, n)
    paperless = rng.random(n) < np.where(payment == 1, 0.35, 0.65)

    tenure_mean = np.array([14.0, 34.0, 52.0])[contract] / (1.0 + 0.35 * d)
    tenure = np.clip(np.floor(rng.exponential(tenure_mean)), 0, 120).astype(np.int64)

    base_charge = np.array([55.0, 85.0, 22.0])[internet]
    monthly = base_charge + rng.normal(0, 1, n) * np.array([12.0, 15.0, 4.0])[internet] + 10.0 * dependents + 12.0 * d
    monthly = np.round(np.clip(monthly, 15.0, 250.0), 2)
    # Tenure 0 = first month, partly billed; otherwise ~tenure bills of roughly this month's price.
    first_month = rng.uniform(0.0, 1.0, n) * monthly
    total = np.where(tenure == 0, first_month, monthly * tenure * rng.uniform(0.9, 1.1, n))
    total = np.round(np.clip(total, 0.0, 40000.0), 2)

    calls_lambda = (0.9 + 0.9 * (internet == 1) + 0.3 * senior) * (1.0 + 0.6 * d)
    calls = np.clip(rng.poisson(calls_lambda), 0, 50).astype(np.int64)

    usage = rng.lognormal(np.log(np.where(internet == 1, 120.0, 40.0)), 0.8, n) * (1.0 + 0.5 * d)
    usage = np.round(np.clip(np.where(internet == 2, 0.0, usage), 0.0, 2000.0), 1)
    usage_missing = rng.random(n) < 0.04

    feats = {"contract": contract, "internet": internet, "payment": payment, "tenure": tenure,
             "monthly": monthly, "calls": calls, "senior": senior, "paperless": paperless,
             "partner": partner, "dependents": dependents}
    prob = _sigmoid(churn_logit(feats, concept_drift))
    true_yes = rng.random(n) < prob

    ids = customer_ids(start_id, n)
    email_missing = rng.random(n) < 0.03
    offsets_us = np.sort(rng.integers(0, 86_400_000_000, n))
    t0 = start_time or DEFAULT_START
    if t0.tzinfo is None:
        t0 = t0.replace(tzinfo=UTC)

    # ---- corruption: invalid rows first, then label noise among the rest --------------------
    n_invalid = round(n * invalid_rate)
    invalid_pos = np.sort(rng.choice(n, size=n_invalid, replace=False)) if n_invalid else np.empty(0, np.int64)
    kinds_list = list(InvalidKind)
    kind_idx = rng.permutation(np.arange(n_invalid) % len(kinds_list))
    is_invalid = np.zeros(n, dtype=bool)
    is_invalid[invalid_pos] = True
    clean_pos = np.flatnonzero(~is_invalid)
    n_noisy = round(n * label_noise)
    noisy_pos = rng.choice(clean_pos, size=n_noisy, replace=False) if n_noisy else np.empty(0, np.int64)
    is_noisy = np.zeros(n, dtype=bool)
    is_noisy[noisy_pos] = True
    observed_yes = true_yes ^ is_noisy

    yes_no = pl.Series(["no", "yes"])
    df = pl.DataFrame({
        ID_COLUMN: ids,
        TIME_COLUMN: pl.Series(offsets_us, dtype=pl.Int64).cast(pl.Duration("us")) + t0,
        "email": (ids.str.to_lowercase() + "@example.com").scatter(np.flatnonzero(email_missing), None),
        "senior_citizen": senior,
        "partner": partner,
        "dependents": dependents,
        "tenure_months": tenure,
        "contract": pl.Series(CONTRACTS).gather(contract),
        "internet_service": pl.Series(INTERNET).gather(internet),
        "payment_method": pl.Series(PAYMENTS).gather(payment),
        "paperless_billing": paperless,
        "monthly_charges": monthly,
        "total_charges": total,
        "support_calls": calls,
        "data_usage_gb": pl.Series(usage).scatter(np.flatnonzero(usage_missing), None),
        LABEL_COLUMN: yes_no.gather(observed_yes.astype(np.int64)),
    }).with_columns(pl.col(TIME_COLUMN).dt.cast_time_unit("us"))

    kinds = pl.repeat(None, n, dtype=pl.String, eager=True).alias("invalid_kind")
    if n_invalid:
        df, applied = _inject_invalid(df, rng, invalid_pos, kind_idx, is_invalid)
        kinds = kinds.scatter(invalid_pos, pl.Series(applied, dtype=pl.String))

    truth = pl.DataFrame({
        ID_COLUMN: df.get_column(ID_COLUMN),
        "row": np.arange(n, dtype=np.int64),
        "true_label": yes_no.gather(true_yes.astype(np.int64)),
        "observed_label": df.get_column(LABEL_COLUMN),
        "is_noisy": is_noisy,
        "is_invalid": is_invalid,
        "invalid_kind": kinds,
        "churn_prob": prob,
    })
    return SynthBatch(data=df.select(COLUMNS), truth=truth)


def _set(df: pl.DataFrame, col: str, pos: np.ndarray, values: object) -> pl.DataFrame:
    if len(pos) == 0:
        return df
    s = df.get_column(col)
    if isinstance(values, np.ndarray):  # object arrays (strings, None) go through a list
        values = pl.Series(values.tolist() if values.dtype == object else values, dtype=s.dtype)
    return df.with_columns(s.scatter(pos, values))  # type: ignore[arg-type]


def _inject_invalid(df: pl.DataFrame, rng: np.random.Generator, pos: np.ndarray, kind_idx: np.ndarray,
                    is_invalid: np.ndarray) -> tuple[pl.DataFrame, list[str]]:
    """Break each row at `pos` in the way its kind says; return the frame and the kinds applied."""
    all_kinds = list(InvalidKind)
    applied = [str(all_kinds[k]) for k in kind_idx]
    by_kind = {k: pos[kind_idx == i] for i, k in enumerate(all_kinds)}
    # A duplicate copies the id of an earlier clean row; a row with no clean row before it
    # (only possible near the top) is broken out-of-range instead, keeping the count exact.
    dup = by_kind[InvalidKind.duplicate_id]
    clean = np.flatnonzero(~is_invalid)
    n_before = np.searchsorted(clean, dup)
    has_src = n_before > 0
    fallback = dup[~has_src]
    dup = dup[has_src]
    if len(fallback):
        by_kind[InvalidKind.out_of_range] = np.sort(np.concatenate([by_kind[InvalidKind.out_of_range], fallback]))
        for p in fallback:
            applied[int(np.searchsorted(pos, p))] = str(InvalidKind.out_of_range)
    if len(dup):
        src = clean[(rng.random(len(dup)) * n_before[has_src]).astype(np.int64)]
        df = _set(df, ID_COLUMN, dup, df.get_column(ID_COLUMN).gather(src))

    oor = by_kind[InvalidKind.out_of_range]
    v = rng.integers(0, 5, len(oor))
    df = _set(df, "tenure_months", oor[v == 0], -rng.integers(1, 13, int((v == 0).sum())))
    df = _set(df, "monthly_charges", oor[v == 1], -np.round(rng.uniform(1, 50, int((v == 1).sum())), 2))
    df = _set(df, "support_calls", oor[v == 2], rng.integers(51, 100, int((v == 2).sum())))
    df = _set(df, "total_charges", oor[v == 3], np.round(rng.uniform(40001, 90000, int((v == 3).sum())), 2))
    df = _set(df, "data_usage_gb", oor[v == 4], np.round(rng.uniform(2001, 5000, int((v == 4).sum())), 1))

    unk = by_kind[InvalidKind.unknown_category]
    bad = {"contract": ["weekly", "Month-to-month", "3-year"], "internet_service": ["satellite", "Fiber", "5g"],
           "payment_method": ["crypto", "cash", "paypal"]}
    v = rng.integers(0, 3, len(unk))
    for i, (col, values) in enumerate(bad.items()):
        sel = unk[v == i]
        df = _set(df, col, sel, np.asarray(values, dtype=object)[rng.integers(0, 3, len(sel))])

    nul = by_kind[InvalidKind.null_required]
    null_cols = [ID_COLUMN, TIME_COLUMN, "senior_citizen", "tenure_months", "contract", "monthly_charges",
                 "total_charges", "support_calls"]
    v = rng.integers(0, len(null_cols), len(nul))
    for i, col in enumerate(null_cols):
        df = _set(df, col, nul[v == i], None)

    rule = by_kind[InvalidKind.rule_violation]
    v = rng.integers(0, 2, len(rule))
    billed = rule[v == 0]  # billed far less than a month although past the first month
    if len(billed):
        tenure = np.maximum(df.get_column("tenure_months").gather(billed).to_numpy(), 1)
        monthly = df.get_column("monthly_charges").gather(billed).to_numpy()
        df = _set(df, "tenure_months", billed, tenure)
        df = _set(df, "total_charges", billed, np.round(monthly * 0.2, 2))
    offline = rule[v == 1]  # no internet but data used
    df = _set(df, "internet_service", offline, np.asarray(["none"] * len(offline), dtype=object))
    df = _set(df, "data_usage_gb", offline, np.round(rng.uniform(1, 50, len(offline)), 1))

    lab = by_kind[InvalidKind.bad_label]
    choices = np.asarray(["maybe", None, "YES", "churned"], dtype=object)
    df = _set(df, LABEL_COLUMN, lab, choices[rng.integers(0, len(choices), len(lab))])
    return df, applied


def write_batches(
    out_dir: str | Path,
    *,
    n: int,
    batches: int = 1,
    seed: int = 0,
    start_id: int = 0,
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    label_noise: float = 0.0,
    invalid_rate: float = 0.0,
    start_time: datetime | None = None,
    prefix: str = "batch",
) -> list[Path]:
    """Write `batches` parquet files `<prefix>-0000.parquet`... and the truth beside them.

    The truth (`_<prefix>-truth.parquet`) and knobs (`_<prefix>-knobs.json`) start with `_`
    so dataset readers and `*-0*.parquet` globs skip them: truth must never reach the lake.

    Batch k uses seed `seed + k`, ids from `start_id + k*n` and a start time k days later,
    so batches are disjoint and ordered. The truth has the truth columns plus `source`
    (the batch file name). Returns the batch paths (not the truth path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = start_time or DEFAULT_START
    paths: list[Path] = []
    truths: list[pl.DataFrame] = []
    for k in range(batches):
        b = synth_batch(
            n, seed=seed + k, start_id=start_id + k * n, covariate_drift=covariate_drift,
            concept_drift=concept_drift, label_noise=label_noise, invalid_rate=invalid_rate,
            start_time=t0 + timedelta(days=k),
        )
        path = out / f"{prefix}-{k:04d}.parquet"
        b.data.write_parquet(path)
        paths.append(path)
        truths.append(b.truth.with_columns(source=pl.lit(path.name)))
    if truths:
        pl.concat(truths).write_parquet(out / truth_name(prefix))
    (out / f"_{prefix}-knobs.json").write_text(json.dumps({
        "n": n, "batches": batches, "seed": seed, "start_id": start_id,
        "covariate_drift": covariate_drift, "concept_drift": concept_drift,
        "label_noise": label_noise, "invalid_rate": invalid_rate,
    }, indent=2))
    return paths


def truth_name(prefix: str = "batch") -> str:
    """File name of the truth parquet `write_batches` writes beside its batches."""
    return f"_{prefix}-truth.parquet"

