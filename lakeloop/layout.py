"""Where lakeloop keeps things inside a lakeFS repository (a dependency-free module every task may import)."""

CORRECTIONS_PREFIX = "labels/corrections/"  # the labeling team's corrections, one parquet per review round
PREDICTIONS_PREFIX = "predictions/"  # batch predictions, on the `predictions` branch
