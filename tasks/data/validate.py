"""Validate one batch against the dataset spec: split it into valid rows and quarantined rows.

Why row-level: one bad row must not block a whole commit, and none may vanish.
Every input row ends up in exactly one of `valid` (typed, spec columns only) or
`invalid` (original values as strings plus `_row`, `_source` and every failing
check in `_reasons`), so n_valid + n_invalid == n_rows always. Only problems that
make the whole object unusable (a spec column missing, a column whose type can
never hold the declared values) raise `SchemaError`.

Decisions worth knowing:

* Rules (`spec.rules[].expr`, SQL via `pl.sql_expr`) fail only on FALSE. A NULL
  result passes, as in an SQL CHECK constraint: the nulls that cause it are either
  permitted by the spec (nullable column) or already reported by the null check, so
  the row is quarantined anyway and the reason is not reported twice. For the same
  reason rules see NaN/inf as NULL.
* Duplicate ids within a batch: the first occurrence keeps the id (it is valid if
  nothing else is wrong with it), later copies are quarantined, naming the first row.
* Ids in `known_ids` (already in the lake) are quarantined.
* Extra columns are allowed, listed in the report, dropped from `valid` and kept in `invalid`.
* Strings are parsed per row (CSV-friendly): "3" is an integer, "abc" quarantines the row;
  integral floats are integers; booleans accept true/false/1/0/yes/no/t/f/y/n. A feature's
  `null_tokens` (say "" for blanks, "NA") are nulls in text input, so `nullable` decides.
* The time column is required (non-null) and parsed to UTC microseconds; naive values are UTC.

Vectorised with polars: masks for every check in one pass, reason strings only
for the failing rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakeloop.spec import DatasetSpec, SpecError

ROW = "_row"
SOURCE = "_source"
REASONS = "_reasons"
REASON_SEP = "; "
_MASK = "__m:"
_ORIG = "__o:"
_ANY = "__any"

TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
TRUE_WORDS = ["true", "t", "1", "yes", "y"]
FALSE_WORDS = ["false", "f", "0", "no", "n"]
TIME_DTYPE = pl.Datetime("us", "UTC")
TIME_CHUNK = 65_536
_PARSED = "__p:"


class SchemaError(ValueError):
    """The whole object cannot be validated row by row; names the source and column."""

    def __init__(self, message: str, *, source: str, column: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.column = column

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # the keyword-only fields are not in `args`: without this, unpickling (Prefect's stored result) fails
        return partial(type(self), source=self.source, column=self.column), (str(self),)


@dataclass(frozen=True)
class ValidationReport:
    """Counts for one validated object; `checks` maps check name -> failing rows (zeros kept)."""

    source: str
    n_rows: int
    n_valid: int
    n_invalid: int
    invalid_share: float
    checks: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "n_rows": self.n_rows, "n_valid": self.n_valid,
            "n_invalid": self.n_invalid, "invalid_share": self.invalid_share,
            "checks": dict(self.checks), "extra_columns": list(self.extra_columns),
        }


@dataclass(frozen=True)
class ValidationResult:
    """`valid`: spec columns, typed. `invalid`: original values as strings + _row, _source, _reasons."""

    valid: pl.DataFrame
    invalid: pl.DataFrame
    report: ValidationReport


# ---- typing each column ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Typed:
    expr: pl.Expr  # typed value, aliased to the column name
    parsed: bool  # read per row from text/floats: a present value may fail to parse (a type failure)
    expected: str  # words for the reason: "not <expected>"


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _kind(spec: DatasetSpec, name: str) -> str:
    if name == spec.id_column:
        return "id"
    if name == spec.label_column:
        return "label"
    if name == spec.time_column:
        return "time"
    return str(spec.feature(name).type)


def _is_texty(dt: pl.DataType) -> bool:
    return dt == pl.String or isinstance(dt, pl.Categorical | pl.Enum)


def _null_tokens(spec: DatasetSpec, name: str) -> list[str]:
    return [t.strip() for t in spec.feature(name).null_tokens] if name in spec.feature_names else []


def _as_read(name: str, dtype: pl.DataType, null_tokens: list[str]) -> pl.Expr:
    """The column as text, with the spec's null tokens (compared stripped) as null: what `orig` reasons show."""
    c = pl.col(name).cast(pl.String)
    if null_tokens and _is_texty(dtype):
        return pl.when(c.str.strip_chars().is_in(null_tokens)).then(None).otherwise(c)
    return c


