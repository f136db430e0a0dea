"""The dataset spec: what lakeloop needs to know about a tabular dataset.

lakeloop is dataset-agnostic; everything dataset-specific (columns, types,
ranges, rules, slices, PII, costs) is declared here and read from YAML.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the field."""


class FeatureType(StrEnum):
    numeric = "numeric"
    integer = "integer"
    categorical = "categorical"
    boolean = "boolean"
    string = "string"  # free text (names, e-mails): validated for presence only, never a model input


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: FeatureType
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool = False
    # values (compared after stripping whitespace) that mean "no value" in text input, e.g. [""] for blanks in
    # a CSV export, ["NA", "?"]: read as null, so `nullable` decides whether the row is valid
    null_tokens: list[str] = []
    pii: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Feature:
        if self.type == FeatureType.categorical and not self.categories:
            raise ValueError(f"categorical feature {self.name!r} needs 'categories'")
        if self.type != FeatureType.categorical and self.categories:
            raise ValueError(f"feature {self.name!r}: 'categories' only apply to categorical features")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} > max {self.max}")
        return self


class Rule(BaseModel):
    """A cross-field rule: a polars expression (SQL syntax) every valid row satisfies."""

    model_config = ConfigDict(extra="forbid")

    name: str
    expr: str = Field(description="SQL boolean expression over the columns, e.g. 'total_charges >= monthly_charges'")
    description: str = ""


class Slice(BaseModel):
    """A named subset of rows on which metrics are reported and gated."""

    model_config = ConfigDict(extra="forbid")

    name: str
    expr: str = Field(description="SQL boolean expression selecting the slice")


class CostMatrix(BaseModel):
    """Business value of each outcome, per row (positive = gain, negative = cost)."""

    model_config = ConfigDict(extra="forbid")

    true_positive: float = 0.0
    false_positive: float = 0.0
    true_negative: float = 0.0
    false_negative: float = 0.0


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    id_column: str
    label_column: str
    classes: list[str] = Field(min_length=2)
    positive_class: str | None = None
    time_column: str | None = None
    features: list[Feature] = Field(min_length=1)
    rules: list[Rule] = []
    slices: list[Slice] = []
    cost_matrix: CostMatrix = CostMatrix()
    business_threshold: float = Field(0.5, gt=0, lt=1)
    file_format: Literal["parquet", "csv"] = "parquet"

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        names = [f.name for f in self.features]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate feature names: {sorted(dupes)}")
        reserved = {self.id_column, self.label_column} | ({self.time_column} if self.time_column else set())
        clash = reserved & set(names)
        if clash:
            raise ValueError(f"id/label/time columns must not be listed as features: {sorted(clash)}")
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of classes {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        return self

    # ---- derived views -------------------------------------------------
    @property
    def positive(self) -> str:
        return self.positive_class or self.classes[-1]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def model_features(self) -> list[str]:
        """Features a model may see (PII and free text never leave the lake)."""
        return [f.name for f in self.features if not f.pii and f.type != FeatureType.string]

    @property
    def pii_columns(self) -> list[str]:
        return [f.name for f in self.features if f.pii]

    @property
    def columns(self) -> list[str]:
        cols = [self.id_column, *self.feature_names, self.label_column]
        if self.time_column:
            cols.insert(1, self.time_column)
        return cols

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def label_index(self, label: str) -> int:
        return self.classes.index(label)

    def spec_hash(self) -> str:
        """Stable hash of the spec's content, logged with every model."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    # ---- loading --------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetSpec:
        path = Path(path)
        try:
            raw: Any = yaml.safe_load(path.read_text())
        except FileNotFoundError as e:
            raise SpecError(f"{path}: spec file not found") from e
        except yaml.YAMLError as e:
            raise SpecError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise SpecError(f"{path}: a spec is a mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
            )
            raise SpecError(f"{path}: invalid dataset spec: {problems}") from e
