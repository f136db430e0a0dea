"""The training data as the labeling team corrected it: every corrections object at a ref overlaid on
the data objects, the last correction per id winning, so any ref reads with exactly the corrections
committed up to it. How answers become corrections is `tasks.labels.corrections`'s job."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from lakeloop.spec import DatasetSpec

CORRECTIONS_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "old_label": pl.Utf8(),
    "new_label": pl.Utf8(),
    "annotators": pl.List(pl.Utf8()),
    "annotation_ids": pl.List(pl.Int64()),
    "task_id": pl.Int64(),
    "first_annotated_at": pl.Datetime("us", "UTC"),
    "last_annotated_at": pl.Datetime("us", "UTC"),
    "consensus_quality": pl.Float64(),  # CROWDLAB's quality of the new label (null in rounds before it)
}


class CorrectionError(ValueError):
    """Annotations or corrections that cannot be applied; the message names the row and annotation."""


def empty_corrections() -> pl.DataFrame:
    return pl.DataFrame(schema=CORRECTIONS_SCHEMA)


def apply_corrections(df: pl.DataFrame, corrections: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """`df` with `spec.label_column` replaced by `new_label` for corrected ids (one correction per id)."""
    for col in ("id", "new_label"):
        if col not in corrections.columns:
            raise CorrectionError(f"corrections lack column {col!r}")
    if corrections.height == 0:
        return df
    dup = corrections.filter(pl.col("id").is_duplicated())
    if dup.height:
        raise CorrectionError(f"corrections: id {dup['id'][0]!r} corrected twice; overlay_corrections picks one")
    bad = corrections.filter(~pl.col("new_label").is_in(spec.classes))
    if bad.height:
        raise CorrectionError(f"corrections: id {bad['id'][0]!r} has new_label {bad['new_label'][0]!r}, "
                              f"not one of {spec.classes}")
    label_dtype = df.schema[spec.label_column]
    fix = corrections.select(pl.col("id").alias("__id"), pl.col("new_label").alias("__new"))
    out = (
        df.with_columns(pl.col(spec.id_column).cast(pl.Utf8).alias("__id"))
        .join(fix, on="__id", how="left", maintain_order="left")
        .with_columns(pl.coalesce(pl.col("__new"), pl.col(spec.label_column).cast(pl.Utf8))
                      .cast(label_dtype).alias(spec.label_column))
        .drop("__id", "__new")
    )
    return out


def latest_corrections(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One correction per id: the last one, by frame order (round order) then annotation time."""
    if not frames:
        return empty_corrections()
    tagged = []
    for k, f in enumerate(frames):
        missing = [c for c in ("id", "new_label") if c not in f.columns]
        if missing:
            raise CorrectionError(f"corrections object #{k} lacks column(s) {missing}")
        cols = [c for c in CORRECTIONS_SCHEMA if c in f.columns]
        tagged.append(f.select(cols).with_columns(pl.lit(k).alias("__frame"), pl.int_range(f.height).alias("__row")))
    allc = pl.concat(tagged, how="diagonal_relaxed")
    order = ["__frame", "last_annotated_at", "__row"] if "last_annotated_at" in allc.columns \
        else ["__frame", "__row"]
    return allc.sort(order).unique("id", keep="last", maintain_order=True).drop("__frame", "__row")


def overlay_corrections(df: pl.DataFrame, corrections_frames: Sequence[pl.DataFrame],
                        spec: DatasetSpec) -> pl.DataFrame:
    """The dataset as the labeling team corrected it: last correction per id wins."""
    return apply_corrections(df, latest_corrections(corrections_frames), spec)