def _typed(name: str, kind: str, dtype: pl.DataType, source: str, null_tokens: list[str] | None = None) -> _Typed:
    """How to read column `name` of `dtype` as `kind`, or SchemaError if it never can be."""
    c = pl.col(name)
    if dtype == pl.Null:
        targets: dict[str, pl.DataType] = {"numeric": pl.Float64(), "integer": pl.Int64(),
                                           "boolean": pl.Boolean(), "time": TIME_DTYPE}
        target = targets.get(kind, pl.String())
        return _Typed(pl.lit(None, dtype=target).alias(name), False, "")
    if _is_texty(dtype):
        c = c.cast(pl.String).str.strip_chars()
        if null_tokens:
            c = pl.when(c.is_in(null_tokens)).then(None).otherwise(c)

    if kind == "numeric":
        if dtype.is_numeric():
            return _Typed(c.cast(pl.Float64).alias(name), False, "a number")
        if _is_texty(dtype):
            return _Typed(c.cast(pl.Float64, strict=False).alias(name), True, "a number")
    elif kind == "integer":
        if dtype.is_integer():  # only UInt64 beyond Int64 can fail
            return _Typed(c.cast(pl.Int64, strict=False).alias(name), dtype == pl.UInt64, "an integer")
        if dtype.is_float() or _is_texty(dtype):
            f = c.cast(pl.Float64, strict=False)
            ok = f.is_finite() & (f == f.round(0)) & (f.abs() < 2.0**62)
            v = pl.when(ok).then(f).otherwise(None).cast(pl.Int64)
            return _Typed(v.alias(name), True, "an integer")
    elif kind == "boolean":
        if dtype == pl.Boolean:
            return _Typed(c.alias(name), False, "a boolean")
        if dtype.is_integer() or _is_texty(dtype):
            s = c.cast(pl.String).str.to_lowercase()
            v = pl.when(s.is_in(TRUE_WORDS)).then(True).when(s.is_in(FALSE_WORDS)).then(False)
            v = v.otherwise(None).cast(pl.Boolean)
            return _Typed(v.alias(name), True, "a boolean")
    elif kind in ("categorical", "label", "id"):
        if _is_texty(dtype) or dtype.is_integer() or (kind == "label" and dtype == pl.Boolean):
            return _Typed(c.cast(pl.String).alias(name), False, "")
    elif kind == "string":
        if not dtype.is_nested() and dtype != pl.Object:
            return _Typed(c.cast(pl.String).alias(name), False, "")
    elif kind == "time":
        if isinstance(dtype, pl.Datetime):
            v = c.dt.convert_time_zone("UTC") if dtype.time_zone else c.dt.replace_time_zone("UTC")
            return _Typed(v.dt.cast_time_unit("us").alias(name), False, "a timestamp")
        if dtype == pl.Date:
            return _Typed(c.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name), False, "")
        if _is_texty(dtype):  # parsed eagerly by `parse_times` into a helper column (see `validate`)
            return _Typed(pl.col(_PARSED + name).alias(name), True, "a timestamp")
    raise SchemaError(
        f"{source or '<frame>'}: column {name!r} has type {dtype}, which cannot hold {kind} values",
        source=source, column=name,
    )


def parse_times(values: pl.Series) -> pl.Series:
    """Text -> Datetime(us, UTC), null where unparseable; offsets are converted, naive values are UTC.

    Why not one polars expression: polars' strptime with a few formats costs seconds per
    million rows, Arrow's ISO-8601 cast a fraction of that but fails a whole array on one
    bad value. So Arrow per chunk, and the polars formats only for chunks Arrow refuses.
    """
    text = values.cast(pl.String).str.strip_chars()
    parts = [_parse_chunk(text.slice(off, TIME_CHUNK)) for off in range(0, len(text), TIME_CHUNK)]
    return pl.concat(parts) if parts else pl.Series(values.name, [], dtype=TIME_DTYPE)


