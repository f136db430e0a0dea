"""Draft a DatasetSpec from a sample frame: the starting point a person reviews, not a verdict.

Why a draft: types, categories and ranges can be read off data, but which columns are
PII, which is the label and how wide a range may grow are decisions. So the draft
validates the sample it came from (0 quarantined rows), widens ranges by a margin so the
next batch is not quarantined for a new maximum, and every guess a person must confirm is
listed in `InferredSpec.review` (rendered as YAML comments by `render_yaml`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import yaml

from lakeloop.spec import DatasetSpec, Feature, FeatureType
from tasks.data.validate import FALSE_WORDS, TRUE_WORDS, parse_times

MAX_CATEGORIES = 50
RANGE_MARGIN = 0.1
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|key$)", re.I)
_LABEL_NAMES = ("label", "target", "class", "y", "outcome", "churn", "is_fraud", "default")
_TIME_NAME = re.compile(r"(time|date|timestamp|_at$|^ts$)", re.I)
_PII_NAME = re.compile(
    r"(e[-_]?mail|phone|mobile|cell|fax|first_?name|last_?name|surname|full_?name|^name$|_name$|address|"
    r"street|zip|postcode|postal|ssn|social_security|passport|birth|dob|ip_?addr|iban|credit_?card|card_?number)",
    re.I,
)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE = r"^\+?[\d\s().-]{7,}\d$"


@dataclass(frozen=True)
class InferredSpec:
    """The drafted spec and, per column, why a person should look at it."""

    spec: DatasetSpec
    review: dict[str, list[str]] = field(default_factory=dict)


def _note(review: dict[str, list[str]], column: str, text: str) -> None:
    review.setdefault(column, []).append(text)


def _pii_reason(name: str, s: pl.Series) -> str | None:
    if _PII_NAME.search(name):
        return f"PII candidate: name matches {_PII_NAME.search(name).group(0)!r}"  # type: ignore[union-attr]
    if s.dtype == pl.String:
        text = s.drop_nulls().str.strip_chars()
        if text.len() == 0:
            return None
        for label, pattern in (("e-mail", _EMAIL), ("phone number", _PHONE)):
            share = float(text.str.contains(pattern).cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
            if share >= 0.8:
                return f"PII candidate: {share:.0%} of values look like an {label}"
    return None


def _bool_words(s: pl.Series) -> bool:
    vals = set(s.drop_nulls().cast(pl.String).str.strip_chars().str.to_lowercase().unique().to_list())
    return bool(vals) and vals <= set(TRUE_WORDS + FALSE_WORDS) and len(vals) <= 2 and not vals <= {"0", "1"}


def _numeric_view(s: pl.Series) -> pl.Series | None:
    """The column as numbers if every present value is one (CSV text included), else None."""
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if s.dtype != pl.String:
        return None
    present = s.drop_nulls().str.strip_chars()
    nums = present.cast(pl.Float64, strict=False)
    return s.str.strip_chars().cast(pl.Float64, strict=False) if nums.null_count() == 0 and present.len() else None


def _margin_range(values: pl.Series, integer: bool) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())  # type: ignore[arg-type]
    pad = (hi - lo) * RANGE_MARGIN or abs(hi) * RANGE_MARGIN or 1.0
    new_lo = max(0.0, lo - pad) if lo >= 0 else lo - pad  # a non-negative quantity stays non-negative
    new_hi = hi + pad
    if integer:
        return float(math.floor(new_lo)), float(math.ceil(new_hi))
    return _round_out(new_lo, down=True), _round_out(new_hi, down=False)


def _round_out(v: float, *, down: bool) -> float:
    """Round to 2 significant digits away from the data, so the YAML reads well and still covers it."""
    if v == 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(v))) - 1)
    return round(float((math.floor if down else math.ceil)(v / step) * step), 12)


def _is_time(name: str, s: pl.Series) -> bool:
    if isinstance(s.dtype, pl.Datetime) or s.dtype == pl.Date:
        return True
    if s.dtype == pl.String and _TIME_NAME.search(name):
        present = s.drop_nulls()
        return present.len() > 0 and s.null_count() == 0 and parse_times(present).null_count() == 0
    return False


def _guess_id(df: pl.DataFrame) -> str:
    candidates = [c for c in df.columns if df[c].null_count() == 0 and df[c].n_unique() == df.height
                  and (df[c].dtype == pl.String or df[c].dtype.is_integer())]
    named = [c for c in candidates if _ID_NAME.search(c)]
    if named:
        return named[0]
    if candidates:
        return candidates[0]
    raise ValueError("no column is unique and non-null: add an id column before drafting a spec")


def _guess_label(df: pl.DataFrame, exclude: set[str]) -> str:
    cols = [c for c in df.columns if c not in exclude and df[c].null_count() == 0 and 2 <= df[c].n_unique() <= 20]
    for want in _LABEL_NAMES:
        for c in cols:
            if c.lower() == want:
                return c
    if cols and cols[-1] == df.columns[-1]:
        return cols[-1]
    if cols:
        return cols[-1]
    raise ValueError("no column looks like a label (non-null, 2..20 distinct values): pass --label")


def infer_spec(df: pl.DataFrame, name: str, *, id_column: str | None = None, label_column: str | None = None,
               file_format: str = "parquet") -> InferredSpec:
    """Draft a spec under which every row of `df` is valid; see the module doc for what is guessed."""
    if df.height == 0:
        raise ValueError("cannot draft a spec from an empty frame")
    review: dict[str, list[str]] = {}
    idc = id_column or _guess_id(df)
    if id_column is None:
        _note(review, idc, "guessed id column (unique, non-null)")
    time_col = next((c for c in df.columns if c != idc and _is_time(c, df[c])), None)
    label = label_column or _guess_label(df, {idc} | ({time_col} if time_col else set()))
    if label_column is None:
        _note(review, label, "guessed label column")
    classes = sorted(df[label].cast(pl.String).unique().to_list())

    features: list[Feature] = []
    for col in df.columns:
        if col in (idc, label, time_col):
            continue
        features.append(_infer_feature(col, df[col], review))
    spec = DatasetSpec(
        name=name, description=f"Drafted by `lakeloop spec infer` from {df.height} rows; review before use.",
        id_column=idc, label_column=label, classes=classes, time_column=time_col, features=features,
        business_threshold=0.5, file_format=file_format,  # type: ignore[arg-type]
    )
    return InferredSpec(spec=spec, review=review)


def _infer_feature(col: str, s: pl.Series, review: dict[str, list[str]]) -> Feature:
    nullable = s.null_count() > 0 or (s.dtype.is_float() and bool(s.is_nan().any()))
    pii_reason = _pii_reason(col, s)
    base: dict[str, Any] = {"name": col, "nullable": nullable}
    if pii_reason:
        _note(review, col, pii_reason)
        # PII is kept as free text: validated for presence only, never a model input.
        return Feature(type=FeatureType.string, pii=True, **base)
    if s.dtype.is_float() and bool(s.is_nan().any()):
        _note(review, col, "has NaN values: read as nulls would be quarantined as 'not finite'; clean upstream")
    if s.dtype == pl.Boolean or (s.dtype == pl.String and _bool_words(s)):
        return Feature(type=FeatureType.boolean, **base)
    nums = _numeric_view(s)
    if nums is not None and nums.drop_nulls().len():
        present = nums.drop_nulls().drop_nans()
        integer = s.dtype.is_integer() or bool((present == present.round(0)).all() and not s.dtype.is_float())
        lo, hi = _margin_range(present, integer) if present.len() else (None, None)
        if lo is not None:
            _note(review, col, f"range widened by {RANGE_MARGIN:.0%} of the observed "
                               f"[{_fmt(present.min())}, {_fmt(present.max())}]")
        return Feature(type=FeatureType.integer if integer else FeatureType.numeric, min=lo, max=hi, **base)
    text = s.cast(pl.String)
    distinct = text.drop_nulls().unique()
    if distinct.len() <= MAX_CATEGORIES and distinct.len() <= max(2, s.len() // 5):
        return Feature(type=FeatureType.categorical, categories=sorted(distinct.to_list()), **base)
    _note(review, col, "free text (too many distinct values for a category): never a model input")
    return Feature(type=FeatureType.string, **base)


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def render_yaml(inferred: InferredSpec) -> str:
    """The spec as YAML, one feature per line, with `# REVIEW:` comments a person must clear."""
    spec = inferred.spec
    data = spec.model_dump(mode="json", exclude_defaults=True)
    features = data.pop("features")
    head_keys = ["name", "description", "id_column", "label_column", "classes", "time_column", "file_format"]
    lines = ["# Drafted by `lakeloop spec infer`. Check every '# REVIEW:' line, then delete the comment."]
    for key in head_keys:
        if key in data:
            for note in inferred.review.get(str(data[key]), []) if key in ("id_column", "label_column") else []:
                lines.append(f"# REVIEW: {note}")
            lines.append(f"{key}: {json.dumps(data.pop(key))}")  # JSON is YAML, and keeps lists on one line
    if data:
        lines.append(yaml.safe_dump(data, default_flow_style=False, width=10_000).rstrip())
    lines += ["", "features:"]
    for f in features:
        for note in inferred.review.get(f["name"], []):
            lines.append(f"  # REVIEW: {note}")
        f = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in f.items()}
        flow = yaml.safe_dump(f, default_flow_style=True, width=10_000, sort_keys=False).strip()
        lines.append(f"  - {flow}")
    lines += ["", "rules: []   # cross-field rules cannot be inferred: add them", ""]
    return "\n".join(lines)


def read_sample(path: str) -> pl.DataFrame:
    """A CSV (types inferred from the whole file) or a parquet file."""
    if path.endswith(".csv"):
        return pl.read_csv(path, infer_schema_length=None)
    return pl.read_parquet(path)
