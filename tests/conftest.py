"""Fixtures: every server the tests use is started for real, as `lakeloop up` starts it."""

pytest_plugins = [
    "tests.fixtures.lakefs",
    "tests.fixtures.lake",
    "tests.fixtures.prefect",
    "tests.fixtures.mlflow",
    "tests.fixtures.ensemble",
    "tests.fixtures.label_studio",
    "tests.fixtures.loop_env",
    "tests.fixtures.postgres",
]
