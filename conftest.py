"""Shared fixtures: real Kafka and PostgreSQL for every test that crosses a boundary."""

pytest_plugins = ["tally_testing"]
