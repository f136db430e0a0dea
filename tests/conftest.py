pytest_plugins = ["tests.fixtures.lakefs", "tests.fixtures.lake"]
