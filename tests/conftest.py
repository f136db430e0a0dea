pytest_plugins = ["tests.fixtures.lakefs", "tests.fixtures.lake", "tests.fixtures.prefect", "tests.fixtures.mlflow", "tests.fixtures.ensemble", "tests.fixtures.label_studio"]