def _parse_chunk(text: pl.Series) -> pl.Series:
    arr = text.to_arrow()
    for target, aware in ((pa.timestamp("us", tz="UTC"), True), (pa.timestamp("us"), False)):
        try:
            out = pl.Series(text.name, pc.cast(arr, target, safe=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return out if aware else out.dt.replace_time_zone("UTC")
    s = pl.col(text.name).str.replace(r"(?i)z$", "+00:00")
    formats = [s.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC") for fmt in TIME_FORMATS]
    return text.to_frame().select(pl.coalesce(formats).alias(text.name)).to_series()


# ---- checks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Check:
    name: str  # report key, e.g. "min:tenure_months"
    mask: pl.Expr  # True = row fails
    reason: pl.Expr  # reason text, evaluated on failing rows only


def _s(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String)


def _fmt(template: str, *values: pl.Expr) -> pl.Expr:
    """`pl.format` via `concat_str`: polars 2.1's `format` panics on some multi-chunk frames."""
    pieces = template.split("{}")
    if len(pieces) != len(values) + 1:
        raise ValueError(f"template {template!r} needs {len(pieces) - 1} values, got {len(values)}")
    parts: list[pl.Expr] = [pl.lit(pieces[0])]
    for value, piece in zip(values, pieces[1:], strict=True):
        parts += [value.cast(pl.String), pl.lit(piece)]
    return pl.concat_str(parts)


def _checks(spec: DatasetSpec, typed: dict[str, _Typed], known: pl.Series | None) -> list[_Check]:
    out: list[_Check] = []
    for name in spec.columns:
        kind = _kind(spec, name)
        t = typed[name]
        col = pl.col(name)
        orig = pl.col(_ORIG + name)
        if t.parsed:
            out.append(_Check(f"type:{name}", orig.is_not_null() & col.is_null(),
                              _fmt(f"{name}='{{}}' not {t.expected}", orig)))
        nullable = kind in ("numeric", "integer", "boolean", "categorical", "string") and spec.feature(name).nullable
        if not nullable:
            missing = col.is_null() & orig.is_null() if t.parsed else col.is_null()
            out.append(_Check(f"null:{name}", missing, pl.lit(f"{name} is null (not nullable)")))
        if kind in ("numeric", "integer"):
            f = spec.feature(name)
            if kind == "numeric":
                out.append(_Check(f"finite:{name}", ~col.is_finite().fill_null(True),
                                  _fmt(f"{name}={{}} not finite", orig)))
            if f.min is not None:
                out.append(_Check(f"min:{name}", (col < f.min).fill_null(False),
                                  _fmt(f"{name}={{}} below min {_num(f.min)}", _s(name))))
            if f.max is not None:
                too_big = (col > f.max) & col.cast(pl.Float64).is_finite()
                out.append(_Check(f"max:{name}", too_big.fill_null(False),
                                  _fmt(f"{name}={{}} above max {_num(f.max)}", _s(name))))
        elif kind == "categorical":
            cats = spec.feature(name).categories or []
            out.append(_Check(f"category:{name}", (~col.is_in(cats)).fill_null(False),
                              _fmt(f"{name}='{{}}' not in categories", col)))
        elif kind == "label":
            out.append(_Check(f"class:{name}", (~col.is_in(list(spec.classes))).fill_null(False),
                              _fmt(f"{name}='{{}}' not in classes", col)))
    for rule in spec.rules:
        out.append(_Check(f"rule:{rule.name}", (~pl.sql_expr(rule.expr)).fill_null(False),
                          pl.lit(f"rule {rule.name} failed")))
    idc = pl.col(spec.id_column)
    out.append(_Check("duplicate_id", idc.is_not_null() & ~idc.is_first_distinct(),
                      _fmt("duplicate id {} within batch (first at row {})", idc, pl.col("__first_row"))))
    if known is not None:
        out.append(_Check("known_id", idc.is_in(known.implode()).fill_null(False),
                          _fmt("id {} already in lake", idc)))
    return out


def _check_rules(spec: DatasetSpec, schema: dict[str, pl.DataType]) -> None:
    """Fail fast (SpecError) on a rule that does not parse or is not boolean."""
    empty = pl.DataFrame(schema=schema)
    for rule in spec.rules:
        try:
            dtype = empty.select(pl.sql_expr(rule.expr).alias("r")).schema["r"]
        except Exception as e:  # polars raises several error types for bad SQL
            raise SpecError(f"spec {spec.name!r}: rule {rule.name!r} ({rule.expr!r}) cannot be evaluated: {e}") from e
        if dtype not in (pl.Boolean, pl.Null):
            raise SpecError(f"spec {spec.name!r}: rule {rule.name!r} ({rule.expr!r}) is {dtype}, not boolean")


def _to_strings(df: pl.DataFrame) -> pl.DataFrame:
    exprs = []
    for name, dtype in df.schema.items():
        c = pl.col(name)
        exprs.append((pl.struct(c).struct.json_encode() if dtype.is_nested() else c.cast(pl.String)).alias(name))
    return df.select(exprs)


def validate(
    df: pl.DataFrame,
    spec: DatasetSpec,
    *,
    source: str = "",
    known_ids: Collection[str] | pl.Series | None = None,
) -> ValidationResult:
    """Split `df` into typed valid rows and quarantined rows with reasons; see the module doc."""
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{source or '<frame>'}: missing required column(s) {', '.join(repr(c) for c in missing)}",
            source=source, column=missing[0],
        )
    extra = [c for c in df.columns if c not in spec.columns]
    reserved = (_MASK, _ORIG, _PARSED, _ANY, "__first")
    clash = [c for c in extra if c in (ROW, SOURCE, REASONS) or c.startswith(reserved)]
    if clash:
        raise SchemaError(f"{source or '<frame>'}: column name(s) {clash} are reserved for validation output",
                          source=source, column=clash[0])
    tokens = {name: _null_tokens(spec, name) for name in spec.columns}
    typed = {name: _typed(name, _kind(spec, name), df.schema[name], source, tokens[name]) for name in spec.columns}
    known: pl.Series | None = None
    if known_ids is not None:
        known = known_ids.cast(pl.String) if isinstance(known_ids, pl.Series) else pl.Series(list(known_ids),
                                                                                             dtype=pl.String)

    exprs = [pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW), *(t.expr for t in typed.values())]
    exprs += [_as_read(n, df.schema[n], tokens[n]).alias(_ORIG + n) for n, t in typed.items() if t.parsed]
    # Numeric columns keep their value as read: rules see NaN/inf as NULL (below), reasons the original.
    exprs += [t.expr.alias(_ORIG + n) for n, t in typed.items() if not t.parsed and _kind(spec, n) == "numeric"]
    src = df
    if spec.time_column and _is_texty(df.schema[spec.time_column]):
        src = df.with_columns(parse_times(df.get_column(spec.time_column)).alias(_PARSED + spec.time_column))
    work = src.lazy().select(exprs)
    _check_rules(spec, {n: dt for n, dt in work.collect_schema().items() if n in typed})
    checks = _checks(spec, typed, known)
    # Column checks see the values as read; rules then see NaN/inf as NULL (already reported
    # by the finite check, so a rule does not fail a second time on them).
    col_checks = [ch for ch in checks if not ch.name.startswith("rule:")]
    rule_checks = [ch for ch in checks if ch.name.startswith("rule:")]
    floats = [n for n, dt in work.collect_schema().items() if n in typed and dt == pl.Float64]
    work_df = (
        work.with_columns([ch.mask.alias(_MASK + ch.name) for ch in col_checks])
        .with_columns([pl.when(pl.col(n).is_finite()).then(pl.col(n)).alias(n) for n in floats])
        .with_columns([ch.mask.alias(_MASK + ch.name) for ch in rule_checks])
        .with_columns(pl.any_horizontal([pl.col(_MASK + ch.name) for ch in checks]).alias(_ANY))
        .collect()
    )

    counts_row = work_df.select([pl.col(_MASK + ch.name).sum().alias(ch.name) for ch in checks]).row(0)
    counts = {ch.name: int(v or 0) for ch, v in zip(checks, counts_row, strict=True)}
    bad = work_df.get_column(_ANY)
    valid = work_df.lazy().filter(~pl.col(_ANY)).select(spec.columns).collect()

    failing = work_df.filter(bad)
    # Name the first row of each duplicated id (looked up only for the duplicates).
    idc = pl.col(spec.id_column)
    dup_ids = failing.filter(pl.col(_MASK + "duplicate_id")).get_column(spec.id_column).unique()
    firsts = (
        work_df.lazy().select(idc, pl.col(ROW)).filter(idc.is_in(dup_ids.implode()))
        .group_by(spec.id_column).agg(pl.col(ROW).min().alias("__first_row")).collect()
    )
    failing = failing.join(firsts, on=spec.id_column, how="left", maintain_order="left")
    reasons = failing.select(
        pl.col(ROW),
        pl.concat_str(
            [pl.when(pl.col(_MASK + ch.name)).then(ch.reason) for ch in checks],
            separator=REASON_SEP, ignore_nulls=True,
        ).alias(REASONS),
    )
    originals = _to_strings(df.filter(bad))
    invalid = pl.concat(
        [reasons.select(ROW), originals,
         pl.DataFrame({SOURCE: pl.Series([source] * failing.height, dtype=pl.String)}),
         reasons.select(REASONS)],
        how="horizontal",
    )
    n = df.height
    report = ValidationReport(
        source=source, n_rows=n, n_valid=valid.height, n_invalid=invalid.height,
        invalid_share=invalid.height / n if n else 0.0, checks=counts, extra_columns=extra,
    )
    if report.n_valid + report.n_invalid != n:  # the promise of this module; never silently drop
        raise AssertionError(f"{source}: {n} rows in, {report.n_valid} valid + {report.n_invalid} invalid out")
    return ValidationResult(valid=valid, invalid=invalid, report=report)


def typed_ids(df: pl.DataFrame, spec: DatasetSpec, *, source: str = "") -> pl.Series:
    """The id of every row as validation reads it (text, stripped): what `known_ids` are compared with."""
    t = _typed(spec.id_column, "id", df.schema[spec.id_column], source)
    return df.select(t.expr).to_series()
