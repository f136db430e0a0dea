"""Where lakeloop keeps things inside a lakeFS repository (a dependency-free module every task may import)."""

CORRECTIONS_PREFIX = "labels/corrections/"  # the labeling team's corrections, one parquet per review round
LABEL_QUALITY_PREFIX = "labels/quality/"  # each round's consensus per row and annotator quality, beside its corrections
PREDICTIONS_PREFIX = "predictions/"  # batch predictions, on the `predictions` branch
